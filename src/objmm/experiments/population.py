"""`objmm population`: every saved model of a population in LL-reward space (the paper's Fig. 3, App. C).

    objmm population --config configs/population/cartpole.yaml
    objmm population --config configs/population/cartpole.yaml --population.ray.address auto

For every saved model (the per-trial models of PETS runs, e.g. an `objmm pets-sweep` directory) it
measures (a) the full NLL, the paper's LL, MSE and Appendix C's medians over batches on each named
dataset, with random-row and with trajectory batches, and (b) the real reward of `episodes` CEM-MPC
episodes planned with the model. Models go K at a time (`stack`) through one batched network
(`models/stacked.py`): one planning step of the stack is one pass, and each model plans exactly as
it would alone (its episodes' starts and its planner's samples do not depend on the stack).

`population.json` in `out` holds one row per model, rewritten atomically after every block of K
models: a killed evaluation started again with the same settings goes on with the models not yet
in it, none lost or evaluated twice. At the end: `correlations.json` (Pearson's and Spearman's rho
of LL against reward per dataset and estimator, with two bootstrap 95% intervals: over models, and
clustered by PETS run, which is the one to trust: a run's models share its data and are not
independent draws; the paper's Fig. 3 rho beside each dataset it names) and `fig3.png` (with total
least squares trend lines, as the paper draws them), both also logged to W&B with the table. With
`ray.address` set, blocks go to a Ray cluster's workers and their rows land in the same table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from objmm import atomic
from objmm.data import load_source
from objmm.envs import get_task
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.framework import ExperimentRun, RaySettings, ResultsFile, run_experiment, run_pieces
from objmm.experiments.pets_files import CONFIG_FILE, load_config, load_state
from objmm.experiments.population_analysis import ESTIMATORS, describe_summary, population_figure, summarise
from objmm.experiments.rewards import Evaluation, stacked_rewards
from objmm.experiments.sweeps import model_type
from objmm.planning import CEMConfig
from objmm.plots import save_figure_atomically
from objmm.seeding import derive_seed
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import check_env, find_models, load_model

TABLE = "population.json"
CORRELATIONS = "correlations.json"
FIGURE = "fig3.png"
#: the metrics of each dataset and batch mode that go into the table
TABLE_METRICS = ("nll", "paper_ll", "mse", "nll_batch_median", "paper_ll_batch_median")


@dataclass
class PopulationSettings:
    """The `population:` section.

    Args:
        models: saved models: files (`trial_NN.pt`) and folders searched for them (a PETS run, a
            pets-sweep directory, a models folder).
        datasets: name -> dataset source (a saved dataset, `grid`, `sampled:N`, ...), e.g. the paper's
            expert, on-policy and grid sets.
        batches: batch modes of the LL estimators: `random` rows of `batch_size`, `large` random
            batches of `large_batch_size` rows, one `trajectory` a batch (Appendix C's three).
        batch_size: rows per random batch (64, PETS's default).
        large_batch_size: rows per `large` batch (Appendix C's half cheetah "large batches", of a size
            the paper does not give: 1000, a trajectory's length, so that trajectory batches differ
            from them only in where their rows come from).
        episodes: real episodes per model (the paper: 10), besides its run's own with `run_episode`.
        run_episode: also count the episode each PETS trial planned with its own model (its reward in
            the run's state.json) as one of the model's episodes: one free episode a model (the run's
            planner and episode length must be the population's; checked). 0 `episodes` then
            measures the LLs only, which is what makes a half cheetah population affordable on a CPU.
        stack: models per batched network (K): as many as fill the device.
        episode_steps: steps per episode (default: the task's).
        cem: the planner (Table 1: cartpole 25/400/40/5, half cheetah 30/500/50/5).
        out: where the table, the correlations and the figure go.
        bootstrap: resamples of the bootstrap intervals.
        solved_reward: also give rho among the models whose mean reward is at least this (those that
            control the task, e.g. 170 on the cartpole): the mismatch beyond the first trials, where
            the failed early models no longer set the line.
        ray: Ray, for a population spread over a cluster.
    """

    models: list[str] = field(default_factory=list)
    datasets: dict[str, str] = field(default_factory=dict)
    batches: list[Literal["random", "large", "trajectory"]] = field(default_factory=lambda: ["random", "trajectory"])
    batch_size: int = 64
    large_batch_size: int = 1000
    episodes: int = 10
    run_episode: bool = False
    stack: int = 10
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=CEMConfig)
    out: str = "runs/population"
    bootstrap: int = 2000
    solved_reward: float | None = None
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        require_at_least_one(
            "population",
            stack=self.stack,
            episodes=self.episodes or (None if self.run_episode else 0),
            batch_size=self.batch_size,
            large_batch_size=self.large_batch_size,
            episode_steps=self.episode_steps,
            bootstrap=self.bootstrap,
        )
        if not self.models:
            raise ObjmmError("population.models is empty; name saved models or the folders that hold them")
        if not self.datasets:
            raise ObjmmError("population.datasets is empty; name at least one dataset (name: source)")
        if not self.batches:
            raise ObjmmError("population.batches is empty; use random, large, trajectory or several")


# ----------------------------------------------------------------------------- the models
def run_reward(run: Path, trial: int | None, s: PopulationSettings, env: dict) -> float:
    """The reward of the episode a PETS run's trial planned with its own model (`run_episode`),
    after checking that the run planned as the population does; a one-line error where it did not."""
    if trial is None or not (run / CONFIG_FILE).is_file():
        raise ObjmmError(f"population.run_episode: {run} is not a PETS run, so its models have no episode of their own")
    config = load_config(run)
    planned = CEMConfig(**config["pets"]["cem"])
    steps = config["pets"].get("episode_steps") or get_task(env["id"]).episode_steps
    if planned != s.cem or steps != (s.episode_steps or get_task(env["id"]).episode_steps):
        raise ObjmmError(
            f"population.run_episode: {run} planned {steps}-step episodes with {planned}, the population "
            f"{s.episode_steps or 'the task'}'s steps with {s.cem}; set population.cem and episode_steps to the run's"
        )
    history = load_state(run)["history"]
    if trial >= len(history):
        raise ObjmmError(f"population.run_episode: {run}'s state.json has no trial {trial + 1}")
    return float(history[trial]["reward/mean"])


def describe_model(path: Path, env: dict) -> dict:
    """What the table says of a model before it is evaluated; a one-line error for a model of another env."""
    module, info = load_model(path)
    check_env(module, path, env)
    hparams = module.hparams
    run = path.parent.parent if path.parent.name == "models" else path.parent
    seed = load_config(run).get("seed_everything") if (run / CONFIG_FILE).is_file() else None
    architecture = {k: hparams[k] for k in ("members", "width", "depth", "probabilistic")}
    return {
        "model": str(path),
        "run": str(run),
        "trial": info.get("trial"),
        "type": model_type(hparams),
        "dataset_rows": info.get("dataset_rows"),
        "run_seed": seed,
        "architecture": json.dumps(architecture, sort_keys=True),
    }


def blocks_of(described: list[dict], stack: int) -> list[list[dict]]:
    """Models of one architecture, `stack` at a time (models of different architectures do not stack)."""
    by_architecture: dict[str, list[dict]] = {}
    for row in described:
        by_architecture.setdefault(row["architecture"], []).append(row)
    return [rows[i : i + stack] for rows in by_architecture.values() for i in range(0, len(rows), stack)]


# ----------------------------------------------------------------------------- one block of K models
@cache
def _dataset(source: str, env_id: str, seed: int, env_kwargs: str):
    return load_source(source, env_id, seed=seed, **json.loads(env_kwargs))


def evaluate_block(
    rows: list[dict], s: PopulationSettings, env: dict, seed: int, device: str, progress_prefix: str = ""
) -> list[dict]:
    """The table rows of one block of models: LL metrics on every dataset, then the real reward of
    `episodes` episodes per model, all K models planned in one batched network. Plain data in and
    out, so that a Ray worker can run it."""
    modules = [load_model(Path(row["model"]), device)[0] for row in rows]
    out = [dict(row) for row in rows]
    for name, source in s.datasets.items():
        data = _dataset(source, env["id"], seed, json.dumps(env["kwargs"] or {}, sort_keys=True))
        for mode in sorted(s.batches, key=lambda m: m == "trajectory"):  # trajectory last: it may copy random
            rows_per_batch = s.large_batch_size if mode == "large" else s.batch_size
            if mode == "trajectory" and "random" in s.batches and not data.has_trajectories():
                # one-step data (grid, sampled) has no trajectories: its "trajectory" batches are the
                # random ones (`TransitionDataset.batches`), so are its numbers; copied, not measured twice
                for row in out:
                    row.update({f"{name}/trajectory/{k}": row[f"{name}/random/{k}"] for k in TABLE_METRICS
                                if f"{name}/random/{k}" in row})  # fmt: skip
                continue
            for row, module in zip(out, modules, strict=True):
                metrics = dataset_metrics(
                    module.model,
                    data,
                    module.objective,
                    "random" if mode == "large" else mode,
                    rows_per_batch,
                    derive_seed(seed, "batches"),
                )
                row.update({f"{name}/{mode}/{k}": metrics[k] for k in TABLE_METRICS if k in metrics})
    rewards = np.zeros((len(rows), 0))
    if s.episodes:
        rewards = stacked_rewards(modules, Evaluation.of(s), env, seed, device, progress_prefix)
    if s.run_episode:  # the run's own episode first, then the population's
        rewards = np.concatenate([np.array([[row["run_reward"]] for row in rows]), rewards], axis=1)
    for row, returns in zip(out, rewards, strict=True):
        row.update(
            {"reward/mean": float(returns.mean()), "reward/std": float(returns.std()), "rewards": returns.tolist()}
        )
    return out


# ----------------------------------------------------------------------------- the command
class PopulationRun(ExperimentRun):
    section, settings_class, resume_file = "population", PopulationSettings, TABLE
    settings: PopulationSettings

    def plain_settings(self) -> dict:
        """What makes two evaluations the same (the table of one can go on as the other)."""
        s = self.settings
        return {
            "env": self.env,
            "seed": self.seed,
            "datasets": dict(s.datasets),
            "batches": list(s.batches),
            "batch_size": s.batch_size,
            **({"large_batch_size": s.large_batch_size} if "large" in s.batches else {}),
            "episodes": s.episodes,
            **({"run_episode": True} if s.run_episode else {}),
            "episode_steps": s.episode_steps,
            "cem": asdict(s.cem),
        }

    def prepare(self) -> None:
        models = find_models(self.settings.models, "population.models")
        self.described = [describe_model(path, self.env) for path in models]
        if self.settings.run_episode:
            for row in self.described:
                row["run_reward"] = run_reward(Path(row["run"]), row["trial"], self.settings, self.env)
        for source in self.settings.datasets.values():  # a wrong dataset fails now, before any row is written
            _dataset(source, self.env["id"], self.seed, json.dumps(self.env["kwargs"], sort_keys=True))
        self.table = ResultsFile(self.out / TABLE, self.plain_settings(), "rows", "model", "population.out")

    def run(self) -> list[dict]:
        s, table = self.settings, self.table
        todo = [row for row in self.described if row["model"] not in table]
        blocks = blocks_of(todo, s.stack)
        besides = " besides its run's own" if s.run_episode else ""
        print(
            f"population: {len(self.described)} models ({len(table)} already in {table.path}), "
            f"{len(blocks)} blocks of up to {s.stack}, {s.episodes} episodes each{besides}, on {self.device}",
            flush=True,
        )
        start, total = time.perf_counter(), len(self.described)

        def land(args: tuple, rows: list[dict]) -> None:
            table.add(*rows)  # keyed by model: a block that lands twice is written once
            self.report(table, total, args[0], start)

        arguments = [
            (block, s, self.env, self.seed, self.device, f"  block {i + 1}/{len(blocks)}: episode ")
            for i, block in enumerate(blocks)
        ]
        run_pieces(evaluate_block, arguments, land, s.ray)
        return self.finish(table)

    def report(self, table: ResultsFile, total: int, block: list[dict], start: float) -> None:
        done = [table.pieces[row["model"]] for row in block]
        mean = float(np.mean([row["reward/mean"] for row in done]))
        print(
            f"population: {len(table)}/{total} models, last block's mean reward {mean:.1f}, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
        if self.logger:
            self.logger.log_metrics({"population/models": len(table), "population/block_reward": mean})

    def finish(self, table: ResultsFile) -> list[dict]:
        s = self.settings
        rows = list(table.pieces.values())
        paper = dict(get_task(self.env["id"]).paper_fig3_rho)
        datasets, batches = list(s.datasets), list(s.batches)
        summary = summarise(rows, datasets, batches, s.bootstrap, self.seed, paper)
        if s.solved_reward is not None:
            solved = [row for row in rows if row["reward/mean"] >= s.solved_reward]
            summary["solved"] = {
                "min_reward": s.solved_reward,
                **summarise(solved, datasets, batches, s.bootstrap, self.seed),
            }
        atomic.write_json(self.out / CORRELATIONS, summary)
        found = summary["correlations"]
        estimators = [e for e in ESTIMATORS if e[1] in s.batches]
        title = f"{len(rows)} models, {self.env['id']}"
        figure = population_figure(rows, datasets, estimators, found, title)
        figure = save_figure_atomically(figure, self.out / FIGURE)
        for line in describe_summary(summary):
            print(f"  {line}")
        if "solved" in summary:
            print(f"  the {summary['solved']['models']} models at reward {s.solved_reward:g} or more:")
            for line in describe_summary(summary["solved"]):
                print(f"    {line}")
        self.publish(
            f"{len(rows)} models",
            [table.path, self.out / CORRELATIONS, figure],
            {"fig3": figure},
            metrics={f"rho/{c['dataset']}/{c['ll']}/{c['method']}": c["rho"] for c in found},
            tables={"table": [{k: v for k, v in row.items() if k != "rewards"} for row in rows]},
        )
        return rows


def main(argv: list[str]) -> None:
    run_experiment("population", __doc__.splitlines()[0], argv, PopulationRun)
