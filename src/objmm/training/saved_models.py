"""A trained dynamics model as one file: its settings, weights and what it was trained on.

`save_model` writes `{"hparams", "objective", "state_dict", **info}` atomically (PETS keeps one
per trial, `models/trial_NN.pt`, with the dataset size it was trained on); `load_model` rebuilds
the `DynamicsModule` from it, with one clear line when the file is missing or damaged.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import torch

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.objectives import Objective
from objmm.training.module import DynamicsModule


def objective_spec(objective: Objective) -> dict:
    """The objective as a class path and its (simple) settings, as a config names it."""
    kind = type(objective)
    # the constructor's own settings, read back from the attributes of the same names
    settings = inspect.signature(kind).parameters
    init_args = {k: getattr(objective, k) for k in settings if hasattr(objective, k)}
    return {"class_path": f"{kind.__module__}.{kind.__qualname__}", "init_args": init_args}


def build_objective(spec: dict) -> Objective:
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def module_settings(module: DynamicsModule) -> dict:
    """The module's constructor settings but its objective (LightningCLI adds its bookkeeping to hparams)."""
    settings = inspect.signature(DynamicsModule).parameters
    return {k: v for k, v in module.hparams.items() if k in settings and k != "objective"}


def save_model(path: Path, module: DynamicsModule, **info) -> Path:
    payload = {
        "hparams": module_settings(module),
        "objective": objective_spec(module.objective),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        **info,
    }
    return atomic.write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[DynamicsModule, dict]:
    """The module saved at `path` and the rest of what was saved with it (trial, dataset rows, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ObjmmError(f"{path}: no saved model there")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        module = DynamicsModule(**payload["hparams"], objective=build_objective(payload["objective"]))
        module.load_state_dict(payload["state_dict"])
    except ObjmmError:
        raise
    except Exception as error:  # a truncated or foreign file: say which, not torch's traceback
        raise ObjmmError(f"{path} is not a readable objmm model ({type(error).__name__}: {error})") from None
    info = {k: v for k, v in payload.items() if k not in ("hparams", "objective", "state_dict")}
    return module.to(device), info
