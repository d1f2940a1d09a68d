"""The paper's re-weighted loss (Sec. 5): each row's loss times a weight omega that falls with d*, the
row's distance to a reference trajectory (`objmm.data.distance`), optionally at least `floor`, the
weights normalised to mean 1 over the rows trained on (`objectives/weighted.py`).

Two kernels. `exp`: omega = c exp(-d*), the paper's Eq. 2 (Fig. 9's formula). `linear`: omega =
c (1 - d* / d_edge), d_edge the largest d* among the rows trained on, the paper's text: "points in
the optimal trajectory get a weight omega = 1, and points at the edge of the grid dataset get a
weight omega = 0" ("multiple monotonic functions from 0 to 1 had similar results"). In raw units
exp(-d*) is never near 0 on a set drawn within eps 0.28 of the trajectory (omega in [0.76, 1]: no
re-weighting at all) and is mostly 0.1-0.3 at eps 2.09; `linear` spans 1 to 0 on every set.

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
from objmm.objectives.weighted import Loss, WeightedObjective


def trajectory_rewards(
    dataset: TransitionDataset, task: Task, env_kwargs: dict
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each trajectory's row indices and its summed reward (the env's reward of each row's next obs and action)."""
    rows = dataset.trajectories()
    reward = task.reward(**env_kwargs)(dataset.data["next_obs"], dataset.data["action"])
    return rows, torch.stack([reward[r].sum() for r in rows])


class DistanceWeighted(WeightedObjective):
    def __init__(
        self,
        expert: str | None = None,
        trajectories: int = 1,
        c: float = 1.0,
        scale: list[float] | None = None,
        floor: float = 0.0,
        loss: Loss = "nll",
        kernel: Literal["exp", "linear"] = "exp",
        normalise: bool = True,
        first_trajectory: int = 0,
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
            kernel: `exp` (c exp(-d*), Eq. 2) or `linear` (c (1 - d*/d_edge): 1 on the reference, 0 at
                the farthest row trained on).
            normalise: divide the weights by their mean over the rows trained on.
            first_trajectory: the expert's trajectory the reference starts at (its `trajectories`
                trajectories from there on): `objmm reweight` with several references weighs each set
                by the trajectory it was drawn near.
        """
        super().__init__(loss, normalise)
        if trajectories < 1 or not c > 0 or not 0 <= floor <= c or first_trajectory < 0:
            raise ObjmmError(
                "DistanceWeighted needs trajectories >= 1, c > 0, 0 <= floor <= c and first_trajectory >= 0, "
                f"got {trajectories}, {c}, {floor}, {first_trajectory}"
            )
        if kernel not in ("exp", "linear"):
            raise ObjmmError(f"DistanceWeighted.kernel must be 'exp' or 'linear', got {kernel!r}")
        self.expert, self.trajectories, self.c, self.scale = expert, trajectories, c, scale
        self.floor, self.kernel, self.first_trajectory = floor, kernel, first_trajectory
        self.name = f"distance_weighted_{loss}"
        #: linear: the d* that weighs 0, the largest among the rows of the last fit
        self.edge: float | None = None
        self.task: Task | None = None
        self.env_kwargs: dict = {}
        self.reference: torch.Tensor | None = None  # [R, O + A]
        #: the summed rewards of the reference trajectories (online: the best of the training data)
        self.reference_rewards: list[float] = []

    def __repr__(self) -> str:
        return (
            f"DistanceWeighted(expert={self.expert!r}, trajectories={self.trajectories}, loss={self.loss!r}, "
            f"kernel={self.kernel!r}, first_trajectory={self.first_trajectory})"
        )

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
        first, end = self.first_trajectory, self.first_trajectory + self.trajectories
        expert, _ = load_expert(self.expert, task.env_id, end, "DistanceWeighted.expert", online)
        trajectories, rewards = trajectory_rewards(expert, task, env_kwargs)
        self.set_reference(expert, trajectories[first:end], rewards[first:end])

    def set_reference(self, dataset: TransitionDataset, trajectories: list[torch.Tensor], rewards) -> None:
        rows = torch.cat(trajectories)
        self.reference = torch.cat([dataset.data["obs"][rows], dataset.data["action"][rows]], dim=-1).float()
        self.reference_rewards = [float(r) for r in rewards]

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        if self.expert is None:
            self.choose_reference(train_set)
        if self.kernel == "linear":
            self.edge = float(self.distances(train_set.data).max())
        super().on_fit_start(train_set)

    def choose_reference(self, train_set: TransitionDataset) -> None:
        """Online: the best `trajectories` episodes of the rows trained on."""
        if not train_set.has_trajectories():
            raise ObjmmError(
                "DistanceWeighted without an expert takes its reference from the training data's best "
                "episodes, but this training data has no trajectories; give DistanceWeighted.expert"
            )
        trajectories, rewards = trajectory_rewards(train_set, self.task, self.env_kwargs)
        best = rewards.argsort(descending=True)[: self.trajectories]
        self.set_reference(train_set, [trajectories[i] for i in best], rewards[best])

    def distances(self, batch: TensorDictBase) -> torch.Tensor:
        """d* of every row of the batch to the reference: [...] for obs [..., O]."""
        if self.reference is None:
            raise ObjmmError("DistanceWeighted has no reference yet: it is set when the model is built (expert) or fit")
        rows = torch.cat([batch["obs"], batch["action"]], dim=-1)
        if self.reference.device != rows.device:
            self.reference = self.reference.to(rows.device)
        return min_distance(rows, self.reference, self.task.periodic_dims, self.scale)

    def raw_weight(self, batch: TensorDictBase) -> torch.Tensor:
        """omega = max(floor, c exp(-d*)) or max(floor, c (1 - d*/d_edge)) of every row of the batch."""
        d = self.distances(batch)
        if self.kernel == "exp":
            weight = self.c * torch.exp(-d)
        elif self.edge is None:
            raise ObjmmError("DistanceWeighted(kernel='linear') has no d_edge yet: it is set when the model is fit")
        else:
            weight = self.c * (1 - d / self.edge).clamp_min(0) if self.edge > 0 else torch.full_like(d, self.c)
        return weight.clamp_min(self.floor) if self.floor else weight
