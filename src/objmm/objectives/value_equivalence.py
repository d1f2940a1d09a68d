"""Value equivalence (Grimm, Barreto, Singh, Silver 2020): a model is good where the values it
predicts are, not its states. The predicted next state is scored by K fixed random value functions,

    loss = mean_k (V_k(s'_hat) - V_k(s'))^2 + state_weight * state loss,

the state loss (Gaussian NLL for P models, MSE for D) at a small weight keeping the model a model of
the states (and, for P models, training the variance, which the value term never sees). Each V_k is a
random one-hidden-layer tanh network on the next observation standardised by the rows of the fit
(`on_fit_start`), drawn once from `seed`: fixed tensors, never trained, so the gradient reaches only
the model. (Grimm et al. take the V_k from a set of policies' values; random functions are the
cheapest set that spans many directions of the state, and need no policy.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective
from objmm.objectives.weighted import Loss, base_loss, check_loss

if TYPE_CHECKING:
    from objmm.data import TransitionDataset
    from objmm.envs import Task


class ValueEquivalence(Objective):
    """Args:
    functions: the number K of random value functions.
    width: their hidden units.
    state_weight: the weight of the state loss beside the value term.
    loss: the state loss, `nll` (P, PE) or `mse` (D, DE).
    seed: where the value functions' weights are drawn from.
    """

    name = "value_equivalence"

    def __init__(
        self, functions: int = 8, width: int = 64, state_weight: float = 0.1, loss: Loss = "nll", seed: int = 0
    ):
        check_loss(loss)
        self.functions, self.width, self.state_weight, self.loss, self.seed = functions, width, state_weight, loss, seed
        self.needs_variance = loss == "nll"
        self.delta: torch.Tensor | None = None
        self.obs_mean: torch.Tensor | None = None
        self.obs_std: torch.Tensor | None = None
        self.layers: tuple[torch.Tensor, ...] = ()

    def bind(self, task: Task, env_kwargs: dict) -> None:
        self.delta = torch.tensor(task.delta_targets)
        generator = torch.Generator().manual_seed(self.seed)
        k, o, w = self.functions, task.obs_dim, self.width
        hidden = torch.randn(k, o, w, generator=generator) / o**0.5
        bias = torch.randn(k, 1, w, generator=generator) * 0.5
        out = torch.randn(k, w, 1, generator=generator) / w**0.5
        self.layers = (hidden, bias, out)
        self.obs_mean, self.obs_std = torch.zeros(o), torch.ones(o)

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        next_obs = train_set.data["next_obs"].double()
        self.obs_mean, self.obs_std = next_obs.mean(0).float(), next_obs.std(0).clamp_min(1e-6).float()

    def values(self, next_obs: torch.Tensor) -> torch.Tensor:
        """V_k of next observations [..., O] -> [..., K]."""
        hidden, bias, out = (t.to(next_obs) for t in self.layers)
        x = (next_obs - self.obs_mean.to(next_obs)) / self.obs_std.to(next_obs)
        flat = x.reshape(-1, x.shape[-1])  # [N, O]
        h = torch.tanh(torch.einsum("no,kow->knw", flat, hidden) + bias)  # [K, N, W]
        v = torch.einsum("knw,kwi->kni", h, out)[..., 0]  # [K, N]
        return v.T.reshape(*x.shape[:-1], self.functions)

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        obs, next_obs = batch["obs"], batch["next_obs"]
        delta = self.delta.to(obs.device)
        predicted = torch.where(delta, obs + prediction.mean, prediction.mean)  # [E, B, O]
        value_gap = (self.values(predicted) - self.values(next_obs)).square().mean(-1)  # [E, B]
        return value_gap + self.state_weight * base_loss(self.loss, prediction, target)
