"""Mean squared error of the mean prediction: the loss of deterministic (D, DE) models."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective


def squared_error(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over the last dim: [..., D] -> [...]."""
    return ((target - mean) ** 2).mean(-1)


class MSE(Objective):
    name = "mse"

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        return squared_error(prediction.mean, target)
