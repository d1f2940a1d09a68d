"""Model-predictive control: the torchrl model env, the CEM planner, real-env episodes."""

from objmm.planning.cem import CEMConfig, CEMPlanner
from objmm.planning.episodes import Episodes, collect_episodes
from objmm.planning.model_env import ModelEnv
from objmm.planning.simulator import SimulatorDynamics

__all__ = [
    "CEMConfig",
    "CEMPlanner",
    "Episodes",
    "ModelEnv",
    "SimulatorDynamics",
    "collect_episodes",
]
