"""`objmm babbling`: PETS learning from initial data of growing size and little relevance (the paper's App. A, Fig. 10).

    objmm babbling --config configs/babbling/cartpole.yaml

The config is a pets config plus a `babbling:` section. For every size S (the paper: 200, 2000, 4000
and 20000 transitions) and seed, one ordinary PETS run starts from S / horizon motor-babbling
rollouts of `horizon` random-action steps from the noise-free initial state (`babbling:RxH`)
instead of one random rollout, in `<out>/S<size>_s<seed>`. The paper: the more off-task data, the
slower PETS learns. `babbling.json` in `out` holds each finished run's rewards per trial; the same
command after a kill goes on (finished runs are kept, an unfinished one resumes), and the same
command with more seeds or sizes adds their runs to the table. At the end
`fig10.png`: the mean reward per trial for each size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments import pets, pets_sweep
from objmm.experiments.framework import (
    ExperimentRun,
    RaySettings,
    ResultsFile,
    plain,
    run_experiment,
    run_pieces,
)
from objmm.experiments.framework.results import same_settings
from objmm.experiments.sweeps import parsed_config, with_wandb, write_config
from objmm.plots import plt, save_figure_atomically

TABLE, FIGURE = "babbling.json", "fig10.png"


@dataclass
class BabblingSettings:
    """The `babbling:` section.

    Args:
        sizes: initial transitions per run (the paper: 200, 2000, 4000, 20000), each a multiple of `horizon`.
        horizon: steps per babbling rollout (the paper: 10).
        seeds: one PETS run per size and seed.
        out: the runs' folders, the table and the figure.
        ray: with an address, each run is a Ray task.
    """

    sizes: list[int] = field(default_factory=lambda: [200, 2000, 4000, 20000])
    horizon: int = 10
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str = "runs/babbling"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        if not self.sizes or not self.seeds or self.horizon < 1:
            raise ObjmmError("babbling.sizes and babbling.seeds need an entry each, and babbling.horizon >= 1")
        for size in self.sizes:
            if size < self.horizon or size % self.horizon:
                raise ObjmmError(f"babbling.sizes: {size} is not a whole number of {self.horizon}-step rollouts")


def run_one(name: str, config: str, run_dir: str, trials: int) -> dict:
    """One PETS run, started, gone on with or skipped when done (as a pets-sweep's), and its rewards per trial."""
    entry = pets_sweep.run_one(name, config, run_dir, trials)
    return {"name": name, "rewards": entry["rewards"][:trials]}


class BabblingRun(ExperimentRun):
    section, settings_class, resume_file = "babbling", BabblingSettings, TABLE
    other_sections = {"pets": pets.PETSSettings}
    settings: BabblingSettings

    def prepare(self) -> None:
        s, base = self.settings, parsed_config(self.cli, drop=self.section)
        self.runs = []
        for size in s.sizes:
            for seed in s.seeds:
                name = f"S{size}_s{seed}"
                config = {
                    **base,
                    "seed_everything": seed,
                    "data": {**base["data"], "train": f"babbling:{size // s.horizon}x{s.horizon}"},
                    "pets": {**base["pets"], "run_dir": str(self.out / name)},
                }
                self.runs.append((name, size, with_wandb(config, name=name, group=self.out.name)))
        # what every run shares, then the grid: more seeds or sizes add runs to the same table
        common = {
            **base,
            "seed_everything": None,
            "data": {**base["data"], "train": None},
            "pets": {**base["pets"], "run_dir": None},
        }
        settings = {"runs_of": common, "horizon": s.horizon, "sizes": s.sizes, "seeds": s.seeds}
        upgrade_table(self.out / TABLE, settings, {name: config for name, _, config in self.runs})
        self.table = ResultsFile(
            self.out / TABLE, settings, "runs", "name", "babbling.out", may_grow=("sizes", "seeds")
        )

    def log_config(self) -> None:
        """Each PETS run is a W&B run of its own while they run; this run's config goes in at the end."""

    def run(self) -> dict:
        s, trials = self.settings, self.cli.config_init.pets.trials
        todo = [(name, str(write_config(self.out, name, c)), c["pets"]["run_dir"], trials)
                for name, _, c in self.runs if name not in self.table]  # fmt: skip
        print(f"babbling: {len(self.runs)} PETS runs ({len(self.table)} done), {trials} trials each", flush=True)

        def land(args: tuple, result: dict) -> None:
            self.table.add(result)
            print(f"babbling: {result['name']}: best reward {max(result['rewards']):.1f}", flush=True)

        run_pieces(run_one, todo, land, s.ray, describe=lambda i, args: f"babbling: run {args[0]}")
        sizes = {size: [self.table.pieces[name]["rewards"] for name, run_size, _ in self.runs if run_size == size]
                 for size in s.sizes}  # fmt: skip
        figure = plot_babbling(
            sizes, self.out / FIGURE, f"PETS, {self.env['id']}: {len(s.seeds)} seed{'s' * (len(s.seeds) > 1)} a size"
        )
        super().log_config()
        self.publish(f"{len(self.runs)} runs", [self.table.path, figure], {"fig10": figure})
        return self.table.pieces


def upgrade_table(path: Path, settings: dict, configs: dict[str, dict]) -> None:
    """A table written before 2026-12-04 holds every run's whole config as its settings, so it took
    no more seeds: where each of those is the config this command makes for that run, the table is
    rewritten with `settings` (its runs kept); any other is left for `ResultsFile` to refuse."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: ResultsFile names the damage
        return
    old = saved.get("settings") if isinstance(saved, dict) else None
    if not (isinstance(old, dict) and set(old) == {"runs"} and isinstance(old["runs"], list)):
        return
    made = {Path(c.get("pets", {}).get("run_dir", "")).name: c for c in old["runs"] if isinstance(c, dict)}
    if made and all(name in configs and same_settings(config, plain(configs[name])) for name, config in made.items()):
        atomic.write_json(path, {**saved, "settings": plain(settings)})


def plot_babbling(rewards: dict[int, list[list[float]]], path: Path, title: str) -> Path:
    """Fig. 10: mean reward per trial (and the range over seeds) for each initial data size."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for size, runs in rewards.items():
        curves = np.array(runs)  # [seeds, trials]
        trials = np.arange(1, curves.shape[1] + 1)
        line = ax.plot(trials, curves.mean(0), marker="o", markersize=3, label=f"{size} babbling transitions")[0]
        if len(curves) > 1:
            ax.fill_between(trials, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.15)
    ax.set(xlabel="trial", ylabel="episode reward", title=title)
    ax.legend(fontsize="small")
    return save_figure_atomically(fig, path)


def main(argv: list[str]) -> None:
    run_experiment("babbling", __doc__.splitlines()[0], argv, BabblingRun)
