"""`objmm reweight`: does re-weighting the model's loss help? The paper's Fig. 8 (Sec. 5) and App. D.

    objmm reweight --config configs/reweight/cartpole.yaml

For every cell of a grid of training-set sizes S and distance bounds eps: `datasets` sets of S rows,
each drawn at random from a pool of uniform (state, action) tuples (the paper: 25e6) among those
within eps of the expert trajectory (d*, `objmm.data.distance`), each row stepped once in the
simulator. On every set `models` models are trained per objective (`objectives`: e.g. the plain
NLL, the distance re-weighted NLL of Sec. 5 and the reward re-weighted NLL of App. D) for `epochs`
epochs (Table 1: 100 at batch 16, so a small set gets few steps, as in the paper); model i of every
objective starts from the same initial weights. Then every model of the cell runs `episodes` real
MPC episodes, all of them in one batched network, on the same episode starts and planner samples.

The paper's other version: 5 sets x 5 models a cell, 25 episodes ("Mean reward of PETS trials":
MPC episodes planned with the cell's fixed models; PETS's online loop would retrain them on its own
episodes and no longer measure the (S, eps) set). The design is paired: an objective's model and the
baseline's share their set, initial weights and episodes, so their difference is measured per pair,
and its interval comes from a bootstrap that resamples the sets (the clusters) and their pairs
(`objmm.stats.paired_difference`). Each weighted objective's effective sample size (Kish's, over the
rows trained on) says whether its weights vary at all in that cell.

With `references` R > 1 the cell's sets are drawn near R of the expert's trajectories, set d near
trajectory d mod R, and a distance re-weighted objective weighs each set by the trajectory it was
drawn near; the interval then resamples the references (with their sets and pairs), not only the
sets around one reference, whose choice the interval with R = 1 holds fixed.

`reweight.json` in `out` holds each finished cell, rewritten atomically after each one: a killed
run goes on from the cells it has. The pool's d* are kept in `pool_distances.pt` (and
`pool_distances_R.pt` for the reference R > 0). At the end `fig8.png`: one heatmap of mean reward
per objective, and each objective minus the baseline. With `ray.address` set, cells go to a Ray
cluster's workers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from objmm.data import TransitionDataset
from objmm.data.uniform_pool import UniformPool, near_reference_dataset
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.along_expert import expert_trajectory
from objmm.experiments.framework import ExperimentRun, RaySettings, ResultsFile, run_experiment, run_pieces
from objmm.experiments.rewards import Evaluation, stacked_rewards
from objmm.objectives import DistanceWeighted, build_objective
from objmm.planning import CEMConfig
from objmm.plots import plt, save_figure_atomically
from objmm.seeding import derive_seed
from objmm.stats import paired_difference
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.saved_models import module_settings
from objmm.training.trainer import bare_trainer

TABLE = "reweight.json"
DISTANCES = "pool_distances.pt"
FIGURE = "fig8.png"


@dataclass
class ReweightSettings:
    """The `reweight:` section.

    Args:
        expert: an expert dataset; its first trajectory is the reference d* is measured to (its
            first `references`, with several).
        sizes: training-set sizes S (the paper: a log-grid over [10, 2500]).
        bounds: distance bounds eps (the paper: a log-grid over [0.28, 15.66]).
        pool: uniform tuples the sets are drawn from (the paper: 25e6).
        objectives: name -> objective (`class_path`, `init_args`), one model each per cell.
        baseline: the objective the others are compared with (fig8.png's difference panels).
        epochs: training epochs of every model (Table 1: 100; batch size: the `data:` section's).
        train_steps: if set, a fixed number of gradient steps for every S instead of `epochs` (the
            first version of this experiment: 2000).
        datasets: sets drawn per cell (the paper's other version: 5).
        references: expert trajectories the sets are drawn near, set d near trajectory d mod
            `references` (at most `datasets`); above 1 the interval resamples them (the paper: 1).
        models: models per objective and set, each from its own initial weights (the same for every
            objective): the spread between models is most of a cell's noise.
        episodes: real MPC episodes per model (the paper: 100).
        episode_steps: steps per episode (default: the task's).
        cem: the planner (Table 1: cartpole 25/400/40/5).
        out: where the table, the pool's distances and the figure go.
        ray: Ray, for cells spread over a cluster.
    """

    expert: str = ""
    sizes: list[int] = field(default_factory=lambda: [10, 50, 250, 1250])
    bounds: list[float] = field(default_factory=lambda: [0.28, 1.0, 4.0, 15.66])
    pool: int = 25_000_000
    objectives: dict[str, dict] = field(default_factory=lambda: {"nll": {"class_path": "objmm.objectives.GaussianNLL"}})
    baseline: str = "nll"
    epochs: int = 100
    train_steps: int | None = None
    datasets: int = 1
    references: int = 1
    models: int = 1
    episodes: int = 5
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=CEMConfig)
    out: str = "runs/reweight"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        require_at_least_one(
            "reweight",
            pool=self.pool,
            epochs=self.epochs,
            train_steps=self.train_steps,
            datasets=self.datasets,
            references=self.references,
            models=self.models,
            episodes=self.episodes,
            episode_steps=self.episode_steps,
        )
        if not self.expert:
            raise ObjmmError("reweight.expert is empty; name an expert dataset (objmm data expert)")
        if not self.sizes or min(self.sizes) < 2:
            raise ObjmmError(f"reweight.sizes must be training-set sizes of at least 2, got {self.sizes}")
        if not self.bounds or min(self.bounds) <= 0:
            raise ObjmmError(f"reweight.bounds must be positive distances, got {self.bounds}")
        if self.references > self.datasets:
            raise ObjmmError(
                f"reweight.references ({self.references}) must not exceed reweight.datasets ({self.datasets}): "
                "each reference needs a set drawn near it"
            )
        if self.baseline not in self.objectives:
            raise ObjmmError(
                f"reweight.baseline {self.baseline!r} is not one of reweight.objectives ({', '.join(self.objectives)})"
            )
        for name, spec in self.objectives.items():
            if not isinstance(spec, dict) or "class_path" not in spec:
                raise ObjmmError(f"reweight.objectives.{name} needs a class_path (and optional init_args)")


def cell_name(size: int, bound: float) -> str:
    return f"S{size}_eps{bound:g}"


def fit_model(
    hparams: dict, objective: dict, dataset: TransitionDataset, s: ReweightSettings, batch_size: int, seed: int,
    device: str,
) -> DynamicsModule:  # fmt: skip
    """A model trained with `objective` on 0.9 of `dataset`'s rows, for `s.epochs` epochs (or
    `s.train_steps` steps)."""
    module = DynamicsModule(**hparams, objective=build_objective(objective))
    # every objective's model i starts from the same weights
    module.model.reset_parameters(torch.Generator().manual_seed(derive_seed(seed, "model")))
    data = TransitionDataModule(hparams["env_id"], batch_size=batch_size, ensemble_size=hparams["members"], seed=seed)
    data = data.with_dataset(dataset)
    if s.train_steps:
        trainer = bare_trainer(max_epochs=-1, device=device, max_steps=s.train_steps)
    else:
        trainer = bare_trainer(max_epochs=s.epochs, device=device)
    trainer.fit(module, datamodule=data)
    return module.to(device).eval()


def evaluate_cell(
    cell: dict, sets: list[dict], hparams: dict, s: ReweightSettings, batch_size: int, env: dict, seed: int,
    device: str,
) -> dict:  # fmt: skip
    """Train `models` models per objective on each of the cell's sets (model i of every objective from
    the same initial weights and bootstrap) and measure each one's real reward, all in one stack.
    Plain data in and out, so that a Ray worker can run it."""
    datasets = [
        TransitionDataset.from_tensors(env["id"], **{k: torch.as_tensor(v) for k, v in rows.items()}) for rows in sets
    ]
    t0 = time.perf_counter()
    budget = f"{s.train_steps} steps" if s.train_steps else f"{s.epochs} epochs"
    print(
        f"  cell {cell['name']}: training {len(datasets)} sets x {s.models} x {len(s.objectives)} models "
        f"({', '.join(s.objectives)}) for {budget} on {len(datasets[0])} rows each",
        flush=True,
    )
    keys = [(d, i) for d in range(len(datasets)) for i in range(s.models)]  # one pair of models per key
    references = [d % s.references for d, _ in keys]  # the trajectory each key's set was drawn near
    modules = {
        name: [
            fit_model(
                hparams,
                near_reference(spec, d % s.references),
                datasets[d],
                s,
                batch_size,
                derive_seed(seed, "cell", cell["size"], cell["bound"], d, i),
                device,
            )  # fmt: skip
            for d, i in keys
        ]
        for name, spec in s.objectives.items()
    }
    trained = time.perf_counter() - t0
    prefix = f"  cell {cell['name']}: episode "
    stack = [m for name in s.objectives for m in modules[name]]
    returns = stacked_rewards(stack, Evaluation.of(s), env, derive_seed(seed, "reweight-episodes"), device, prefix)
    out = dict(cell, train_seconds=trained, seconds=time.perf_counter() - t0, pairs=len(keys))
    n = len(keys)
    for j, name in enumerate(s.objectives):
        r = returns[j * n : (j + 1) * n]  # [pairs, episodes]
        effective = [getattr(m.objective, "effective_fraction", None) for m in modules[name]]
        out[name] = {
            "reward/mean": float(r.mean()),
            "reward/std": float(r.std()),
            "model_means": r.mean(axis=1).tolist(),
            "rewards": r.tolist(),
            "dataset": [d for d, _ in keys],
            "reference": references,
            "effective_fraction": None if effective[0] is None else float(np.mean(effective)),
        }
    baseline = np.array(out[s.baseline]["model_means"])
    # the resampled unit: the sets (each with its pairs) around one reference, or the references
    # (each with its sets and pairs) where there are several
    clusters = references if s.references > 1 else [d for d, _ in keys]
    for name in s.objectives:
        if name != s.baseline:
            diff = paired_difference(out[name]["model_means"], baseline, clusters, seed=seed)
            out[name]["minus_baseline"] = asdict(diff)
    return out


def near_reference(spec: dict, reference: int) -> dict:
    """An objective's spec for a set drawn near the expert's trajectory `reference`: a distance
    re-weighted objective with an expert weighs by that trajectory; any other objective is unchanged."""
    if reference == 0:
        return spec
    objective = build_objective(spec)
    if not (isinstance(objective, DistanceWeighted) and objective.expert is not None):
        return spec
    return {**spec, "init_args": {**spec.get("init_args", {}), "first_trajectory": reference}}


class ReweightRun(ExperimentRun):
    section, settings_class, resume_file = "reweight", ReweightSettings, TABLE
    settings: ReweightSettings

    def __init__(self, cli):
        super().__init__(cli)
        self.batch_size = cli.datamodule.batch_size
        self.hparams = module_settings(cli.model)

    def plain_settings(self) -> dict:
        s = self.settings
        return {
            "env": self.env,
            "seed": self.seed,
            "model": self.hparams,
            "batch_size": self.batch_size,
            "expert": s.expert,
            "pool": s.pool,
            "objectives": s.objectives,
            "epochs": s.epochs,
            "train_steps": s.train_steps,
            "datasets": s.datasets,
            "references": s.references,
            "models": s.models,
            "episodes": s.episodes,
            "episode_steps": s.episode_steps,
            "cem": asdict(s.cem),
        }

    def prepare(self) -> None:
        for name, spec in self.settings.objectives.items():  # a bad objective (no expert, wrong env) fails now
            try:
                objective = DynamicsModule(**self.hparams, objective=build_objective(spec)).objective
            except TypeError as error:
                raise ObjmmError(f"reweight.objectives.{name}: {error}") from None
            if isinstance(objective, DistanceWeighted) and objective.expert is None:
                raise ObjmmError(
                    f"reweight.objectives.{name}: DistanceWeighted needs an expert here (the cells' sets are "
                    "one-step rows, with no episodes to re-weight online by)"
                )
            if isinstance(objective, DistanceWeighted) and self.settings.references > 1:
                if Path(objective.expert).resolve() != Path(self.settings.expert).resolve():
                    raise ObjmmError(
                        f"reweight.objectives.{name}: with reweight.references > 1 its expert must be "
                        f"reweight.expert ({self.settings.expert}): each set is weighted by the trajectory it was "
                        "drawn near"
                    )
        self.trajectories = [
            expert_trajectory(self.settings.expert, self.env["id"], "reweight.expert", index=r)
            for r in range(self.settings.references)
        ]
        self.table = ResultsFile(self.out / TABLE, self.plain_settings(), "cells", "name", "reweight.out", by_key=True)

    def run(self) -> dict:
        s, table = self.settings, self.table
        pool = UniformPool(self.env["id"], s.pool, seed=derive_seed(self.seed, "pool"))
        distances = []  # d* of the pool to each reference, kept (the first as before references existed)
        for r, trajectory in enumerate(self.trajectories):
            reference = torch.cat([trajectory.data["obs"], trajectory.data["action"]], dim=-1)
            path = self.out / (DISTANCES if r == 0 else f"pool_distances_{r}.pt")
            key = {"expert": s.expert, **({"trajectory": r} if r else {})}
            distances.append(pool.cached_distances(path, reference, key, self.device))
        cells = [
            {"name": cell_name(size, bound), "size": size, "bound": bound}
            for bound in s.bounds
            for size in s.sizes
            if cell_name(size, bound) not in table
        ]
        print(
            f"reweight: {len(s.sizes) * len(s.bounds)} cells ({len(table)} already in {table.path}), "
            f"{len(s.objectives)} objectives ({', '.join(s.objectives)}), {s.episodes} episodes per model, "
            f"on {self.device}",
            flush=True,
        )
        start = time.perf_counter()

        def land(args: tuple, result: dict) -> None:
            table.add(result)
            rewards = ", ".join(
                f"{n} {result[n]['reward/mean']:.1f}{describe_difference(result[n])}" for n in s.objectives
            )
            print(
                f"reweight: cell {result['name']} ({result['rows']} rows, {len(table)}/"
                f"{len(s.sizes) * len(s.bounds)} done): {rewards}; {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            if self.logger:
                metrics = {f"{result['name']}/{n}": result[n]["reward/mean"] for n in s.objectives}
                for n in s.objectives:
                    for key in ("mean", "low", "high"):
                        if "minus_baseline" in result[n]:
                            metrics[f"{result['name']}/{n}_minus_{s.baseline}/{key}"] = result[n]["minus_baseline"][key]
                self.logger.log_metrics(metrics)

        arguments = []
        for cell in cells:
            sets = [
                near_reference_dataset(
                    pool,
                    distances[d % s.references],
                    cell["size"],
                    cell["bound"],
                    seed=derive_seed(self.seed, "set", d) if d else self.seed,
                    **self.env["kwargs"],
                )  # fmt: skip
                for d in range(s.datasets)
            ]
            cell = {**cell, "rows": len(sets[0]), "pool_within_bound": sets[0].metadata["pool_rows_within_bound"]}
            rows = [{k: dataset.data[k] for k in ("obs", "action", "next_obs")} for dataset in sets]
            arguments.append((cell, rows, self.hparams, s, self.batch_size, self.env, self.seed, self.device))
        run_pieces(evaluate_cell, arguments, land, s.ray)
        return self.finish(table)

    def finish(self, table: ResultsFile) -> dict:
        s = self.settings

        def mean_reward(size: int, bound: float, name: str) -> float:  # NaN where a cell is missing
            return table.pieces.get(cell_name(size, bound), {}).get(name, {}).get("reward/mean", np.nan)

        def excludes_zero(size: int, bound: float, name: str) -> bool:  # the paired interval excludes 0
            d = table.pieces.get(cell_name(size, bound), {}).get(name, {}).get("minus_baseline")
            return bool(d) and (d["low"] > 0 or d["high"] < 0)

        rewards = {n: np.array([[mean_reward(S, e, n) for S in s.sizes] for e in s.bounds]) for n in s.objectives}
        resolved = {n: np.array([[excludes_zero(S, e, n) for S in s.sizes] for e in s.bounds]) for n in s.objectives}
        title = (
            f"Mean reward, {s.datasets} set(s) x {s.models} model(s) x {s.episodes} episode(s) a cell, {self.env['id']}"
            "\n(* : the paired 95% interval of the difference excludes 0)"
        )
        figure = save_figure_atomically(
            reweight_figure(s.sizes, s.bounds, rewards, s.baseline, title, resolved), self.out / FIGURE
        )
        rows = [cell_row(cell, s) for cell in table.pieces.values()]
        for row in rows:
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        self.publish(f"{len(table)} cells", [table.path, figure], {"fig8": figure}, tables={"cells": rows})
        return {"settings": table.settings, "cells": table.pieces}


def cell_row(cell: dict, s: ReweightSettings) -> dict:
    """One flat row of a cell (the W&B table and the closing lines): each objective's mean reward,
    its paired difference to the baseline with the interval, and its effective sample size."""
    row = {"cell": cell["name"], "S": cell["size"], "eps": cell["bound"], "rows": cell["rows"]}
    for name in s.objectives:
        result = cell[name]
        row[f"{name}/reward"] = result["reward/mean"]
        if "minus_baseline" in result:
            d = result["minus_baseline"]
            row.update({f"{name}-{s.baseline}": d["mean"], f"{name}-{s.baseline}/low": d["low"]})
            row[f"{name}-{s.baseline}/high"] = d["high"]
        if result.get("effective_fraction") is not None:
            row[f"{name}/effective"] = result["effective_fraction"]
    return row


def describe_difference(result: dict) -> str:
    """` (minus the baseline +4.1 [-2.0, +9.9], effective size 0.62)` for an objective's cell result."""
    parts = []
    if "minus_baseline" in result:
        d = result["minus_baseline"]
        parts.append(f"minus the baseline {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]")
    if result.get("effective_fraction") is not None:
        parts.append(f"effective size {result['effective_fraction']:.2f}")
    return f" ({', '.join(parts)})" if parts else ""


def reweight_figure(
    sizes: Sequence[int],
    bounds: Sequence[float],
    rewards: dict[str, np.ndarray],
    baseline: str,
    title="",
    resolved: dict[str, np.ndarray] | None = None,
):
    """Fig. 8: mean reward per (training-set size S, distance bound eps) cell, one heatmap per
    objective, then each objective's difference to `baseline` (red: better than the baseline; a star
    where `resolved`, the paired interval excluding 0)."""
    names = list(rewards)
    others = [n for n in names if n != baseline]
    panels = len(names) + len(others)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    finite = np.concatenate([r[np.isfinite(r)] for r in rewards.values()] or [np.zeros(1)])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    def draw(ax, values, cmap, lo, hi, label, stars=None):
        image = ax.imshow(values, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes], fontsize="x-small")
        ax.set_yticks(range(len(bounds)), [f"{b:.3g}" for b in bounds], fontsize="x-small")
        ax.set_xlabel("training points S")
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                star = "*" if stars is not None and stars[i, j] else ""
                ax.text(j, i, f"{v:.1f}{star}", ha="center", va="center", fontsize="x-small")
        ax.set_title(label, fontsize="small")
        return image

    for ax, name in zip(axes[0], names, strict=False):
        image = draw(ax, rewards[name], "viridis", vmin, vmax, f"{name}: mean reward")
    fig.colorbar(image, ax=axes[0][len(names) - 1])
    for ax, name in zip(axes[0][len(names) :], others, strict=True):
        diff = rewards[name] - rewards[baseline]
        span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
        stars = None if resolved is None else resolved[name]
        image = draw(ax, diff, "RdBu_r", -span or -1, span or 1, f"{name} - {baseline} (higher: {name} better)", stars)
        fig.colorbar(image, ax=ax)
    axes[0][0].set_ylabel("distance bound eps")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> None:
    run_experiment("reweight", __doc__.splitlines()[0], argv, ReweightRun)
