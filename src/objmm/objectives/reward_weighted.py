"""The paper's Appendix D: each row's loss times its own reward, normalised and floored.

    omega = max(floor, clip((r(s', a) - low) / (high - low), 0, 1))

r is the env's reward of the row's next observation and action (the same function the planner
scores with, with the env's settings, e.g. the cartpole's x_goal). No expert is needed, which is
its appeal; the paper expects it to help less than distance re-weighting because the reward's
isocurves cross the path that leads to the goal. The defaults fit the cartpole, whose reward lies
in [0, 1] less the small action cost; for the half cheetah (reward = forward speed - action cost)
set low and high to the range that matters, e.g. `{low: -1, high: 12}`. The floor keeps the rows
far from the goal in the fit (a zero weight would drop them). The weights are normalised to mean 1
over the rows trained on, as every weighted objective's (`objectives/weighted.py`).
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from objmm.envs import Task
from objmm.errors import ObjmmError
from objmm.objectives.weighted import Loss, WeightedObjective


class RewardWeighted(WeightedObjective):
    def __init__(
        self, floor: float = 0.05, low: float = 0.0, high: float = 1.0, loss: Loss = "nll", normalise: bool = True
    ):
        """
        Args:
            floor: the smallest weight, in [0, 1].
            low, high: the reward that weighs 0 and the reward that weighs 1 (linear between).
            loss: the weighted loss, `nll` (probabilistic models) or `mse` (deterministic ones).
            normalise: divide the weights by their mean over the rows trained on.
        """
        super().__init__(loss, normalise)
        if not 0 <= floor <= 1 or not high > low:
            raise ObjmmError(f"RewardWeighted needs 0 <= floor <= 1 and high > low, got {floor}, {low}, {high}")
        self.floor, self.low, self.high = floor, low, high
        self.name = f"reward_weighted_{loss}"
        self.reward = None

    def __repr__(self) -> str:
        return f"RewardWeighted(floor={self.floor}, low={self.low}, high={self.high}, loss={self.loss!r})"

    def bind(self, task: Task, env_kwargs: dict) -> None:
        self.reward = task.reward(**env_kwargs)

    def raw_weight(self, batch: TensorDictBase) -> torch.Tensor:
        if self.reward is None:
            raise ObjmmError("RewardWeighted is not bound to an env; it is bound when its model is built")
        r = self.reward(batch["next_obs"], batch["action"])
        return ((r - self.low) / (self.high - self.low)).clamp(0, 1).clamp_min(self.floor)
