"""A stateless torchrl env whose steps come from a dynamics function and the task's known reward.

The dynamics function maps (obs [B, O], action [B, A]) to next obs [B, O]: a learned model's
`predict_next`, or `SimulatorDynamics` (the true MuJoCo simulator). Being a real torchrl
`EnvBase`, it can be rolled out with `env.rollout(...)`; the CEM planner reads `dynamics` and
`reward` directly so that its inner loop is plain tensor ops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase

from objmm.envs import Task

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rollout(dynamics: Dynamics, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Observations after each action: obs [B, O], actions [B, H, A] -> [B, H, O], stepping
    `dynamics` H times (the planner's rollouts, and the attack's differentiable ones)."""
    states = []
    for t in range(actions.shape[1]):
        obs = dynamics(obs, actions[:, t])
        states.append(obs)
    return torch.stack(states, dim=1)


class ModelEnv(EnvBase):
    def __new__(cls, *args, **kwargs):
        # not batch-locked: accepts any batch size (the planner feeds [episodes x population] rows)
        return super().__new__(cls, *args, _batch_locked=False, **kwargs)

    def __init__(self, task: Task, dynamics: Dynamics, reward: Callable, device: torch.device | str = "cpu"):
        super().__init__(device=device)
        self.task = task
        self.dynamics = dynamics
        self.reward = reward
        low, high = task.action_bounds(device)
        self.observation_spec = Composite(observation=Unbounded(shape=(task.obs_dim,), device=device))
        self.action_spec = Bounded(low=low, high=high, shape=(task.action_dim,), device=device)
        self.reward_spec = Unbounded(shape=(1,), device=device)

    def predict_trajectory(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Observations after each action: obs [B, O], actions [B, H, A] -> [B, H, O].

        Steps `dynamics` H times; a dynamics object with its own `trajectory` method (the
        simulator, which rolls a whole open-loop sequence in one C call) is asked directly.
        """
        if hasattr(self.dynamics, "trajectory"):
            return self.dynamics.trajectory(obs, actions)
        return rollout(self.dynamics, obs, actions)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        """Start from the observation in `tensordict` (zeros if it has none)."""
        if tensordict is not None and "observation" in tensordict.keys():
            obs = tensordict["observation"]
            batch = tensordict.batch_size
        else:
            batch = tensordict.batch_size if tensordict is not None else self.batch_size
            obs = torch.zeros(*batch, self.task.obs_dim, device=self.device)
        done = torch.zeros(*batch, 1, dtype=torch.bool, device=self.device)
        return TensorDict(observation=obs, done=done, terminated=done.clone(), batch_size=batch)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, action = tensordict["observation"], tensordict["action"]
        batch = obs.shape[:-1]
        next_obs = self.dynamics(obs.reshape(-1, obs.shape[-1]), action.reshape(-1, action.shape[-1]))
        next_obs = next_obs.reshape(*batch, -1)
        reward = self.reward(next_obs, action).unsqueeze(-1)
        done = torch.zeros(*batch, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            observation=next_obs,
            reward=reward,
            done=done,
            terminated=done.clone(),
            batch_size=tensordict.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        torch.manual_seed(seed) if seed is not None else None
