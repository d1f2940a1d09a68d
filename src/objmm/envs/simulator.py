"""The true simulator as a batched dynamics function: the one way objmm steps MuJoCo from given
observations (grid and sampled datasets, the expert planner, checks).

`mujoco.rollout` steps a whole batch of physics states in C (on several threads), so the CEM
population goes through MuJoCo as one call per horizon step rather than a Python loop.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
import torch
from mujoco import rollout

from objmm.envs import make_env


class SimulatorDynamics:
    """(obs [B, O], action [B, A]) -> next obs [B, O], by setting MuJoCo to each obs and stepping it."""

    def __init__(self, env_id: str, threads: int | None = None, **env_kwargs):
        env = make_env(env_id, **env_kwargs).unwrapped
        self.env_class = type(env)
        self.model = env.model
        self.frame_skip = env.frame_skip
        self.dt = env.dt
        threads = threads or min(4, os.cpu_count() or 1)
        self.datas = [mujoco.MjData(self.model) for _ in range(threads)]
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        template = np.empty(mujoco.mj_stateSize(self.model, self.spec))
        mujoco.mj_getState(self.model, env.data, template, self.spec)
        self.template = template
        nq, nv = self.model.nq, self.model.nv
        self.qpos_slice = slice(1, 1 + nq)  # FULLPHYSICS = [time, qpos, qvel, act, ...]
        self.qvel_slice = slice(1 + nq, 1 + nq + nv)
        env.close()

    def __call__(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.trajectory(obs, action.unsqueeze(1))[:, 0]

    def trajectory(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs [B, O], open-loop actions [B, H, A] -> observation after each action [B, H, O]."""
        obs_np = obs.detach().cpu().double().numpy()
        qpos, qvel = self.env_class.state_from_observation(obs_np)
        state = np.tile(self.template, (len(obs_np), 1))
        state[:, self.qpos_slice] = qpos
        state[:, self.qvel_slice] = qvel
        control = np.repeat(actions.detach().cpu().double().numpy(), self.frame_skip, axis=1)
        out, _ = rollout.rollout(self.model, self.datas, state, control)
        after = out[:, self.frame_skip - 1 :: self.frame_skip]  # physics state at the end of each env step
        qpos_after = after[..., self.qpos_slice]
        qpos_before = np.concatenate([qpos[:, None], qpos_after[:, :-1]], axis=1)
        next_obs = self.env_class.observation_from_state(qpos_before, qpos_after, after[..., self.qvel_slice], self.dt)
        if getattr(self.env_class, "distractors", 0):  # entries outside MuJoCo (envs/distractors.py)
            next_obs = np.concatenate([next_obs, self.env_class.distractor_trajectory(obs_np, actions.shape[1])], -1)
        return torch.as_tensor(next_obs, dtype=obs.dtype, device=obs.device)
