"""The MujocoEnv shared by objmm's PETS tasks: stepping, reset noise and the reward come from the task.

A subclass names its asset, frame skip and `Task`, and gives the two batched conversions between
observations and MuJoCo state; `step` is the same for every task: clip the action, simulate,
observe, score with the task's own torch reward (so the env's reward and the planner's are the
same function).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.spaces import Box

from objmm.envs.task import Task


class PETSMujocoEnv(MujocoEnv):
    task: Task
    asset: str
    frame_skip_steps: int
    reset_noise_default: float

    def __init__(self, reset_noise_scale: float | None = None, **kwargs):
        reward_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in self.reward_keywords()}
        observation_space = Box(-np.inf, np.inf, shape=(self.task.obs_dim,), dtype=np.float64)
        super().__init__(self.asset, self.frame_skip_steps, observation_space=observation_space, **kwargs)
        self.reward_kwargs = {k: float(v) for k, v in reward_kwargs.items()}
        self.reset_noise_scale = self.reset_noise_default if reset_noise_scale is None else reset_noise_scale
        self._qpos_before = self.data.qpos.copy()

    @classmethod
    def reward_keywords(cls) -> tuple[str, ...]:
        """Keyword arguments of the env that are the reward's (e.g. the cartpole's x_goal)."""
        return ()

    # Batched conversions between observations [..., O] and MuJoCo state, for generators and
    # the true-simulator planner.
    @staticmethod
    def state_from_observation(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def observation_from_state(qpos_before: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, dt: float) -> np.ndarray:
        raise NotImplementedError

    def _get_obs(self) -> np.ndarray:
        return self.observation_from_state(self._qpos_before, self.data.qpos, self.data.qvel, self.dt)

    def step(self, action):
        low, high = self.task.action_low, self.task.action_high
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.task.action_dim), low, high)
        self._qpos_before = self.data.qpos.copy()
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        reward = float(self.task.reward_fn(torch.from_numpy(obs), torch.from_numpy(action), **self.reward_kwargs))
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, {}

    def set_state(self, qpos, qvel):
        super().set_state(qpos, qvel)
        self._qpos_before = self.data.qpos.copy()

    def reset_model(self) -> np.ndarray:
        noise = self.reset_noise_scale
        qpos = self.init_qpos + self.np_random.normal(0.0, noise, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.normal(0.0, noise, size=self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()
