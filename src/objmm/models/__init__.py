"""Dynamics models: the batched ensemble network and its task-aware wrapper."""

from objmm.models.dynamics import DynamicsModel
from objmm.models.ensemble import EnsembleLinear, EnsembleMLP, Prediction

__all__ = ["DynamicsModel", "EnsembleLinear", "EnsembleMLP", "Prediction"]
