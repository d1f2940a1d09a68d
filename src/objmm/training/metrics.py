"""A model's metrics on rows: the one code path for `fit`'s validation, PETS and dataset metrics.

Per row, averaged over the ensemble's members:

- `nll`: the full Gaussian negative log-likelihood of the target vector, summed over its D dims,
  with the 0.5 log(2 pi) constant (what `GaussianNLL` trains on);
- `paper_ll`: the log-likelihood the paper reports (Fig. 3, 7, 14; 4.827 in Sec. 4.3), the
  per-dimension mean of -0.5 (e^2 / var + log var) without the constant:
  `paper_ll = 0.5 log(2 pi) - nll / D` (docs/objectives.md);
- `mse`: the squared error of the mean prediction, averaged over dims;
- `loss`: the active objective's own loss.

Each is reported as the mean over all rows. Two robust views sit beside it: `nll_median`, the
median over rows, and the estimator of the paper's Appendix C, `nll_batch_median` and
`paper_ll_batch_median`: the median over batches of each batch's mean, so that an outlier row moves
its own batch and not the result. Which rows form a batch (random rows, or one trajectory each)
is `TransitionDataset.batches`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

import torch
from tensordict import TensorDictBase

from objmm.data import TransitionDataset
from objmm.models import DynamicsModel
from objmm.objectives import Objective, gaussian_nll, squared_error

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def paper_ll_from_nll(nll: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """The paper's log-likelihood from the full Gaussian NLL summed over `dims` target dimensions."""
    return HALF_LOG_2PI - nll / dims


def row_metrics(model: DynamicsModel, objective: Objective | None, batch: TensorDictBase) -> dict[str, torch.Tensor]:
    """Metrics of each row of `batch` [B], averaged over members: name -> [B]."""
    prediction = model(batch["obs"], batch["action"])
    target = model.targets(batch["obs"], batch["next_obs"])
    metrics = {"mse": squared_error(prediction.mean, target).mean(0)}
    if model.probabilistic:
        nll = gaussian_nll(prediction.mean, prediction.logvar, target).mean(0)
        metrics["nll"] = nll
        metrics["paper_ll"] = paper_ll_from_nll(nll, target.shape[-1])
    if objective is not None and (model.probabilistic or not objective.needs_variance):
        metrics["loss"] = objective(prediction, target, batch).mean(0)
    return metrics


class MetricsAccumulator:
    """Collects `row_metrics` batch by batch; `compute()` aggregates them (see the module docstring)."""

    BATCH_MEDIANS = ("nll", "paper_ll")

    def __init__(self):
        self.batches: dict[str, list[torch.Tensor]] = defaultdict(list)

    def update(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, values in metrics.items():
            self.batches[name].append(values.detach().float())

    def compute(self) -> dict[str, float]:
        out = {}
        for name, batches in self.batches.items():
            rows = torch.cat(batches)
            out[name] = rows.mean().item()
            if name == "nll":
                out["nll_median"] = median(rows)
            if name in self.BATCH_MEDIANS:
                out[f"{name}_batch_median"] = median(torch.stack([b.mean() for b in batches]))
        return out


def median(values: torch.Tensor) -> float:
    """The median of a 1-d tensor (the mean of the two middle values for an even count)."""
    ordered = values.sort().values
    n = len(ordered)
    return ((ordered[(n - 1) // 2] + ordered[n // 2]) / 2).item() if n else float("nan")


@torch.no_grad()
def dataset_metrics(
    model: DynamicsModel,
    dataset: TransitionDataset,
    objective: Objective | None = None,
    batches: Literal["random", "trajectory"] = "random",
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, float]:
    """The metrics of `model` on a whole dataset, in batches of random rows or of one trajectory each."""
    device = model.input_mean.device
    accumulator = MetricsAccumulator()
    for rows in dataset.batches(batches, batch_size, seed):
        accumulator.update(row_metrics(model, objective, dataset.data[rows].to(device)))
    return accumulator.compute()
