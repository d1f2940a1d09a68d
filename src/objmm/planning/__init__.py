"""Model-predictive control: the torchrl model env, the CEM planner, real-env episodes."""

from objmm.envs.simulator import SimulatorDynamics  # the true simulator, for an expert planner
from objmm.planning.cem import CEMConfig, CEMPlanner
from objmm.planning.episodes import Episodes, collect_episodes
from objmm.planning.model_env import ModelEnv

__all__ = [
    "CEMConfig",
    "CEMPlanner",
    "Episodes",
    "ModelEnv",
    "SimulatorDynamics",
    "collect_episodes",
]
