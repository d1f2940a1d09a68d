"""`objmm reweight`: does re-weighting the model's loss help? The paper's Fig. 8 (Sec. 5) and App. D.

    objmm reweight --config configs/reweight/cartpole.yaml

For every cell of a grid of training-set sizes S and distance bounds eps: S rows drawn at random
from a pool of uniform (state, action) tuples (the paper: 25e6) among those within eps of the
expert trajectory (d*, `objmm.data.distance`), each stepped once in the simulator. On that set one
model is trained per objective (`objectives`: e.g. the plain NLL, the distance re-weighted NLL of
Sec. 5 and the reward re-weighted NLL of App. D), all from the same initial weights, for the same
number of gradient steps; then every model of the cell runs `episodes` real MPC episodes (the paper:
100), all of them in one batched network, on the same episode starts and planner samples.

`reweight.json` in `out` holds each finished cell, rewritten atomically after each one: a killed
run goes on from the cells it has. The pool's d* are kept in `pool_distances.pt`. At the end
`fig8.png`: one heatmap of mean reward per objective, and each objective minus the baseline. With
`ray.address` set, cells go to a Ray cluster's workers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

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
        expert: an expert dataset; its first trajectory is the reference d* is measured to.
        sizes: training-set sizes S (the paper: a log-grid over [10, 2500]).
        bounds: distance bounds eps (the paper: a log-grid over [0.28, 15.66]).
        pool: uniform tuples the sets are drawn from (the paper: 25e6).
        objectives: name -> objective (`class_path`, `init_args`), one model each per cell.
        baseline: the objective the others are compared with (fig8.png's difference panels).
        train_steps: gradient steps of every model (the same for every S, so small sets are not undertrained).
        models: models per objective and cell, each from its own initial weights (the same for every
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
    train_steps: int = 2000
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
            train_steps=self.train_steps,
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
    hparams: dict, objective: dict, dataset: TransitionDataset, steps: int, batch_size: int, seed: int, device: str
) -> DynamicsModule:
    """A model trained with `objective` for `steps` gradient steps on 0.9 of `dataset`'s rows."""
    module = DynamicsModule(**hparams, objective=build_objective(objective))
    # every objective's model i starts from the same weights
    module.model.reset_parameters(torch.Generator().manual_seed(derive_seed(seed, "model")))
    data = TransitionDataModule(hparams["env_id"], batch_size=batch_size, ensemble_size=hparams["members"], seed=seed)
    data = data.with_dataset(dataset)
    bare_trainer(max_epochs=-1, device=device, max_steps=steps).fit(module, datamodule=data)
    return module.to(device).eval()


