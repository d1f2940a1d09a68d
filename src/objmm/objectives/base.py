"""The objective interface: how a model's predictions are scored against targets.

An objective sees the prediction, the targets and the whole batch (a TensorDict with obs,
action, next_obs, episode, step, and any extra per-row fields such as `weight`), and returns a
loss per member and row, [E, B]. The LightningModule averages it; an objective never touches
the model. Pick one in YAML by class path:

    model:
      objective:
        class_path: objmm.objectives.GaussianNLL
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from tensordict import TensorDictBase

from objmm.models.ensemble import Prediction


class Objective(ABC):
    #: the metric name this objective's loss is logged under
    name: str = "loss"
    #: True if the objective reads `prediction.logvar` (so it needs a probabilistic model)
    needs_variance: bool = False

    @abstractmethod
    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        """prediction [E, B, D], target [(E,) B, D], batch [(E,) B] -> loss per member and row [E, B]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
