"""Value-gradient weighting (VaGraM: Voelcker, Liao, Garg, Farahmand 2022): a model's error counts as
much as it moves the value, dimension by dimension, at the true next state:

    loss = sum_j (dV/ds_j(s') * (s'_hat_j - s'_j))^2          (D, DE: `loss: mse`)
    loss = sum_j w_j * nll_j,  w_j = g_j^2 / mean_j g_j^2     (P, PE: `loss: nll`, its Gaussian counterpart)

with g = dV/ds(s'), the norm of each row's g clipped at its `clip_quantile` over the rows of the fit and
divided by the mean clipped norm (VaGraM keeps a running mean; here it is over the fit's rows), and a
`floor` on w so that no dimension's variance goes untrained. PETS has no critic, so V is fitted at the
start of every fit (`on_fit_start`) on the rows trained on: a small MLP regressing, from a row's next
observation, the discounted reward of the next `horizon` rows of its own trajectory under the task's
known reward (no bootstrap; rows held out of the fit are skipped, so a step may be missing from a
sum). On one-step data (every row its own episode) that is the row's own reward.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase
from torch import nn

from objmm.errors import ObjmmError
from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective
from objmm.objectives.weighted import Loss, check_loss

if TYPE_CHECKING:
    from objmm.data import TransitionDataset
    from objmm.envs import Task


def rewards_to_go(rewards: torch.Tensor, episode: torch.Tensor, step: torch.Tensor, horizon: int, discount: float):
    """For each row, sum_{i < horizon} discount^i r of the i-th next row of its episode (rows in step
    order, the episode's end ending the sum): [N] -> [N]."""
    order = torch.argsort(episode * (int(step.max()) + 1) + step)
    r, ep = rewards[order].double(), episode[order]
    out = torch.zeros_like(r)
    alive = torch.ones_like(r, dtype=torch.bool)
    for i in range(horizon):
        if i:
            alive = alive[:-1] & (ep[i:] == ep[:-i])
        if not alive.any():
            break
        out[: len(r) - i] += torch.where(alive, discount**i * r[i:], 0.0)
    result = torch.empty_like(out)
    result[order] = out
    return result.float()


class ValueGradientWeighted(Objective):
    """Args:
    horizon: rows of reward V sums (its targets), along each trajectory.
    discount: their discount.
    width: V's hidden units (two layers).
    steps: Adam steps that fit V at the start of every fit.
    clip_quantile: the quantile of the gradients' norms they are clipped at.
    floor: the least weight of a dimension in the `nll` form.
    loss: `mse` (D, DE) or `nll` (P, PE).
    seed: V's initial weights and batches.
    """

    name = "vagram"

    def __init__(
        self,
        horizon: int = 30,
        discount: float = 0.99,
        width: int = 64,
        steps: int = 300,
        clip_quantile: float = 0.95,
        floor: float = 0.01,
        loss: Loss = "mse",
        seed: int = 0,
    ):
        check_loss(loss)
        if horizon < 1 or steps < 1 or not 0 < clip_quantile <= 1 or not 0 <= discount <= 1:
            raise ObjmmError("ValueGradientWeighted: horizon, steps >= 1, clip_quantile in (0, 1], discount in [0, 1]")
        self.horizon, self.discount, self.width, self.steps = horizon, discount, width, steps
        self.clip_quantile, self.floor, self.loss, self.seed = clip_quantile, floor, loss, seed
        self.needs_variance = loss == "nll"
        self.reward = None
        self.value: nn.Module | None = None
        self.clip_norm, self.mean_norm = 1.0, 1.0

    def bind(self, task: Task, env_kwargs: dict) -> None:
        if task.reward_fn is None:
            raise ObjmmError(f"ValueGradientWeighted needs the task's reward; {task.env_id} has none")
        self.reward = task.reward(**env_kwargs)

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        """Fit V to the rows' rewards-to-go, then the clip and the scale of its gradients."""
        data = train_set.data
        next_obs, action = data["next_obs"].float(), data["action"].float()
        with torch.no_grad():
            targets = rewards_to_go(
                self.reward(next_obs, action), data["episode"], data["step"], self.horizon, self.discount
            )
        generator = torch.Generator().manual_seed(self.seed)
        obs_dim = next_obs.shape[-1]
        value = nn.Sequential(nn.Linear(obs_dim, self.width), nn.SiLU(), nn.Linear(self.width, self.width), nn.SiLU())
        value.append(nn.Linear(self.width, 1))
        with torch.no_grad():
            for p in value.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * (0.5 / max(1, p.shape[-1]) ** 0.5))
        self.obs_mean, self.obs_std = next_obs.mean(0), next_obs.std(0).clamp_min(1e-6)
        self.target_mean, self.target_std = targets.mean(), targets.std().clamp_min(1e-6)
        x, y = (next_obs - self.obs_mean) / self.obs_std, (targets - self.target_mean) / self.target_std
        optimiser = torch.optim.Adam(value.parameters(), lr=3e-3)
        with torch.enable_grad():
            for _ in range(self.steps):
                rows = torch.randint(len(x), (min(1024, len(x)),), generator=generator)
                optimiser.zero_grad()
                (value(x[rows])[:, 0] - y[rows]).square().mean().backward()
                optimiser.step()
        self.value = value.requires_grad_(False)
        norms = self.raw_gradient(next_obs).norm(dim=-1)
        self.clip_norm = float(torch.quantile(norms, self.clip_quantile))
        self.mean_norm = float(norms.clamp_max(self.clip_norm).mean().clamp_min(1e-12))

    def raw_gradient(self, next_obs: torch.Tensor) -> torch.Tensor:
        """dV/ds at next observations [..., O] (in the observation's own units) -> [..., O]."""
        value = self.value.to(next_obs.device)
        mean, std = self.obs_mean.to(next_obs), self.obs_std.to(next_obs)
        with torch.enable_grad():
            s = next_obs.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(value((s - mean) / std).sum(), s)
        return grad * float(self.target_std)

    def gradient(self, next_obs: torch.Tensor) -> torch.Tensor:
        """g: dV/ds with each row's norm clipped at `clip_norm`, over the mean clipped norm."""
        grad = self.raw_gradient(next_obs)
        norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return grad * (norm.clamp_max(self.clip_norm) / norm) / self.mean_norm

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        if self.value is None:
            raise ObjmmError("ValueGradientWeighted has no value function yet: it is fitted at the start of a fit")
        g = self.gradient(batch["next_obs"])  # [(E,) B, O]; next-state errors equal target-space errors
        error = prediction.mean - target
        if self.loss == "mse":
            return (g * error).square().sum(-1)
        w = g.square() + self.floor
        w = w / w.mean(-1, keepdim=True)
        nll = (
            0.5 * error.square() * torch.exp(-prediction.logvar) + 0.5 * prediction.logvar + 0.5 * math.log(2 * math.pi)
        )
        return (w * nll).sum(-1)
