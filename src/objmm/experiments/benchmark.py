"""`objmm benchmark`: loss objectives that may fix the mismatch, on equal terms: PETS with each
objective x each stress setting x seeds, one ranked table with intervals over seeds.

    objmm benchmark --config configs/benchmark/cartpole_cpu.yaml
    objmm benchmark --config configs/benchmark/cartpole_cpu.yaml --benchmark.ray.address local

The config is a pets config plus a `benchmark:` section. Every run is an ordinary `objmm pets` run in
`<out>/<objective>-<stress>_s<seed>` (`objmm pets --resume` works on it alone) whose model trains with
the objective (`model.objective`) under the stress setting's model and env settings on top of the
config's (a small network, another goal, ...). Adding an objective is one class (`objmm.objectives`)
and one line of `benchmark.objectives`.

Per run (`benchmark.json`, a row each, kept as runs end: the same command again goes on, finished
runs skipped, an unfinished one resumed): the trials to reach `solved` (default: the task's expert
bar, 179 on the cartpole), the area under the reward curve (the mean reward over trials), the final
reward (the mean of the last `final_trials` trials), the LL (paper's convention) of its last model
on its own held-out rows, and its wall time. Per objective and stress setting: each number's mean
over seeds with a bootstrap interval, and the final reward's paired difference to `baseline` (the
same seeds: the same initial data and planner samples). `table.md` ranks the objectives within each
stress setting by final reward; `curves.png` draws the mean reward per trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from objmm import atomic
from objmm.envs import get_task
from objmm.errors import ObjmmError
from objmm.experiments import pets_sweep
from objmm.experiments.framework import ExperimentRun, RaySettings, ResultsFile, run_experiment, run_pieces
from objmm.experiments.framework.config import plain
from objmm.experiments.pets import PETSSettings
from objmm.experiments.pets_files import load_state
from objmm.experiments.sweeps import parsed_config, with_wandb, write_config
from objmm.objectives import build_objective
from objmm.plots import plt, save_figure_atomically
from objmm.stats import mean_interval, paired_difference

TABLE, RANKING, FIGURE = "benchmark.json", "table.md", "curves.png"


@dataclass
class BenchmarkSettings:
    """The `benchmark:` section.

    Args:
        objectives: name -> the objective as `model.objective` takes it (`{class_path: ..., init_args: ...}`).
        stress: name -> settings on top of the config's for every objective: `model` (e.g.
            `{width: 32}`), `env_id` (e.g. `objmm/PETSCartpole-d4-v0`, the cartpole with 4 distractor
            entries) and `env_kwargs` (e.g. `{x_goal: 0.5}`); `{default: {}}` runs the config as it is.
        seeds: one run per objective, stress setting and seed.
        baseline: the objective the others' final rewards are paired with.
        solved: the reward that counts as solved (default: the task's expert bar).
        final_trials: the last trials whose mean is a run's final reward.
        out: the runs, benchmark.json, table.md and curves.png.
        ray: with an address, each run is a Ray task.
    """

    objectives: dict[str, dict] = field(default_factory=dict)
    stress: dict[str, dict] = field(default_factory=lambda: {"default": {}})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    baseline: str = "nll"
    solved: float | None = None
    final_trials: int = 3
    out: str = "runs/benchmark"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        if not self.objectives or not self.stress or not self.seeds:
            raise ObjmmError("benchmark.objectives, benchmark.stress and benchmark.seeds need an entry each")
        if self.baseline not in self.objectives:
            raise ObjmmError(
                f"benchmark.baseline {self.baseline!r} is not one of the objectives ({', '.join(self.objectives)})"
            )
        for name, setting in self.stress.items():
            unknown = set(setting) - {"model", "env_id", "env_kwargs"}
            if unknown:
                raise ObjmmError(
                    f"benchmark.stress.{name}: {sorted(unknown)[0]!r} is not a setting (model, env_id, env_kwargs)"
                )
            if "env_id" in setting:
                get_task(setting["env_id"])  # an unknown env, or a distractor count below 0, named here
        for name, spec in self.objectives.items():
            try:
                build_objective(spec)
            except ObjmmError:
                raise
            except Exception as error:
                raise ObjmmError(f"benchmark.objectives.{name}: {spec} is not an objective ({error})") from None


def run_name(objective: str, stress: str, seed: int) -> str:
    return f"{objective}-{stress}_s{seed}"


def run_numbers(state: dict, solved: float, final_trials: int) -> dict:
    """What the table keeps of one PETS run's state."""
    history = state["history"]
    rewards = [h["reward/mean"] for h in history]
    return {
        "rewards": rewards,
        "trials_to_solve": next((t + 1 for t, r in enumerate(rewards) if r >= solved), None),
        "auc": float(np.mean(rewards)),
        "final": float(np.mean(rewards[-final_trials:])),
        "held_out_ll": float(history[-1].get("val/paper_ll", float("nan"))),
        "seconds": float(sum(h.get("seconds", 0.0) for h in history)),
    }


class BenchmarkRun(ExperimentRun):
    section, settings_class, resume_file = "benchmark", BenchmarkSettings, TABLE
    other_sections = {"pets": PETSSettings}
    settings: BenchmarkSettings

    def log_config(self) -> None:
        """Each run logs its own config to its own W&B run."""

    def prepare(self) -> None:
        s = self.settings
        base = parsed_config(self.cli, drop="benchmark")
        self.trials = base["pets"]["trials"]
        self.solved = s.solved if s.solved is not None else get_task(self.env["id"]).expert_reward
        self.runs = []
        for objective, spec in s.objectives.items():
            for stress, setting in s.stress.items():
                for seed in s.seeds:
                    name = run_name(objective, stress, seed)
                    model = {**base["model"], **setting.get("model", {}), "objective": spec}
                    env = {
                        "id": setting.get("env_id", base["env"]["id"]),
                        "kwargs": {**(base["env"].get("kwargs") or {}), **setting.get("env_kwargs", {})},
                    }
                    config = {**base, "seed_everything": seed, "model": model, "env": env}
                    config["pets"] = {**base["pets"], "run_dir": str(self.out / name)}
                    self.runs.append((name, with_wandb(config, name=name, group=self.out.name)))
        settings = {k: v for k, v in plain(s).items() if k not in ("out", "ray")}
        self.table = ResultsFile(  # more seeds add runs to the same table
            self.out / TABLE,
            {**settings, "pets": base["pets"] | {"run_dir": None}},
            "runs",
            setting="benchmark.out",
            may_grow=("seeds",),
        )

    def run(self) -> dict:
        s = self.settings
        arguments = [
            (name, str(write_config(self.out, name, config)), config["pets"]["run_dir"], self.trials)
            for name, config in self.runs
        ]

        def land(args: tuple, entry: dict) -> None:
            numbers = run_numbers(load_state(Path(entry["run_dir"])), self.solved, s.final_trials)
            self.table.add({"name": entry["run"], **numbers})
            print(
                f"benchmark: {entry['run']}: final reward {numbers['final']:.1f}; "
                f"{len(self.table)}/{len(arguments)} runs"
            )

        describe = lambda i, args: f"benchmark: run {i + 1}/{len(arguments)}, {args[0]}"  # noqa: E731
        run_pieces(pets_sweep.run_one, arguments, land, s.ray, describe=describe)
        rows = summarise(self.table.pieces, s)
        ranking = ranked_table(rows, s, self.solved)
        atomic.write_text(self.out / RANKING, ranking)
        self.table.add(summary=rows)
        figure = save_figure_atomically(curves_figure(self.table.pieces, s), self.out / FIGURE)
        print(ranking, flush=True)
        self.publish(
            f"{len(self.table)} runs",
            [self.out / TABLE, self.out / RANKING, figure],
            {"curves": figure},
            tables={"ranking": rows},
        )
        return {"summary": rows}


def summarise(runs: dict[str, dict], s: BenchmarkSettings) -> list[dict]:
    """Per objective and stress setting: each number's mean over seeds and its interval, the seeds
    that solved the task, and the final reward's paired difference to the baseline."""
    rows = []
    for stress in s.stress:
        for objective in s.objectives:
            found = [runs.get(run_name(objective, stress, seed)) for seed in s.seeds]
            if not all(found):
                continue
            row = {"objective": objective, "stress": stress, "seeds": len(found)}
            for key in ("auc", "final", "held_out_ll", "seconds"):
                m = mean_interval([f[key] for f in found])
                row.update({key: m.mean, f"{key}_low": m.low, f"{key}_high": m.high})
            solved = sorted(f["trials_to_solve"] for f in found if f["trials_to_solve"] is not None)
            row.update(solved=len(solved), median_trials_to_solve=float(np.median(solved)) if solved else None)
            baseline = [runs.get(run_name(s.baseline, stress, seed)) for seed in s.seeds]
            if objective != s.baseline and all(baseline):
                d = paired_difference([f["final"] for f in found], [b["final"] for b in baseline])
                row.update(
                    final_minus_baseline=d.mean, final_minus_baseline_low=d.low, final_minus_baseline_high=d.high
                )
            rows.append(row)
    return rows


def ranked_table(rows: list[dict], s: BenchmarkSettings, solved: float) -> str:
    """Markdown: per stress setting, the objectives by final reward, each number with its interval."""

    def iv(row, key, digits=1):
        return f"{row[key]:.{digits}f} [{row[key + '_low']:.{digits}f}, {row[key + '_high']:.{digits}f}]"

    lines = [f"# objmm benchmark: {len(s.seeds)} seeds, final reward = mean of the last {s.final_trials} trials", ""]
    for stress in s.stress:
        ranked = sorted((r for r in rows if r["stress"] == stress), key=lambda r: -r["final"])
        lines += [
            f"## {stress}",
            "",
            f"| rank | objective | final reward | minus {s.baseline} (paired) | area under the curve | "
            f"solved (>= {solved:g}) | LL on held-out rows | wall time (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, r in enumerate(ranked, 1):
            paired = iv(r, "final_minus_baseline") if "final_minus_baseline" in r else "-"
            trials = f"{r['solved']}/{r['seeds']}" + (
                f", median trial {r['median_trials_to_solve']:g}" if r["median_trials_to_solve"] is not None else ""
            )
            lines.append(
                f"| {i} | {r['objective']} | {iv(r, 'final')} | {paired} | {iv(r, 'auc')} | {trials} | "
                f"{iv(r, 'held_out_ll', 3)} | {r['seconds']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def curves_figure(runs: dict[str, dict], s: BenchmarkSettings):
    """The mean reward per trial of each objective, one panel per stress setting."""
    fig, axes = plt.subplots(1, len(s.stress), figsize=(5 * len(s.stress), 3.6), squeeze=False, sharey=True)
    for ax, stress in zip(axes[0], s.stress, strict=True):
        for objective in s.objectives:
            found = [runs[n]["rewards"] for seed in s.seeds if (n := run_name(objective, stress, seed)) in runs]
            if found:
                length = min(map(len, found))
                mean = np.mean([f[:length] for f in found], axis=0)
                ax.plot(np.arange(1, length + 1), mean, marker=".", label=f"{objective} ({len(found)} seeds)")
        ax.set(title=stress, xlabel="trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("episode reward, mean over seeds (higher is better)")
    fig.tight_layout()
    # one legend for every panel, under them, where it hides no curve
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 6), frameon=False)
    return fig


def main(argv: list[str]) -> None:
    run_experiment("benchmark", __doc__.splitlines()[0], argv, BenchmarkRun)
