"""Run a policy for whole episodes in the real env, several episodes side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from objmm import interrupts
from objmm.envs import get_task, make_env
from objmm.errors import ObjmmError


@dataclass
class Episodes:
    """What N episodes of T steps did: returns [N]; obs, next_obs [N, T, O]; actions [N, T, A]; and
    the seconds the policy took for its actions, at the first step (a planner's capture or compile)
    and at all the others together (its action read back on the host ends each step's time)."""

    returns: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    policy_first_seconds: float = 0.0
    policy_seconds: float = 0.0


def collect_episodes(
    env_id: str,
    policy: Callable[[TensorDictBase], TensorDictBase],
    episodes: int,
    seed: int | list[int] = 0,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int, np.ndarray], None] | None = None,
    **env_kwargs,
) -> Episodes:
    """Run `episodes` episodes at once; the policy gets all of them in one batch per step.

    The env applies the policy's action as its actuator does (the MuJoCo control range); the
    planner bounds its own actions (`CEMPlanner.plan`). `progress(step, steps, returns_so_far)` is
    called after every step. `seed` seeds episode i's start with `seed + i`, or with `seed[i]` when
    it is a list (episodes that start alike in any batch).
    """
    task = get_task(env_id)
    steps = task.episode_steps if steps is None else steps
    if episodes < 1 or steps < 1:
        raise ObjmmError(f"episodes and episode steps must be at least 1, got {episodes} and {steps}")
    envs = gymnasium.vector.SyncVectorEnv([lambda: make_env(env_id, **env_kwargs) for _ in range(episodes)])
    if hasattr(policy, "reset"):
        policy.reset()
    if isinstance(seed, list) and len(seed) != episodes:
        raise ObjmmError(f"{len(seed)} episode seeds for {episodes} episodes")
    obs, _ = envs.reset(seed=seed)
    record = Episodes(
        returns=np.zeros(episodes),
        obs=np.empty((episodes, steps, task.obs_dim)),
        actions=np.empty((episodes, steps, task.action_dim)),
        next_obs=np.empty((episodes, steps, task.obs_dim)),
    )
    for t in range(steps):
        start = time.perf_counter()
        td = TensorDict(observation=torch.as_tensor(obs, dtype=torch.float32, device=device), batch_size=[episodes])
        action = policy(td)["action"].detach().cpu().numpy().astype(np.float64)
        if t == 0:
            record.policy_first_seconds = time.perf_counter() - start
        else:
            record.policy_seconds += time.perf_counter() - start
        record.obs[:, t], record.actions[:, t] = obs, action
        obs, reward, _, _, _ = envs.step(action)
        record.next_obs[:, t] = obs
        record.returns += reward
        interrupts.check()  # a Ctrl-C that Python swallowed (in a weakref callback) still stops here
        if progress is not None:
            progress(t + 1, steps, record.returns)
    envs.close()
    return record
