"""Dataset generators: the state-action grid and uniform samples of the box (paper §4), and
random-action rollouts (PETS's initial data; motor babbling, appendix A)."""

from __future__ import annotations

import numpy as np
import torch

from objmm.data.dataset import TransitionDataset
from objmm.envs import Task, get_task, make_env
from objmm.envs.simulator import SimulatorDynamics
from objmm.seeding import derive_seed


def step_from_observations(env_id: str, obs: torch.Tensor, actions: torch.Tensor, **env_kwargs) -> torch.Tensor:
    """Set the simulator to each observation [N, O], apply the action [N, A], return next obs [N, O]
    (float64): every row in one batched `mujoco.rollout` call (`SimulatorDynamics`), not a Python loop."""
    return SimulatorDynamics(env_id, **env_kwargs)(obs.double(), actions.double())


def _box(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    low = torch.tensor(task.state_low + (task.action_low,) * task.action_dim, dtype=torch.float64)
    high = torch.tensor(task.state_high + (task.action_high,) * task.action_dim, dtype=torch.float64)
    return low, high


def _axis(low: float, high: float, points: int, periodic: bool) -> torch.Tensor:
    if periodic:  # -pi and pi are the same angle: slice the circle into `points` distinct values
        return low + (high - low) * torch.arange(points, dtype=torch.float64) / points
    return torch.linspace(low, high, points, dtype=torch.float64)


def _one_step_dataset(env_id: str, rows: torch.Tensor, env_kwargs: dict, **metadata) -> TransitionDataset:
    task = get_task(env_id)
    obs, actions = rows[:, : task.obs_dim], rows[:, task.obs_dim :]
    next_obs = step_from_observations(env_id, obs, actions, **env_kwargs)
    return TransitionDataset.from_tensors(
        env_id,
        obs,
        actions,
        next_obs,
        env_kwargs=env_kwargs,
        state_low=task.state_low,
        state_high=task.state_high,
        **metadata,
    )


def grid_dataset(env_id: str, points: int = 7, **env_kwargs) -> TransitionDataset:
    """Every observation entry and action entry sliced evenly into `points` values: points^(O+A) rows."""
    task = get_task(env_id)
    low, high = _box(task)
    axes = [_axis(lo, hi, points, i in task.periodic_dims) for i, (lo, hi) in enumerate(zip(low, high, strict=True))]
    return _one_step_dataset(env_id, torch.cartesian_prod(*axes), env_kwargs, source="grid", points=points)


def sampled_dataset(env_id: str, size: int, seed: int = 0, **env_kwargs) -> TransitionDataset:
    """`size` observation-action pairs drawn uniformly from the task's box, each stepped once."""
    low, high = _box(get_task(env_id))
    u = torch.rand(size, len(low), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return _one_step_dataset(
        env_id, low + (high - low) * u, env_kwargs, source="sampled", size_requested=size, seed=seed
    )


def random_rollouts(
    env_id: str, episodes: int, horizon: int, seed: int = 0, source: str = "random", **env_kwargs
) -> TransitionDataset:
    """`episodes` rollouts of `horizon` uniformly random actions, each from the env's reset state."""
    task = get_task(env_id)
    env = make_env(env_id, **env_kwargs)
    rng = np.random.default_rng(derive_seed(seed, "actions"))
    obs = np.empty((episodes, horizon, task.obs_dim))
    next_obs = np.empty_like(obs)
    actions = rng.uniform(task.action_low, task.action_high, size=(episodes, horizon, task.action_dim))
    for e in range(episodes):
        o, _ = env.reset(seed=derive_seed(seed, "reset", e))
        for t in range(horizon):
            obs[e, t] = o
            o = next_obs[e, t] = env.step(actions[e, t])[0]
    env.close()
    return TransitionDataset.from_trajectories(
        env_id,
        obs,
        actions,
        next_obs,
        source=source,
        episodes=episodes,
        horizon=horizon,
        seed=seed,
        env_kwargs=env_kwargs,
    )


def babbling_dataset(env_id: str, rollouts: int, horizon: int = 10, seed: int = 0, **env_kwargs) -> TransitionDataset:
    """Motor babbling (appendix A): `rollouts` random-action rollouts of `horizon` steps, all from the
    noise-free initial state (the paper: 20, 200, 400, 2000 rollouts of 10 = 200 ... 20000 rows)."""
    return random_rollouts(env_id, rollouts, horizon, seed, source="babbling", reset_noise_scale=0.0, **env_kwargs)
