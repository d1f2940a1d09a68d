"""Gaussian negative log-likelihood: PETS's loss for probabilistic (P, PE) models."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase

from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log N(target | mean, exp(logvar)) summed over the last dim: [..., D] -> [...]."""
    return 0.5 * ((target - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


class GaussianNLL(Objective):
    """Per member, the NLL of the target vector under the member's diagonal Gaussian."""

    name = "nll"
    needs_variance = True

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        return gaussian_nll(prediction.mean, prediction.logvar, target)