def evaluate_cell(
    cell: dict, rows: dict, hparams: dict, s: ReweightSettings, batch_size: int, env: dict, seed: int, device: str
) -> dict:
    """Train `models` models per objective on the cell's rows (model i of every objective from the
    same initial weights and bootstrap) and measure each one's real reward, all in one stack. Plain
    data in and out, so that a Ray worker can run it."""
    dataset = TransitionDataset.from_tensors(env["id"], **{k: torch.as_tensor(v) for k, v in rows.items()})
    t0 = time.perf_counter()
    print(
        f"  cell {cell['name']}: training {s.models} x {len(s.objectives)} models "
        f"({', '.join(s.objectives)}) for {s.train_steps} steps on {len(dataset)} rows",
        flush=True,
    )
    k = s.models
    modules = [
        fit_model(
            hparams,
            spec,
            dataset,
            s.train_steps,
            batch_size,
            derive_seed(seed, "cell", cell["size"], cell["bound"], i),
            device,
        )
        for spec in s.objectives.values()
        for i in range(k)
    ]
    trained = time.perf_counter() - t0
    prefix = f"  cell {cell['name']}: episode "
    returns = stacked_rewards(modules, Evaluation.of(s), env, derive_seed(seed, "reweight-episodes"), device, prefix)
    out = dict(cell, train_seconds=trained, seconds=time.perf_counter() - t0)
    for j, name in enumerate(s.objectives):
        r = returns[j * k : (j + 1) * k]  # [models, episodes]
        out[name] = {
            "reward/mean": float(r.mean()),
            "reward/std": float(r.std()),
            "model_means": r.mean(axis=1).tolist(),
            "rewards": r.tolist(),
        }
    return out


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
            "train_steps": s.train_steps,
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
        self.trajectory = expert_trajectory(self.settings.expert, self.env["id"], "reweight.expert")
        self.table = ResultsFile(self.out / TABLE, self.plain_settings(), "cells", "name", "reweight.out", by_key=True)

    def run(self) -> dict:
        s, table = self.settings, self.table
        reference = torch.cat([self.trajectory.data["obs"], self.trajectory.data["action"]], dim=-1)
        pool = UniformPool(self.env["id"], s.pool, seed=derive_seed(self.seed, "pool"))
        distances = pool.cached_distances(self.out / DISTANCES, reference, {"expert": s.expert}, self.device)
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
            rewards = ", ".join(f"{n} {result[n]['reward/mean']:.1f}" for n in s.objectives)
            print(
                f"reweight: cell {result['name']} ({result['rows']} rows, {len(table)}/"
                f"{len(s.sizes) * len(s.bounds)} done): {rewards}; {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            if self.logger:
                self.logger.log_metrics({f"{result['name']}/{n}": result[n]["reward/mean"] for n in s.objectives})

        arguments = []
        for cell in cells:
            dataset = near_reference_dataset(
                pool, distances, cell["size"], cell["bound"], seed=self.seed, **self.env["kwargs"]
            )
            cell = {**cell, "rows": len(dataset), "pool_within_bound": dataset.metadata["pool_rows_within_bound"]}
            rows = {k: dataset.data[k] for k in ("obs", "action", "next_obs")}
            arguments.append((cell, rows, self.hparams, s, self.batch_size, self.env, self.seed, self.device))
        run_pieces(evaluate_cell, arguments, land, s.ray)
        return self.finish(table)

    def finish(self, table: ResultsFile) -> dict:
        s = self.settings

        def mean_reward(size: int, bound: float, name: str) -> float:  # NaN where a cell is missing
            return table.pieces.get(cell_name(size, bound), {}).get(name, {}).get("reward/mean", np.nan)

        rewards = {n: np.array([[mean_reward(S, e, n) for S in s.sizes] for e in s.bounds]) for n in s.objectives}
        title = f"Mean reward of {s.episodes} episodes per model, {self.env['id']}"
        figure = save_figure_atomically(
            reweight_figure(s.sizes, s.bounds, rewards, s.baseline, title), self.out / FIGURE
        )
        self.publish(f"{len(table)} cells", [table.path, figure], {"fig8": figure})
        return {"settings": table.settings, "cells": table.pieces}


def reweight_figure(
    sizes: Sequence[int], bounds: Sequence[float], rewards: dict[str, np.ndarray], baseline: str, title=""
):
    """Fig. 8: mean reward per (training-set size S, distance bound eps) cell, one heatmap per
    objective, then each objective's difference to `baseline` (red: better than the baseline)."""
    names = list(rewards)
    others = [n for n in names if n != baseline]
    panels = len(names) + len(others)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    finite = np.concatenate([r[np.isfinite(r)] for r in rewards.values()] or [np.zeros(1)])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    def draw(ax, values, cmap, lo, hi, label):
        image = ax.imshow(values, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes], fontsize="x-small")
        ax.set_yticks(range(len(bounds)), [f"{b:.3g}" for b in bounds], fontsize="x-small")
        ax.set_xlabel("training points S")
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small")
        ax.set_title(label, fontsize="small")
        return image

    for ax, name in zip(axes[0], names, strict=False):
        image = draw(ax, rewards[name], "viridis", vmin, vmax, f"{name}: mean reward")
    fig.colorbar(image, ax=axes[0][len(names) - 1])
    for ax, name in zip(axes[0][len(names) :], others, strict=True):
        diff = rewards[name] - rewards[baseline]
        span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
        image = draw(ax, diff, "RdBu_r", -span or -1, span or 1, f"{name} - {baseline}")
        fig.colorbar(image, ax=ax)
    axes[0][0].set_ylabel("distance bound eps")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> None:
    run_experiment("reweight", __doc__.splitlines()[0], argv, ReweightRun)
