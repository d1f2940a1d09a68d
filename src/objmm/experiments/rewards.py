"""The real reward of K models at once: one stacked network, common random numbers (`objmm population`,
`objmm attack`, `objmm reweight` all measure rewards here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from objmm.envs import get_task
from objmm.models import StackedDynamics
from objmm.planning import CEMConfig, CEMPlanner, collect_episodes
from objmm.progress import episode_progress
from objmm.seeding import derive_seed


@dataclass(frozen=True)
class Evaluation:
    """How a model's real reward is measured: `episodes` CEM-MPC episodes of `episode_steps` steps
    (None: the task's), planned with `cem`. `of(settings)` reads the fields of the same names from
    an experiment's section (population, attack, reweight)."""

    episodes: int
    episode_steps: int | None
    cem: CEMConfig

    @classmethod
    def of(cls, settings) -> Evaluation:
        return cls(settings.episodes, settings.episode_steps, settings.cem)


def stacked_rewards(modules, evaluation: Evaluation, env: dict, seed: int, device: str, prefix: str = "") -> np.ndarray:
    """Real episode rewards [K, episodes]: K models x E episodes planned at once, one stack pass per
    step. Episode e starts from the same state and its planner draws the same samples for every
    model, in any stack (common random numbers: models differ only in themselves), so a model's
    rewards do not depend on K or on the models beside it."""
    k, episodes = len(modules), evaluation.episodes
    task = get_task(env["id"])
    stacked = StackedDynamics([m.model for m in modules]).to(device)
    planner = CEMPlanner.for_dynamics(task, stacked.predict_next, evaluation.cem, env["kwargs"], device)
    planner.seed_noise(derive_seed(seed, "population-plan"), blocks=k)
    starts = [derive_seed(seed, "population-episode", e) for _ in range(k) for e in range(episodes)]
    record = collect_episodes(
        env["id"],
        planner,
        k * episodes,
        seed=starts,
        steps=evaluation.episode_steps,
        device=device,
        progress=episode_progress(prefix) if prefix else None,
        **(env["kwargs"] or {}),
    )
    return record.returns.reshape(k, episodes)


def block_rewards(
    modules, evaluation: Evaluation, stack: int, env: dict, seed: int, device: str, prefix: str = ""
) -> np.ndarray:
    """Every model's episode rewards [len(modules), episodes], `stack` models at a time
    (`stacked_rewards`, so every model meets the same episodes and planner samples whatever its block)."""
    out, blocks = [], -(-len(modules) // stack)
    for i in range(0, len(modules), stack):
        where = f"{prefix}block {i // stack + 1}/{blocks}, episode " if prefix else ""
        out.append(stacked_rewards(modules[i : i + stack], evaluation, env, seed, device, where))
    return np.concatenate(out)


def mean_rewards(
    modules, evaluation: Evaluation, stack: int, env: dict, seed: int, device: str, prefix: str = ""
) -> np.ndarray:
    """Each model's mean real reward [len(modules)] (`block_rewards`)."""
    return block_rewards(modules, evaluation, stack, env, seed, device, prefix).mean(axis=1)
