"""`objmm data ...`: make the paper's datasets (Table 2) and save them in objmm's dataset format.

objmm data grid --env objmm/PETSCartpole-v0
objmm data sampled --env objmm/PETSHalfCheetah-v0 --size 200000
objmm data babbling --env objmm/PETSCartpole-v0 --rollouts 200 --horizon 10
objmm data expert --env objmm/PETSCartpole-v0            # or --config configs/data/cartpole_expert.yaml
objmm data on-policy --run runs/pets_cartpole
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from objmm.atomic import write_json
from objmm.data import TransitionDataset, babbling_dataset, grid_dataset, sampled_dataset
from objmm.envs import get_task
from objmm.errors import ObjmmError
from objmm.planning import CEMConfig, CEMPlanner, ModelEnv, SimulatorDynamics, collect_episodes

#: Table 2's sizes and the paper's expert bar (§4), per env
EXPERT_SIZE = {"objmm/PETSCartpole-v0": 2400, "objmm/PETSHalfCheetah-v0": 3000}
ON_POLICY_SIZE = {"objmm/PETSCartpole-v0": 3780, "objmm/PETSHalfCheetah-v0": 90900}
SOLVED_REWARD = {"objmm/PETSCartpole-v0": 179.0, "objmm/PETSHalfCheetah-v0": 10000.0}
TABLE1_CEM = {
    "objmm/PETSCartpole-v0": CEMConfig(horizon=25, population=400, elites=40, iterations=5),
    "objmm/PETSHalfCheetah-v0": CEMConfig(horizon=30, population=500, elites=50, iterations=5),
}


def default_out(env_id: str, kind: str) -> str:
    short = env_id.split("/")[-1].removeprefix("PETS").split("-")[0].lower()
    return f"data/{short}_{kind}"


def _save(dataset: TransitionDataset, out: str | None, kind: str) -> Path:
    path = dataset.save(out or default_out(dataset.env_id, kind))
    print(f"{kind}: {len(dataset)} transitions of {dataset.env_id} -> {path}")
    return path


def grid(env: str = "objmm/PETSCartpole-v0", points: int = 7, out: str | None = None) -> Path:
    """Every state entry and action sliced evenly into `points` values (cartpole: 7^5 = 16807)."""
    get_task(env)
    return _save(grid_dataset(env, points), out, "grid")


def sampled(env: str = "objmm/PETSHalfCheetah-v0", size: int = 200000, seed: int = 0, out: str | None = None) -> Path:
    """`size` state-action pairs drawn uniformly from the env's box, each stepped once."""
    get_task(env)
    return _save(sampled_dataset(env, size, seed), out, "sampled")


def babbling(
    env: str = "objmm/PETSCartpole-v0", rollouts: int = 200, horizon: int = 10, seed: int = 0, out: str | None = None
) -> Path:
    """Random-action rollouts from the noise-free initial state (appendix A)."""
    get_task(env)
    return _save(babbling_dataset(env, rollouts, horizon, seed), out, "babbling")


