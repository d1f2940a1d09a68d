"""The dynamics model: task preprocessing + input normalisation + ensemble MLP + delta targets.

The network knows nothing of the env; this wrapper turns observations and actions into its
inputs and its outputs back into next observations (mbrl-lib's split). D, DE, P and PE are
this one class with `members` 1 or 5 and `probabilistic` False or True.
"""

from __future__ import annotations

import torch
from torch import nn

from objmm.envs import get_task
from objmm.models.ensemble import EnsembleMLP, Prediction, autocast_dtype


def cpu_pass_rows(float32_rows: int, net: EnsembleMLP) -> int:
    """Rows per network pass when planning on a CPU: the activation bytes of `float32_rows` float32
    rows, so twice the rows under bfloat16 autocast (`cem.precision`): there one pass holds Table 1's
    whole population, 0.78-0.82x the time of two passes (docs/benchmarks.md)."""
    return float32_rows * 4 // autocast_dtype(net.head.weight).itemsize


class DynamicsModel(nn.Module):
    #: float32 rows per network pass when planning on a CPU (`cpu_pass_rows`): a [members, 256,
    #: width] activation stays in cache, which measured 1.7-2.3x faster than one pass over a whole CEM
    #: population (10k rows) (256 rows a thread was tried on 2 threads: 0.65-0.94x for one model, 1.3x
    #: for 8 stacked P models)
    cpu_rows_per_pass = 256

    def __init__(self, env_id: str, members: int = 5, width: int = 200, depth: int = 2, probabilistic: bool = True):
        super().__init__()
        self.task = get_task(env_id)
        in_dim = self.task.model_input_dim + self.task.action_dim
        self.net = EnsembleMLP(in_dim, self.task.obs_dim, members, width, depth, probabilistic)
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("delta_targets", torch.tensor(self.task.delta_targets))

    @property
    def members(self) -> int:
        return self.net.members

    @property
    def probabilistic(self) -> bool:
        return self.net.probabilistic

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """A fresh, untrained model (PETS's full re-training starts every trial from here), its
        weights drawn from `generator`."""
        self.net.reset_parameters(generator)
        self.input_mean.zero_()
        self.input_std.fill_(1.0)

    @torch.no_grad()
    def fit_normaliser(self, obs: torch.Tensor, action: torch.Tensor) -> None:
        """Set the input statistics from training rows obs [N, O], action [N, A]."""
        x = self._raw_inputs(obs.to(self.input_mean), action.to(self.input_mean))
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(1e-6))

    def _raw_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.task.model_inputs(obs), action], dim=-1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, mean_only: bool = False, head=None) -> Prediction:
        """obs [(E,) B, O], action [(E,) B, A] -> Prediction of the targets, [E, B, O] each (`head`:
        another output layer, as `EnsembleMLP.forward` takes it)."""
        return self.net(self.network_inputs(obs, action), mean_only=mean_only, head=head)

    def network_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The network's normalised inputs for (obs, action)."""
        return (self._raw_inputs(obs, action) - self.input_mean) / self.input_std

    def targets(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output: the change of delta entries, the value of the rest."""
        return torch.where(self.delta_targets, next_obs - obs, next_obs)

    def next_obs(self, obs: torch.Tensor, predicted_targets: torch.Tensor) -> torch.Tensor:
        return torch.where(self.delta_targets, obs + predicted_targets, predicted_targets)

    @torch.no_grad()
    def predict_next(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Expectation over the ensemble: obs [B, O], action [B, A] -> next obs [B, O].

        Every member sees the same rows in one batched pass; their mean predictions are averaged
        (PETS's expectation propagation, no particles).
        """
        rows = cpu_pass_rows(self.cpu_rows_per_pass, self.net)
        if obs.device.type == "cpu" and obs.shape[0] > rows:
            chunks = zip(obs.split(rows), action.split(rows), strict=True)
            return torch.cat([self.predict_next(o, a) for o, a in chunks])
        return self.mean_next(obs, action)

    def mean_next(self, obs: torch.Tensor, action: torch.Tensor, head=None) -> torch.Tensor:
        """`predict_next` in one pass and differentiable (the attack's rollouts), `head` as in `forward`."""
        return self.next_obs(obs, self.forward(obs, action, mean_only=True, head=head).mean.mean(0))
