"""Model metrics on a whole set of rows (outside Lightning's validation loop)."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from objmm.models import DynamicsModel
from objmm.objectives import gaussian_nll, squared_error


@torch.no_grad()
def dataset_metrics(model: DynamicsModel, rows: TensorDict, batch_size: int = 4096) -> dict[str, float]:
    """Mean NLL (probabilistic models) and MSE of `model` over `rows`, averaged over members and rows,
    and the median over rows of the NLL: a few rows predicted with confident, wrong variances can
    lift the mean by orders of magnitude (seen in PETS runs), while the median shows the bulk."""
    device = model.input_mean.device
    totals = {"nll": 0.0, "mse": 0.0} if model.probabilistic else {"mse": 0.0}
    row_nll = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size].to(device)
        prediction = model(batch["obs"], batch["action"])
        target = model.targets(batch["obs"], batch["next_obs"])
        totals["mse"] += squared_error(prediction.mean, target).mean(0).sum().item()
        if model.probabilistic:
            row_nll.append(gaussian_nll(prediction.mean, prediction.logvar, target).mean(0).cpu())
            totals["nll"] += row_nll[-1].sum().item()
    metrics = {name: total / max(len(rows), 1) for name, total in totals.items()}
    if row_nll:
        metrics["nll_median"] = torch.cat(row_nll).median().item()
    return metrics
