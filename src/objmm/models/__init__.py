"""Dynamics models: the batched ensemble network, its task-aware wrapper, and K of them stacked."""

from objmm.models.dynamics import DynamicsModel
from objmm.models.ensemble import EnsembleLinear, EnsembleMLP, Prediction
from objmm.models.stacked import StackedDynamics

__all__ = ["DynamicsModel", "EnsembleLinear", "EnsembleMLP", "Prediction", "StackedDynamics"]
