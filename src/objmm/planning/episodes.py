"""Run a policy for whole episodes in the real env, several episodes side by side."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from objmm.envs import get_task, make_env


def run_episodes(
    env_id: str,
    policy: Callable[[TensorDictBase], TensorDictBase],
    episodes: int,
    seed: int = 0,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    **env_kwargs,
) -> np.ndarray:
    """Total reward of `episodes` episodes [episodes]; the policy gets all of them in one batch per step."""
    steps = steps or get_task(env_id).episode_steps
    envs = gymnasium.vector.SyncVectorEnv([lambda: make_env(env_id, **env_kwargs) for _ in range(episodes)])
    if hasattr(policy, "reset"):
        policy.reset()
    obs, _ = envs.reset(seed=seed)
    totals = np.zeros(episodes)
    for _ in range(steps):
        td = TensorDict(observation=torch.as_tensor(obs, dtype=torch.float32, device=device), batch_size=[episodes])
        action = policy(td)["action"].detach().cpu().numpy()
        obs, reward, _, _, _ = envs.step(action)
        totals += reward
    envs.close()
    return totals
