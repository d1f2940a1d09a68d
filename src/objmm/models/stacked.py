"""K trained dynamics models of one architecture as one batched network: `[K x members, batch, features]`.

A population of models is evaluated K at a time: one planning step of K models costs one pass
through this network, not K. Rows are grouped by model: `predict_next` reads obs [K x B, O] as K
blocks of B rows, block k for model k; model k's members see only block k, normalised with model
k's own input statistics. Each member's rows go through the same batched matmuls as in the model
alone (one weight matrix per member and batch entry), so a model gives the same predictions in a
stack of any K, and a row count per pass that does not depend on K keeps it so on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from objmm.errors import ObjmmError
from objmm.models.dynamics import DynamicsModel, cpu_pass_rows
from objmm.models.ensemble import EnsembleMLP


class StackedDynamics(nn.Module):
    #: rows of each model per pass on a CPU: a model's own, and independent of K
    cpu_rows_per_pass = DynamicsModel.cpu_rows_per_pass

    def __init__(self, models: Sequence[DynamicsModel]):
        super().__init__()
        if not models:
            raise ObjmmError("a stack needs at least one model")
        first = models[0]
        shapes = [[p.shape for p in m.net.parameters()] for m in models]
        for i, model in enumerate(models):
            if model.task.name != first.task.name or shapes[i] != shapes[0]:
                raise ObjmmError(
                    f"model {i} of the stack differs from model 0 in env or architecture; "
                    "only models of one env and one architecture stack"
                )
        self.task, self.stack, self.members = first.task, len(models), first.members
        self.out_dim = first.task.obs_dim
        # one ensemble of K x members, model by model (model k: members k*M .. k*M + M - 1)
        self.net = EnsembleMLP.stacked([m.net for m in models])
        self.register_buffer("input_mean", torch.stack([m.input_mean for m in models]).unsqueeze(1))  # [K, 1, in]
        self.register_buffer("input_std", torch.stack([m.input_std for m in models]).unsqueeze(1))
        self.register_buffer("delta_targets", first.delta_targets.clone())

    def mean_targets(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs [K, B, O], action [K, B, A] -> each model's mean over its members of the predicted targets [K, B, O]."""
        k, b = obs.shape[:2]
        x = (torch.cat([self.task.model_inputs(obs), action], dim=-1) - self.input_mean) / self.input_std
        x = x.unsqueeze(1).expand(k, self.members, b, x.shape[-1]).reshape(k * self.members, b, -1)
        out = self.net(x, mean_only=True).mean
        return out.view(k, self.members, b, -1).mean(1)

    @torch.no_grad()
    def predict_next(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Expectation over each model's ensemble: obs [K x B, O], action [K x B, A] (K blocks of B
        rows, block k for model k) -> next obs [K x B, O]."""
        if obs.shape[0] % self.stack:
            raise ObjmmError(f"{obs.shape[0]} rows do not split into {self.stack} equal blocks, one per model")
        obs, action = obs.view(self.stack, -1, obs.shape[-1]), action.view(self.stack, -1, action.shape[-1])
        rows = cpu_pass_rows(self.cpu_rows_per_pass, self.net)
        if obs.device.type == "cpu" and obs.shape[1] > rows:
            chunks = zip(obs.split(rows, dim=1), action.split(rows, dim=1), strict=True)
            targets = torch.cat([self.mean_targets(o, a) for o, a in chunks], dim=1)
        else:
            targets = self.mean_targets(obs, action)
        next_obs = torch.where(self.delta_targets, obs + targets, targets)
        return next_obs.reshape(-1, next_obs.shape[-1])
