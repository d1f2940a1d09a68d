"""objmm: objective mismatch in model-based RL. `import objmm.envs` registers the PETS envs with
gymnasium (every module that makes an env imports it); `import objmm` alone stays light, so that
`objmm --help` answers without torch, MuJoCo or Lightning."""

from objmm.errors import ObjmmError

__all__ = ["ObjmmError"]
__version__ = "0.1.0"
