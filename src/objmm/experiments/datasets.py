"""`objmm data ...`: make the paper's datasets (Table 2) and save them in objmm's dataset format.

    objmm data grid --env.id objmm/PETSCartpole-v0
    objmm data sampled --env.id objmm/PETSHalfCheetah-v0 --size 200000
    objmm data babbling --rollouts 200 --horizon 10
    objmm data expert --config configs/data/cartpole_expert.yaml
    objmm data on-policy --run runs/pets_cartpole

Each takes the same `env` section as the other commands (`env.id`, `env.kwargs`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from objmm.atomic import remove_folder, write_json
from objmm.data import TransitionDataset, babbling_dataset, grid_dataset, sampled_dataset
from objmm.envs import EnvSpec, get_task
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.framework.results import same_settings
from objmm.planning import CEMConfig, CEMPlanner, SimulatorDynamics, collect_episodes
from objmm.progress import episode_progress
from objmm.seeding import derive_seed, seed_of


def table1_cem(task) -> CEMConfig:
    """Table 1's planner for a task."""
    horizon, population, elites, iterations = task.table1_cem
    return CEMConfig(horizon=horizon, population=population, elites=elites, iterations=iterations)


def default_out(env_id: str, kind: str) -> str:
    short = env_id.split("/")[-1].removeprefix("PETS").split("-")[0].lower()
    return f"data/{short}_{kind}"


def _save(dataset: TransitionDataset, out: str | None, kind: str) -> Path:
    path = dataset.save(out or default_out(dataset.env_id, kind))
    print(f"{kind}: {len(dataset)} transitions of {dataset.env_id} -> {path}")
    return path


def grid(env: EnvSpec = EnvSpec(), points: int = 7, out: str | None = None) -> Path:
    """Every state entry and action sliced evenly into `points` values (cartpole: 7^5 = 16807)."""
    require_at_least_one("", points=points)
    return _save(grid_dataset(env.id, points, **env.kwargs), out, "grid")


def sampled(
    env: EnvSpec = EnvSpec("objmm/PETSHalfCheetah-v0"), size: int = 200000, seed: int = 0, out: str | None = None
) -> Path:
    """`size` state-action pairs drawn uniformly from the env's box, each stepped once."""
    require_at_least_one("", size=size)
    return _save(sampled_dataset(env.id, size, seed, **env.kwargs), out, "sampled")


def babbling(
    env: EnvSpec = EnvSpec(), rollouts: int = 200, horizon: int = 10, seed: int = 0, out: str | None = None
) -> Path:
    """Random-action rollouts from the noise-free initial state (appendix A)."""
    require_at_least_one("", rollouts=rollouts, horizon=horizon)
    return _save(babbling_dataset(env.id, rollouts, horizon, seed, **env.kwargs), out, "babbling")