def expert(
    env: str = "objmm/PETSCartpole-v0",
    size: int | None = None,
    min_reward: float | None = None,
    cem: CEMConfig | None = None,
    episodes_per_batch: int = 4,
    max_episodes: int = 40,
    seed: int = 0,
    out: str | None = None,
) -> Path:
    """MPC episodes with the true simulator as the planner's model, kept where reward > min_reward.

    Args:
        size: transitions to keep (Table 2: cartpole 2400, half cheetah 3000).
        min_reward: the expert bar (cartpole 179, half cheetah 10000).
        cem: planner settings (Table 1 by default).
        episodes_per_batch: episodes planned side by side (one batched planner call per step).
        max_episodes: give up (with an error) after this many episodes.

    The episodes kept so far are saved to `<out>.partial` after every batch; run the same command
    again to go on from there after a kill.
    """
    task = get_task(env)
    size = size or EXPERT_SIZE.get(env, 10 * task.episode_steps)
    min_reward = SOLVED_REWARD.get(env, -np.inf) if min_reward is None else min_reward
    planner = CEMPlanner(ModelEnv(task, SimulatorDynamics(env), task.reward()), cem or TABLE1_CEM.get(env))
    out_path = Path(out or default_out(env, "expert"))
    # the episodes kept so far, saved after every batch, so that a killed run goes on where it
    # stopped (each batch's seed follows from the episodes tried, so the resumed run is the same)
    partial = out_path.with_name(out_path.name + ".partial")
    settings = {
        "env": env,
        "size": size,
        "min_reward": min_reward,
        "cem": vars(planner.config),
        "seed": seed,
        "episodes_per_batch": episodes_per_batch,
    }
    kept, rewards, tried = None, [], 0
    if (partial / "progress.json").exists():
        progress = json.loads((partial / "progress.json").read_text())
        if progress["settings"] != json.loads(json.dumps(settings)):
            raise ObjmmError(f"{partial} holds an unfinished expert run with other settings; delete it or use those")
        rewards, tried = progress["rewards"], progress["episodes_tried"]
        if progress["kept_rows"]:  # the dataset is saved first, so it may hold a batch progress.json lacks
            kept = TransitionDataset.load(partial / "dataset").head(progress["kept_rows"])
        print(f"expert: resuming {partial}: {tried} episodes tried, {len(kept or [])} transitions kept", flush=True)
    start = time.perf_counter()
    while kept is None or len(kept) < size:
        if tried >= max_episodes:
            above = sum(r > min_reward for r in rewards)
            raise ObjmmError(
                f"only {above} of {tried} expert episodes beat reward {min_reward} "
                f"(best {max(rewards, default=float('nan')):.1f}), {len(kept or [])} of {size} transitions, "
                f"and max_episodes is {max_episodes}; raise max_episodes (the same command goes on) or cem.population"
            )
        record = collect_episodes(env, planner, episodes_per_batch, seed=seed * 10_007 + tried)
        tried += episodes_per_batch
        for i, total in enumerate(record.returns):
            rewards.append(float(total))
            if total > min_reward:
                one = TransitionDataset.from_trajectories(
                    env, record.obs[i : i + 1], record.actions[i : i + 1], record.next_obs[i : i + 1]
                )
                kept = one if kept is None else kept.concat(one)
        if kept is not None:
            kept.save(partial / "dataset")
        progress = {"settings": settings, "rewards": rewards, "episodes_tried": tried, "kept_rows": len(kept or [])}
        write_json(partial / "progress.json", progress)
        print(
            f"expert: {tried} episodes, {sum(r > min_reward for r in rewards)} above {min_reward}, "
            f"{len(kept or [])}/{size} transitions, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    dataset = kept.head(size)
    dataset.metadata.update(
        source="expert",
        min_reward=min_reward,
        episode_rewards=[r for r in rewards if r > min_reward][: dataset.episodes],  # of the episodes kept here
        episodes_tried=tried,
        cem=vars(planner.config),
        seed=seed,
    )
    path = _save(dataset, str(out_path), "expert")
    shutil.rmtree(partial)
    return path


def on_policy(run: str, size: int | None = None, min_reward: float | None = None, out: str | None = None) -> Path:
    """The last `size` transitions collected by a PETS run that solved the task (Table 2: 3780 / 90900)."""
    from objmm.pets import check_run_dir

    state = check_run_dir(Path(run))
    dataset = TransitionDataset.load(Path(run) / "dataset").head(state["dataset_rows"])
    env = dataset.env_id
    bar = SOLVED_REWARD.get(env, -np.inf) if min_reward is None else min_reward
    best = max((h["reward"] for h in state["history"]), default=float("-inf"))
    if best < bar:
        raise ObjmmError(f"the pets run {run} never solved {env}: best reward {best:.1f} < {bar}")
    size = size or ON_POLICY_SIZE.get(env, len(dataset))
    collected = len(dataset) - state["initial_rows"]
    if size > collected:
        trials = math.ceil(size * state["finished_trials"] / collected)
        raise ObjmmError(
            f"the pets run {run} collected {collected} on-policy transitions, fewer than --size {size}; "
            f"go on with: objmm pets --resume {run} --trials {trials}"
        )
    rows = TransitionDataset(dataset.data[len(dataset) - size :], {"env_id": env})
    rows.metadata.update(source="on-policy", run=str(run), best_reward=best, trials=state["finished_trials"])
    return _save(rows, out, "on-policy")


COMMANDS = {"grid": grid, "sampled": sampled, "babbling": babbling, "expert": expert, "on-policy": on_policy}


def data_main(argv: list[str]) -> None:
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="objmm data", description=__doc__.splitlines()[0])
    subcommands = parser.add_subcommands(dest="command")
    for name, function in COMMANDS.items():
        sub = ArgumentParser(description=function.__doc__.splitlines()[0])
        sub.add_argument("--config", action=ActionConfigFile)
        sub.add_function_arguments(function)
        subcommands.add_subcommand(name, sub, help=function.__doc__.splitlines()[0])
    cfg = parser.parse_args(argv)
    name = cfg.command
    init = getattr(parser.instantiate_classes(cfg), name)
    kwargs = {k: v for k, v in vars(init).items() if k != "config"}
    torch.manual_seed(kwargs.get("seed", 0))
    COMMANDS[name](**kwargs)
