"""The cartpole with n distractor entries: `objmm/PETSCartpole-d<n>-v0` (e.g. `-d4-`, `-d16-`).

The observation is the cartpole's [x, theta, x_dot, theta_dot] followed by n entries z with dynamics
of their own, which the action does not move and the reward ignores: pairs of entries rotate at
their own rate (pair i by 0.05 (i + 1) radians a step), an odd last entry decays by 0.99 a step,
all drawn from N(0, 1) at reset, after the cartpole's own state (so the cartpole's first four
entries are those of the plain cartpole with the same seed and actions). A likelihood model must
spend capacity predicting z; a controller gains nothing from it: the stress under which a
mismatch fix should show (issue 21's benchmark). The ids are made when first asked for
(`get_task`), any n >= 0.
"""

from __future__ import annotations

import re
from dataclasses import replace

import gymnasium
import numpy as np
import torch

from objmm.envs import cartpole
from objmm.envs.task import Task
from objmm.errors import ObjmmError

PATTERN = re.compile(r"^objmm/PETSCartpole-d(-?\d+)-v0$")


def env_id(distractors: int) -> str:
    return f"objmm/PETSCartpole-d{distractors}-v0"


def rates(n: int) -> np.ndarray:
    """Each pair's rotation per step, radians."""
    return 0.05 * (np.arange(n // 2) + 1)


def advance(z: np.ndarray, steps: int = 1) -> np.ndarray:
    """The distractors `steps` steps on: z [..., n] -> [..., n]."""
    n = z.shape[-1]
    out = np.array(z, dtype=np.float64, copy=True)
    angle = rates(n) * steps
    a, b = out[..., 0 : 2 * (n // 2) : 2].copy(), out[..., 1 : 2 * (n // 2) : 2].copy()
    out[..., 0 : 2 * (n // 2) : 2] = np.cos(angle) * a - np.sin(angle) * b
    out[..., 1 : 2 * (n // 2) : 2] = np.sin(angle) * a + np.cos(angle) * b
    if n % 2:
        out[..., -1] *= 0.99**steps
    return out


def distractor_reward(next_obs: torch.Tensor, action: torch.Tensor, x_goal: float = 0.0) -> torch.Tensor:
    """The cartpole's reward of the first four entries; the distractors do not count."""
    return cartpole.cartpole_reward(next_obs[..., :4], action, x_goal)


def distractor_model_inputs(obs: torch.Tensor) -> torch.Tensor:
    """The cartpole's model inputs, then the distractors as they are."""
    return torch.cat([cartpole.cartpole_model_inputs(obs[..., :4]), obs[..., 4:]], dim=-1)


def make_task(distractors: int) -> Task:
    base = cartpole.TASK
    names = tuple(f"z{i}" for i in range(distractors))
    return replace(
        base,
        env_id=env_id(distractors),
        name=f"PETS cartpole with {distractors} distractors",
        obs_dim=4 + distractors,
        reward_fn=distractor_reward,
        model_inputs=distractor_model_inputs,
        model_input_dim=base.model_input_dim + distractors,
        delta_targets=base.delta_targets + (True,) * distractors,
        state_low=base.state_low + (-3.0,) * distractors,
        state_high=base.state_high + (3.0,) * distractors,
        obs_names=base.obs_names + names,
        paper_fig3_rho=(),
        paper_app_c_rho=(),
    )


class CartpoleDistractorsEnv(cartpole.PETSCartpoleEnv):
    """The cartpole, its observation followed by `distractors` entries of their own dynamics."""

    distractors = 0

    def __init__(self, *args, **kwargs):
        self._z = np.zeros(self.distractors)
        super().__init__(*args, **kwargs)

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([super()._get_obs(), self._z])

    def step(self, action):
        self._z = advance(self._z)
        return super().step(action)

    def reset_model(self) -> np.ndarray:
        super().reset_model()
        self._z = self.np_random.normal(0.0, 1.0, size=self.distractors)
        return self._get_obs()

    @classmethod
    def state_from_observation(cls, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return obs[..., :2], obs[..., 2:4]

    @classmethod
    def distractor_trajectory(cls, obs: np.ndarray, steps: int) -> np.ndarray:
        """The distractors after each of `steps` steps from obs [B, O] -> [B, steps, n] (the true
        simulator steps the cartpole's entries in MuJoCo and these here)."""
        z = obs[..., 4:]
        return np.stack([advance(z, h + 1) for h in range(steps)], axis=-2)


def make(env: str) -> Task | None:
    """The task of a distractor id (registered with gymnasium on first use), None for another id."""
    match = PATTERN.match(env)
    if match is None:
        return None
    n = int(match.group(1))
    if n < 0:
        raise ObjmmError(f"{env}: the number of distractors must be >= 0, not {n}")
    task = make_task(n)
    env_class = type(f"CartpoleDistractors{n}Env", (CartpoleDistractorsEnv,), {"distractors": n, "task": task})
    if env not in gymnasium.registry:
        gymnasium.register(id=env, entry_point=env_class, max_episode_steps=task.episode_steps)
    return task


__all__ = ["advance", "env_id", "make"]
