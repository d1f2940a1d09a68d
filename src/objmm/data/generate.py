"""Dataset generators: the state-action grid (paper §4) and random-action rollouts (PETS's initial data)."""

from __future__ import annotations

import numpy as np
import torch

from objmm.data.dataset import TransitionDataset
from objmm.envs import get_task, make_env


def step_from_observations(env_id: str, obs: torch.Tensor, actions: torch.Tensor, **env_kwargs) -> torch.Tensor:
    """Set the simulator to each observation [N, O], apply the action [N, A], return next obs [N, O]."""
    env = make_env(env_id, **env_kwargs).unwrapped
    env.reset(seed=0)
    next_obs = np.empty((len(obs), obs.shape[1]))
    for i, (o, a) in enumerate(zip(obs.double().numpy(), actions.double().numpy(), strict=True)):
        env.set_state(*env.state_from_observation(o))
        next_obs[i] = env.step(a)[0]
    env.close()
    return torch.from_numpy(next_obs)


def _axis(low: float, high: float, points: int, periodic: bool) -> torch.Tensor:
    if periodic:  # -pi and pi are the same angle: slice the circle into `points` distinct values
        return low + (high - low) * torch.arange(points, dtype=torch.float64) / points
    return torch.linspace(low, high, points, dtype=torch.float64)


def grid_dataset(env_id: str, points: int = 7, **env_kwargs) -> TransitionDataset:
    """Every observation entry and action entry sliced evenly into `points` values: points^(O+A) rows."""
    task = get_task(env_id)
    axes = [
        _axis(lo, hi, points, i in task.periodic_dims)
        for i, (lo, hi) in enumerate(zip(task.state_low, task.state_high, strict=True))
    ]
    axes += [_axis(task.action_low, task.action_high, points, False)] * task.action_dim
    rows = torch.cartesian_prod(*axes)
    obs, actions = rows[:, : task.obs_dim], rows[:, task.obs_dim :]
    next_obs = step_from_observations(env_id, obs, actions, **env_kwargs)
    return TransitionDataset.from_tensors(
        env_id,
        obs,
        actions,
        next_obs,
        source="grid",
        points=points,
        env_kwargs=env_kwargs,
        state_low=task.state_low,
        state_high=task.state_high,
    )


def random_rollouts(env_id: str, episodes: int, horizon: int, seed: int = 0, **env_kwargs) -> TransitionDataset:
    """`episodes` rollouts of `horizon` uniformly random actions, each from the env's reset state."""
    task = get_task(env_id)
    env = make_env(env_id, **env_kwargs)
    rng = np.random.default_rng(seed)
    n = episodes * horizon
    obs = np.empty((n, task.obs_dim))
    next_obs = np.empty((n, task.obs_dim))
    actions = rng.uniform(task.action_low, task.action_high, size=(n, task.action_dim))
    for e in range(episodes):
        o, _ = env.reset(seed=seed * 1_000_003 + e)
        for t in range(horizon):
            i = e * horizon + t
            obs[i] = o
            o = next_obs[i] = env.step(actions[i])[0]
    env.close()
    episode = torch.arange(episodes).repeat_interleave(horizon)
    step = torch.arange(horizon).repeat(episodes)
    return TransitionDataset.from_tensors(
        env_id,
        torch.from_numpy(obs),
        torch.from_numpy(actions),
        torch.from_numpy(next_obs),
        episode,
        step,
        source="random",
        episodes=episodes,
        horizon=horizon,
        seed=seed,
        env_kwargs=env_kwargs,
    )