def expert(
    env: EnvSpec = EnvSpec(),
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
    task = get_task(env.id)
    size = size or task.expert_size or 10 * task.episode_steps
    require_at_least_one("", size=size, episodes_per_batch=episodes_per_batch, max_episodes=max_episodes)
    min_reward = task.expert_reward if min_reward is None else min_reward
    simulator = SimulatorDynamics(env.id, **env.kwargs)
    planner = CEMPlanner.for_dynamics(task, simulator, cem or table1_cem(task), env.kwargs)
    out_path = Path(out or default_out(env.id, "expert"))
    # the episodes kept so far, saved after every batch, so that a killed run goes on where it
    # stopped (each batch's seed follows from the episodes tried, so the resumed run is the same)
    partial = out_path.with_name(out_path.name + ".partial")
    settings = {
        "env": env.id,
        "env_kwargs": env.kwargs,
        "size": size,
        "min_reward": min_reward,
        "cem": vars(planner.config),
        "seed": seed,
        "episodes_per_batch": episodes_per_batch,
    }
    kept, rewards, tried = None, [], 0
    if (partial / "progress.json").exists():
        progress = json.loads((partial / "progress.json").read_text())
        if not same_settings(progress["settings"], json.loads(json.dumps(settings))):
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
        planner.seed_noise(derive_seed(seed, "planner", tried))  # each batch's own: a resumed run is the same
        record = collect_episodes(
            env.id,
            planner,
            episodes_per_batch,
            seed=derive_seed(seed, "episode", tried),
            progress=episode_progress(f"expert: episodes {tried + 1}-{tried + episodes_per_batch}: "),
            **env.kwargs,
        )
        tried += episodes_per_batch
        for i, total in enumerate(record.returns):
            rewards.append(float(total))
            if total > min_reward:
                one = TransitionDataset.from_trajectories(
                    env.id, record.obs[i : i + 1], record.actions[i : i + 1], record.next_obs[i : i + 1]
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
    remove_folder(partial)  # a kill while deleting leaves no half of it for the same command to resume from
    return path


def on_policy(
    run: str,
    trials: int | None = None,
    min_reward: float | None = None,
    part: Literal["train", "held_out"] = "train",
    out: str | None = None,
) -> Path:
    """The 0.9 training split of a PETS run's dataset after `trials` trials (Table 2), or its held-out rest.

    The whole dataset up to the end of trial `trials`' episode, the initial rollout included (cut at
    an episode boundary), split as the run itself split it for training: inside every episode the
    same 10% of the rows are held out (`TransitionDataset.split(by="rows")` with the run's seed).
    Table 2: cartpole 20 trials, 0.9 x 21 x 200 = 3780 rows; half cheetah 100, 0.9 x 101 x 1000 = 90900.

    Args:
        run: a PETS run directory that solved the task (a trial within the first `trials` beat the bar).
        trials: how many trials' episodes to take (default: 20 cartpole, 100 half cheetah).
        min_reward: the bar (default: the expert bar, cartpole 179, half cheetah 10000).
        part: `train` (Table 2's set: the rows the run trained on) or `held_out` (the other 10%, rows
            no model of the run trained on: a validation set for the run's own models).
    """
    from objmm.experiments.pets_files import load_config, load_state

    state, config = load_state(Path(run)), load_config(Path(run))
    dataset = TransitionDataset.load(Path(run) / "dataset").head(state["dataset_rows"])
    env = dataset.env_id
    task = get_task(env)
    trials = trials or task.on_policy_trials or state["finished_trials"]
    require_at_least_one("", trials=trials)
    if trials > state["finished_trials"]:
        raise ObjmmError(
            f"the pets run {run} has {state['finished_trials']} trials, fewer than --trials {trials}; "
            f"go on with: objmm pets --resume {run} --pets.trials {trials}"
        )
    history = state["history"][:trials]
    bar = task.expert_reward if min_reward is None else min_reward
    best = max(h["reward/mean"] for h in history)
    if best < bar:
        raise ObjmmError(f"the pets run {run} never solved {env} in {trials} trials: best reward {best:.1f} < {bar}")
    whole = dataset.head(history[-1]["rows"])
    seed = seed_of(config["seed_everything"])
    fraction = config["data"]["train_fraction"]
    train, held_out = whole.split(fraction, seed=seed, by="rows")
    rows = train if part == "train" else held_out
    rows.metadata = {
        "env_id": env,
        "source": "on-policy",
        "run": str(run),
        "trials": trials,
        "episodes": whole.episodes,
        "best_reward": best,
        "split": f"the run's {fraction} training split (seed {seed}, by rows)"
        if part == "train"
        else f"the {1 - fraction:.2g} the run held out of its {fraction} training split (seed {seed}, by rows)",
    }
    return _save(rows, out, "on-policy" if part == "train" else "on-policy_held-out")


COMMANDS = {"grid": grid, "sampled": sampled, "babbling": babbling, "expert": expert, "on-policy": on_policy}


def main(argv: list[str]) -> None:
    # jsonargparse builds each command's parser (with --config, --print_config) from its signature
    from jsonargparse import CLI

    CLI(COMMANDS, args=argv, as_positional=False, prog="objmm data", description=__doc__.splitlines()[0])
