"""Loss objectives for dynamics models; one module each, chosen in YAML by class path."""

from objmm.objectives.base import Objective
from objmm.objectives.mse import MSE, squared_error
from objmm.objectives.nll import GaussianNLL, gaussian_nll

__all__ = ["MSE", "GaussianNLL", "Objective", "gaussian_nll", "squared_error"]
