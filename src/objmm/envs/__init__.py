"""objmm's environments: each module holds one MuJoCo env, its torch reward and its `Task`."""

import gymnasium

from objmm.envs import cartpole, distractors, half_cheetah
from objmm.envs.task import EnvSpec, Task, get_task, known_env_ids, register_family, register_task

for _module in (cartpole, half_cheetah):
    register_task(_module.TASK)
    if _module.ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=_module.ENV_ID,
            entry_point=f"{_module.__name__}:{_module.ENV_CLASS.__name__}",
            max_episode_steps=_module.TASK.episode_steps,
        )

register_family(distractors.make, "objmm/PETSCartpole-d<n>-v0")  # the cartpole with n distractor entries

__all__ = ["EnvSpec", "Task", "get_task", "known_env_ids", "make_env"]


def make_env(env_id: str, **kwargs) -> gymnasium.Env:
    """gymnasium.make for an objmm env id, with a clear error for an unknown one."""
    get_task(env_id)
    return gymnasium.make(env_id, **kwargs)
