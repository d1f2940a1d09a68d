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

import importlib
import inspect
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from objmm.models.ensemble import Prediction

if TYPE_CHECKING:
    from objmm.data import TransitionDataset
    from objmm.envs import Task
    from objmm.models import DynamicsModel


class Objective(ABC):
    #: the metric name this objective's loss is logged under
    name: str = "loss"
    #: True if the objective reads `prediction.logvar` (so it needs a probabilistic model)
    needs_variance: bool = False

    def bind(self, task: Task, env_kwargs: dict) -> None:  # noqa: B027 (an optional hook: nothing to do by default)
        """Called once by the model that trains with this objective, with its env (an objective that
        needs the env's reward or an expert dataset of that env checks and reads it here)."""

    def attach(self, model: DynamicsModel) -> None:  # noqa: B027 (an optional hook)
        """Called once with the model that trains with this objective (one that rolls the model
        forward over several steps keeps it)."""

    def on_fit_start(self, train_set: TransitionDataset) -> None:  # noqa: B027 (an optional hook)
        """Called at the start of every fit with the rows it trains on (online re-weighting reads them)."""

    @abstractmethod
    def __call__(self, prediction: Prediction, target: torch.Tensor, batch: TensorDictBase) -> torch.Tensor:
        """prediction [E, B, D], target [(E,) B, D], batch [(E,) B] -> loss per member and row [E, B]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def spec(self) -> dict:
        """The objective as a config names it: its class path and its (simple) settings, read back
        from the attributes of the constructor's argument names."""
        kind = type(self)
        settings = inspect.signature(kind).parameters
        init_args = {k: getattr(self, k) for k in settings if hasattr(self, k)}
        return {"class_path": f"{kind.__module__}.{kind.__qualname__}", "init_args": init_args}


def build_objective(spec: dict) -> Objective:
    """The objective a `spec()` (or a config's `class_path` and `init_args`) describes."""
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))
