"""Loss objectives for dynamics models; one module each, chosen in YAML by class path."""

from objmm.objectives.base import Objective, build_objective
from objmm.objectives.distance_weighted import DistanceWeighted
from objmm.objectives.mse import MSE, squared_error
from objmm.objectives.multi_step import MultiStep
from objmm.objectives.nll import GaussianNLL, gaussian_nll
from objmm.objectives.reward_weighted import RewardWeighted
from objmm.objectives.value_equivalence import ValueEquivalence
from objmm.objectives.value_gradient import ValueGradientWeighted

__all__ = [
    "build_objective",
    "MSE",
    "DistanceWeighted",
    "GaussianNLL",
    "MultiStep",
    "Objective",
    "RewardWeighted",
    "ValueEquivalence",
    "ValueGradientWeighted",
    "gaussian_nll",
    "squared_error",
]
