"""Model metrics on a whole set of rows (outside Lightning's validation loop)."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from objmm.models import DynamicsModel
from objmm.objectives import gaussian_nll, squared_error


@torch.no_grad()
def dataset_metrics(model: DynamicsModel, rows: TensorDict, batch_size: int = 4096) -> dict[str, float]:
    """Mean NLL (probabilistic models) and MSE of `model` over `rows`, averaged over members and rows."""
    device = model.input_mean.device
    totals = {"nll": 0.0, "mse": 0.0} if model.probabilistic else {"mse": 0.0}
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size].to(device)
        prediction = model(batch["obs"], batch["action"])
        target = model.targets(batch["obs"], batch["next_obs"])
        totals["mse"] += squared_error(prediction.mean, target).mean(0).sum().item()
        if model.probabilistic:
            totals["nll"] += gaussian_nll(prediction.mean, prediction.logvar, target).mean(0).sum().item()
    return {name: total / max(len(rows), 1) for name, total in totals.items()}
