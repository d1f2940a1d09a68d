"""What the re-weighted objectives share: a base loss per row (NLL or MSE) times a weight omega >= 0,
the weights normalised to mean 1 over the rows a fit trains on.

Why normalise: the model's log-variance bound penalty (PETS) is added to the mean loss unweighted.
Without normalisation a set whose rows weigh 0.07 on average (the cartpole grid at eps 15.66 under
exp(-d*)) sees that penalty about 15 times stronger relative to its fit than the plain NLL does, and
Adam's step is no longer the same step on the data. Normalised, a weighted objective moves the loss
between rows and leaves its scale alone. The normaliser and the weights' effective sample size are
computed at the start of every fit (`on_fit_start`), from the rows trained on.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Literal

import torch
from tensordict import TensorDictBase

from objmm.errors import ObjmmError
from objmm.models.ensemble import Prediction
from objmm.objectives.base import Objective
from objmm.objectives.mse import squared_error
from objmm.objectives.nll import gaussian_nll

if TYPE_CHECKING:
    from objmm.data import TransitionDataset

Loss = Literal["nll", "mse"]


def base_loss(loss: str, prediction: Prediction, target: torch.Tensor) -> torch.Tensor:
    """The unweighted loss per member and row: `nll` (P, PE) or `mse` (D, DE)."""
    if loss == "nll":
        return gaussian_nll(prediction.mean, prediction.logvar, target)
    return squared_error(prediction.mean, target)


def check_loss(loss: str) -> None:
    if loss not in ("nll", "mse"):
        raise ObjmmError(f"the weighted objective's loss must be 'nll' or 'mse', got {loss!r}")


def effective_sample_fraction(weights: torch.Tensor) -> float:
    """Kish's effective sample size over the number of rows, (sum w)^2 / (n sum w^2): 1 when every row
    weighs the same, 1/n when one row carries all the weight."""
    weights = weights.double()
    return float(weights.sum() ** 2 / (len(weights) * weights.square().sum()))


class WeightedObjective(Objective):
    """`base_loss` times `weight(batch)`: `raw_weight` divided by its mean over the rows trained on
    (with `normalise`)."""

    def __init__(self, loss: Loss, normalise: bool):
        check_loss(loss)
        self.loss, self.normalise = loss, normalise
        self.needs_variance = loss == "nll"
        self.normaliser = 1.0
        #: Kish's effective sample size of the last fit's weights, as a fraction of its rows
        self.effective_fraction: float | None = None

    @abstractmethod
    def raw_weight(self, batch: TensorDictBase) -> torch.Tensor:
        """omega of every row of the batch, before normalisation: [...] for obs [..., O]."""

    def weight(self, batch: TensorDictBase) -> torch.Tensor:
        return self.raw_weight(batch) / self.normaliser

    def on_fit_start(self, train_set: TransitionDataset) -> None:
        weights = self.raw_weight(train_set.data)
        self.effective_fraction = effective_sample_fraction(weights)
        mean = float(weights.double().mean())
        if self.normalise and not mean > 0:
            raise ObjmmError(
                f"{type(self).__name__}: every one of the {len(weights)} rows trained on weighs 0; "
                "raise the floor or train on rows nearer the reference"
            )
        self.normaliser = mean if self.normalise else 1.0

    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        return base_loss(self.loss, prediction, target) * self.weight(batch)
