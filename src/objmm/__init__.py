"""objmm: objective mismatch in model-based RL. Importing it registers the PETS envs with gymnasium."""

from objmm import envs  # noqa: F401  (registers objmm/PETSCartpole-v0)
from objmm.errors import ObjmmError

__all__ = ["ObjmmError", "envs"]
__version__ = "0.1.0"
