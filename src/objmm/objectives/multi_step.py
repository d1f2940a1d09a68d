"""The multi-step (k-step) loss: the model rolled k steps from each training row along the row's own
trajectory, the loss of step j discounted by rho^(j-1) (TD-MPC: k = 5, rho = 0.5):

    loss = sum_j rho^(j-1) l_j / sum_j rho^(j-1),   over the steps j <= k the trajectory has,

l_1 the one-step loss (NLL or MSE), l_j (j > 1) the same loss of the model's prediction from its own
predicted state s_hat_(j-1) (each member rolls its own mean prediction; the gradient flows through the
rollout) against the true s_j, in the model's target space (the change from s_hat_(j-1) for delta
entries). A row's next rows are found by (episode, step) among the rows of the fit (`on_fit_start`), each
checked to start where the last ended, so ordinary random batches train it; a trajectory that ends,
a next row held out of the fit, or a row of another dataset (validation) ends the rollout there.
One-step data (grid, sampled) has no next rows: refused in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from objmm.errors import ObjmmError
from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective
from objmm.objectives.weighted import Loss, base_loss, check_loss

if TYPE_CHECKING:
    from objmm.data import TransitionDataset
    from objmm.models import DynamicsModel


class MultiStep(Objective):
    """Args:
    steps: k, the rollout's length (1: the one-step loss).
    discount: rho, the weight of each further step.
    loss: `nll` (P, PE) or `mse` (D, DE).
    """

    name = "multi_step"

    def __init__(self, steps: int = 5, discount: float = 0.5, loss: Loss = "nll"):
        check_loss(loss)
        if steps < 1 or not 0 < discount <= 1:
            raise ObjmmError(f"MultiStep needs steps >= 1 and discount in (0, 1], got {steps} and {discount}")
        self.steps, self.discount, self.loss = steps, discount, loss
        self.needs_variance = loss == "nll"
        self.model: DynamicsModel | None = None
        self.position: torch.Tensor | None = None

    def attach(self, model: DynamicsModel) -> None:
        self.model = model

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        """The rows of the fit by (episode, step), to find each row's next rows."""
        data = train_set.data
        if self.steps > 1 and not train_set.has_trajectories():
            raise ObjmmError(
                "MultiStep needs trajectories to roll the model along, but the training rows are one-step data "
                "(every row its own episode: grid or sampled); train on rollouts, or use steps: 1"
            )
        episode, step = data["episode"].long(), data["step"].long()
        self.position = torch.full((int(episode.max()) + 1, int(step.max()) + self.steps + 1), -1, dtype=torch.long)
        self.position[episode, step] = torch.arange(len(episode))
        self.obs, self.action, self.next_obs = data["obs"].float(), data["action"].float(), data["next_obs"].float()

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        total = base_loss(self.loss, prediction, target)  # [E, B]
        if self.steps == 1:
            return total
        if self.model is None or self.position is None:
            raise ObjmmError("MultiStep needs its model (attach) and the rows of its fit (on_fit_start) first")
        device = target.device
        episode, step = batch["episode"].long(), batch["step"].long()
        if episode.dim() == 1:  # one row set for all members
            episode, step = episode.expand(prediction.mean.shape[:2]), step.expand(prediction.mean.shape[:2])
        episodes, steps = self.position.shape
        state = self.model.next_obs(batch["obs"], prediction.mean)  # s_hat_1 [E, B, O]
        reached = batch["next_obs"].expand_as(state).cpu()  # the true state the rollout stands at
        weights, alive = 1.0, torch.ones_like(total, dtype=torch.bool)
        for j in range(1, self.steps):
            rows = self.position[episode.clamp(0, episodes - 1).cpu(), (step + j).clamp(0, steps - 1).cpu()]
            # the next row must start where the last one ended: rows of another dataset (a validation
            # set whose episode and step numbers mean other trajectories) end their rollout here
            linked = (rows >= 0) & (self.obs[rows.clamp_min(0)] == reached).all(-1)
            alive = alive & linked.to(device)
            if not alive.any():
                break
            rows = rows.clamp_min(0)
            action, true_next = self.action[rows].to(device), self.next_obs[rows].to(device)
            reached = self.next_obs[rows]
            predicted = self.model(state, action)
            loss = base_loss(self.loss, predicted, self.model.targets(state, true_next))
            weight = self.discount**j
            total = total + weight * torch.where(alive, loss, torch.zeros_like(loss))
            weights = weights + weight * alive.float()
            state = self.model.next_obs(state, predicted.mean)
        return total / weights
