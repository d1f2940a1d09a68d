"""The paper's re-weighted loss (Sec. 5, Eq. 2): each row's loss times omega = c exp(-d*), d* the row's
distance to a reference trajectory (`objmm.data.distance`), optionally at least `floor`.

    model:
      objective:
        class_path: objmm.objectives.DistanceWeighted
        init_args: {expert: data/cartpole_expert}     # the paper: one expert trajectory, 200 points

Without `expert` the reference comes from the training data itself (beyond the paper, its "future
work": re-weighting without an expert): at the start of every fit, the `trajectories` episodes
with the highest reward in the rows trained on. Inside `objmm pets` that is every trial, so the
weights follow the best episodes the run has found so far.
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict import TensorDictBase

from objmm.data import TransitionDataset
from objmm.data.distance import min_distance
from objmm.data.sources import load_expert
from objmm.envs import Task
from objmm.errors import ObjmmError
from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective
from objmm.objectives.mse import squared_error
from objmm.objectives.nll import gaussian_nll


def base_loss(loss: str, prediction: Prediction, target: torch.Tensor) -> torch.Tensor:
    """The unweighted loss per member and row: `nll` (P, PE) or `mse` (D, DE)."""
    if loss == "nll":
        return gaussian_nll(prediction.mean, prediction.logvar, target)
    return squared_error(prediction.mean, target)


def check_loss(loss: str) -> None:
    if loss not in ("nll", "mse"):
        raise ObjmmError(f"the weighted objective's loss must be 'nll' or 'mse', got {loss!r}")


def trajectory_rewards(
    dataset: TransitionDataset, task: Task, env_kwargs: dict
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each trajectory's row indices and its summed reward (the env's reward of each row's next obs and action)."""
    rows = dataset.trajectories()
    reward = task.reward(**env_kwargs)(dataset.data["next_obs"], dataset.data["action"])
    return rows, torch.stack([reward[r].sum() for r in rows])


class DistanceWeighted(Objective):
    needs_variance = True

    def __init__(
        self,
        expert: str | None = None,
        trajectories: int = 1,
        c: float = 1.0,
        scale: list[float] | None = None,
        floor: float = 0.0,
        loss: Literal["nll", "mse"] = "nll",
    ):
        """
        Args:
            expert: an expert dataset (`objmm data expert`) of the model's env; its first `trajectories`
                trajectories are the reference. None: the best `trajectories` episodes of the training
                data, chosen again at every fit (online re-weighting).
            trajectories: reference trajectories (the paper: 1, 200 points).
            c: omega's factor (the paper: 1, so a row on the reference weighs 1).
            scale: divide each [obs, action] entry's difference by this before d* (default: raw units,
                the paper's bounds 0.28 ... 15.66; see objmm.data.distance).
            floor: the smallest weight (the paper: 0). Above 0, rows far from the reference still count a
                little, which keeps the model usable where the controller strays (online re-weighting).
            loss: the weighted loss, `nll` (probabilistic models) or `mse` (deterministic ones).
        """
        check_loss(loss)
        if trajectories < 1 or not c > 0 or not 0 <= floor <= c:
            raise ObjmmError(
                f"DistanceWeighted needs trajectories >= 1, c > 0 and 0 <= floor <= c, got {trajectories}, {c}, {floor}"
            )
        self.expert, self.trajectories, self.c, self.scale, self.loss = expert, trajectories, c, scale, loss
        self.floor = floor
        self.needs_variance = loss == "nll"
        self.name = f"distance_weighted_{loss}"
        self.task: Task | None = None
        self.env_kwargs: dict = {}
        self.reference: torch.Tensor | None = None  # [R, O + A]
        #: the summed rewards of the reference trajectories (online: the best of the training data)
        self.reference_rewards: list[float] = []

    def __repr__(self) -> str:
        return f"DistanceWeighted(expert={self.expert!r}, trajectories={self.trajectories}, loss={self.loss!r})"

    def bind(self, task: Task, env_kwargs: dict) -> None:
        self.task, self.env_kwargs = task, dict(env_kwargs)
        if self.scale is not None and len(self.scale) != task.obs_dim + task.action_dim:
            raise ObjmmError(
                f"DistanceWeighted.scale has {len(self.scale)} entries; {task.env_id} rows have "
                f"{task.obs_dim + task.action_dim} (obs, then action)"
            )
        if self.expert is None:
            return
        online = ", or leave expert out to re-weight online"
        expert, _ = load_expert(self.expert, task.env_id, self.trajectories, "DistanceWeighted.expert", online)
        trajectories, rewards = trajectory_rewards(expert, task, env_kwargs)
        self.set_reference(expert, trajectories[: self.trajectories], rewards[: self.trajectories])

    def set_reference(self, dataset: TransitionDataset, trajectories: list[torch.Tensor], rewards) -> None:
        rows = torch.cat(trajectories)
        self.reference = torch.cat([dataset.data["obs"][rows], dataset.data["action"][rows]], dim=-1).float()
        self.reference_rewards = [float(r) for r in rewards]

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        if self.expert is not None:
            return
        if not train_set.has_trajectories():
            raise ObjmmError(
                "DistanceWeighted without an expert takes its reference from the training data's best "
                "episodes, but this training data has no trajectories; give DistanceWeighted.expert"
            )
        trajectories, rewards = trajectory_rewards(train_set, self.task, self.env_kwargs)
        best = rewards.argsort(descending=True)[: self.trajectories]
        self.set_reference(train_set, [trajectories[i] for i in best], rewards[best])

    def weight(self, batch: TensorDictBase) -> torch.Tensor:
        """omega = max(floor, c exp(-d*)) of every row of the batch: [...] for obs [..., O]."""
        if self.reference is None:
            raise ObjmmError("DistanceWeighted has no reference yet: it is set when the model is built (expert) or fit")
        rows = torch.cat([batch["obs"], batch["action"]], dim=-1)
        if self.reference.device != rows.device:
            self.reference = self.reference.to(rows.device)
        weight = self.c * torch.exp(-min_distance(rows, self.reference, self.task.periodic_dims, self.scale))
        return weight.clamp_min(self.floor) if self.floor else weight

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        return base_loss(self.loss, prediction, target) * self.weight(batch)
