"""The PETS cartpole swing-up (REFERENCE.md), its batched torch reward and model preprocessing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from objmm.envs.base import PETSMujocoEnv
from objmm.envs.task import Task

ENV_ID = "objmm/PETSCartpole-v0"
POLE_LENGTH = 0.6
_ASSET = Path(__file__).parent / "assets" / "pets_cartpole.xml"


def cartpole_reward(next_obs: torch.Tensor, action: torch.Tensor, x_goal: float = 0.0) -> torch.Tensor:
    """PETS cartpole reward. next_obs [..., 4] = [x, theta, x_dot, theta_dot], action [..., 1] -> [...]."""
    assert next_obs.shape[-1] == 4 and action.shape[-1] == 1, (next_obs.shape, action.shape)
    x, theta = next_obs[..., 0], next_obs[..., 1]
    tip_x = x - POLE_LENGTH * torch.sin(theta)
    tip_z = -POLE_LENGTH * torch.cos(theta)
    dist2 = (tip_x - x_goal) ** 2 + (tip_z - POLE_LENGTH) ** 2
    return torch.exp(-dist2 / POLE_LENGTH**2) - 0.01 * (action**2).sum(-1)


def cartpole_model_inputs(obs: torch.Tensor) -> torch.Tensor:
    """[x, theta, x_dot, theta_dot] [..., 4] -> [sin theta, cos theta, x, x_dot, theta_dot] [..., 5]."""
    theta = obs[..., 1:2]
    return torch.cat([torch.sin(theta), torch.cos(theta), obs[..., :1], obs[..., 2:]], dim=-1)


class PETSCartpoleEnv(PETSMujocoEnv):
    """Cart on a rail with a free pole hanging down at theta = 0; swing it up over x_goal.

    Observation [x, theta, x_dot, theta_dot]; action: motor force in [-3, 3] (gear 100);
    200 steps of 0.04 s (two RK4 steps of 0.02 s), no termination.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"], "render_fps": 25}
    asset = str(_ASSET)
    frame_skip_steps = 2
    reset_noise_default = 0.1

    def __init__(self, x_goal: float = 0.0, reset_noise_scale: float | None = None, **kwargs):
        super().__init__(reset_noise_scale, x_goal=x_goal, **kwargs)

    @property
    def x_goal(self) -> float:
        return self.reward_kwargs["x_goal"]

    @classmethod
    def reward_keywords(cls) -> tuple[str, ...]:
        return ("x_goal",)

    # the cartpole's observation is its whole state
    @staticmethod
    def state_from_observation(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [..., 4] -> (qpos [..., 2], qvel [..., 2])."""
        return obs[..., :2], obs[..., 2:]

    @staticmethod
    def observation_from_state(qpos_before: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, dt: float) -> np.ndarray:
        """(qpos, qvel) after a step [..., 2] each -> obs [..., 4]."""
        return np.concatenate([qpos, qvel], axis=-1)


TASK = Task(
    env_id=ENV_ID,
    name="PETS cartpole",
    obs_dim=4,
    action_dim=1,
    action_low=-3.0,
    action_high=3.0,
    episode_steps=200,
    reward_fn=cartpole_reward,
    model_inputs=cartpole_model_inputs,
    model_input_dim=5,
    delta_targets=(True, True, True, True),
    # x, theta, x_dot, theta_dot: wide enough to hold an expert swing-up (docs/datasets.md).
    state_low=(-1.5, -math.pi, -5.0, -12.0),
    state_high=(1.5, math.pi, 5.0, 12.0),
    obs_names=("x", "theta", "x_dot", "theta_dot"),
    periodic_dims=(1,),
    expert_reward=179.0,
    expert_size=2400,
    on_policy_trials=20,
    table1_cem=(25, 400, 40, 5),
    paper_fig3_rho=(("expert", 0.59), ("on_policy", 0.34), ("grid", -0.06)),
    paper_app_c_rho=(("random", 0.34), ("trajectory", 0.36)),
)
PETSCartpoleEnv.task = TASK
ENV_CLASS = PETSCartpoleEnv
