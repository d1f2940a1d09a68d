"""`objmm pets-sweep`: many PETS runs from one pets config, one per seed (and model type), every
trial's model kept: the population of the paper's Fig. 3 (e.g. 50 runs x 20 trials = 1000 models).

    objmm pets-sweep --config configs/pets-sweep/cartpole_population.yaml
    objmm pets-sweep --config configs/pets-sweep/cartpole_population.yaml --sweep.ray.address auto

The config is a pets config (`env`, `model`, `data`, `trainer`, `pets`, `seed_everything`) plus a
`sweep:` section. Each run is an ordinary `objmm pets` run in `<sweep.out>/<TYPE>_s<SEED>` (its
`seed_everything` the seed, its `model` the type's model section), so `objmm pets --resume` works on
it alone. The same command again goes on where the sweep stopped: finished runs are skipped,
unfinished ones resumed. `index.json` lists every run and its saved models; `objmm population`
takes the sweep directory as its `models`. Each run is a W&B run of its own, grouped by the sweep.
`summary.json` compares the model types (e.g. NLL against online re-weighting): per type, the
trials each seed took to reach the task's expert bar (cartpole 179), their median and range, the
best rewards and each run's final reward (the mean of its last 5 trials); `curves.png` draws every
run's reward per trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from objmm import atomic
from objmm.envs import get_task
from objmm.errors import require_at_least_one
from objmm.experiments import pets
from objmm.experiments.framework import run_experiment
from objmm.experiments.pets_files import STATE_FILE, load_state, model_path
from objmm.experiments.sweeps import (
    SweepIndex,
    SweepRun,
    SweepSettings,
    parsed_config,
    run_configs,
    type_of_run,
    write_config,
)
from objmm.plots import plt, save_figure_atomically

#: a run's final reward in the summary: the mean over its last trials, up to this many
FINAL_TRIALS = 5


def pets_runs(base: dict, sweep: SweepSettings) -> list[tuple[str, dict]]:
    """Every run's pets config: the sweep's run configs, each in its own run directory."""
    runs = run_configs(base, sweep)
    for name, config in runs:
        config["pets"] = {**config["pets"], "run_dir": str(Path(sweep.out) / name)}
    return runs


def pets_arguments(config_path: str, run_dir: str, trials: int) -> list[str] | None:
    """The `objmm pets` command line that takes a run to `trials` (None: it has them): a started run
    goes on with its own saved config, of which only the number of trials may grow."""
    state_file = Path(run_dir) / STATE_FILE
    if not state_file.exists():
        return ["--config", config_path]
    if load_state(Path(run_dir))["finished_trials"] >= trials:
        return None
    return ["--resume", run_dir, "--pets.trials", str(trials)]


def run_entry(name: str, run_dir: str, bar: float) -> dict:
    """A run's entry in the index: its trials, rewards, the trial that first reached `bar`, its models."""
    state = load_state(Path(run_dir))
    models = [str(model_path(Path(run_dir), t)) for t in range(state["finished_trials"])]
    rewards = [h["reward/mean"] for h in state["history"]]
    solved = next((t + 1 for t, r in enumerate(rewards) if r >= bar), None)
    return {"run": name, "run_dir": run_dir, "finished_trials": state["finished_trials"],
            "best_reward": max(rewards, default=float("nan")), "trials_to_bar": solved, "rewards": rewards,
            "models": models}  # fmt: skip


def run_one(name: str, config_path: str, run_dir: str, trials: int, bar: float = float("inf")) -> dict:
    """One PETS run, started or resumed (or skipped when finished); its entry in the index."""
    from objmm.experiments.framework import finish_wandb

    argv = pets_arguments(config_path, run_dir, trials)
    if argv is not None:
        try:
            pets.main(argv)
        finally:
            finish_wandb(exit_code=0)
    return run_entry(name, run_dir, bar)


def run_stack(
    label: str, names: list[str], config_paths: list[str], run_dirs: list[str], trials: int, bar: float = float("inf")
) -> list[dict]:
    """K PETS runs stepped together (`pets_stacked`), each started, resumed or skipped when finished;
    their entries in the index (`label` names the stack in the sweep's progress lines)."""
    from objmm.experiments.pets_stacked import open_runs, run_together

    arguments = [pets_arguments(c, d, trials) for c, d in zip(config_paths, run_dirs, strict=True)]
    todo = [argv for argv in arguments if argv is not None]
    if todo:
        run_together(open_runs(todo))
    return [run_entry(name, run_dir, bar) for name, run_dir in zip(names, run_dirs, strict=True)]


def summary(entries: list[dict], types: list[str], bar: float) -> dict:
    """Per model type: the trials each run took to reach `bar` (None: not in its trials), their median
    (a run that never reached it counts as later than any that did) and range, and the best rewards."""
    out = {}
    for kind in types:
        runs = [e for e in entries if type_of_run(e["run"]) == kind]
        if not runs:
            continue
        reached = [e.get("trials_to_bar") for e in runs]
        ordered = sorted(reached, key=lambda t: float("inf") if t is None else t)
        median = ordered[(len(ordered) - 1) // 2]  # the lower median: a whole trial count, or None
        out[kind] = {
            "runs": len(runs),
            "bar": bar,
            "trials_to_bar": reached,
            "median_trials_to_bar": median,
            "reached_bar": sum(t is not None for t in reached),
            "best_reward_median": float(np.median([e["best_reward"] for e in runs])),
            "best_rewards": [e["best_reward"] for e in runs],
            "final_trials": FINAL_TRIALS,
            "final_rewards": [float(np.mean(e["rewards"][-FINAL_TRIALS:])) for e in runs],
        }
        out[kind]["final_reward_mean"] = float(np.mean(out[kind]["final_rewards"]))
    return out


def curves_figure(entries: list[dict], title: str = ""):
    """Every run's episode reward per trial: a colour per run, a line style per model type."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles: dict[str, str] = {}
    for i, entry in enumerate(sorted(entries, key=lambda e: e["run"])):
        style = styles.setdefault(type_of_run(entry["run"]), ("-", "--", ":", "-.")[len(styles) % 4])
        trials = range(1, len(entry["rewards"]) + 1)
        ax.plot(trials, entry["rewards"], "o", ls=style, ms=3, lw=1, color=f"C{i % 10}", label=entry["run"])
    ax.set_xlabel("trial")
    ax.set_ylabel("episode reward (higher: better)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small", ncol=2)
    if title:
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


@dataclass
class PETSSweepSettings(SweepSettings):
    """The `sweep:` section of `objmm pets-sweep`.

    Args:
        stack: runs of one model type stepped together, up to this many at a time: their models
            train as one batched network and their episodes are planned in one CEM call per step
            (`pets_stacked`), each run's numbers those it has alone. 1: one run after another. Stacked
            runs train with the NLL or MSE objective.
    """

    stack: int = 1

    def __post_init__(self):
        super().__post_init__()
        require_at_least_one("sweep", stack=self.stack)


def stacks(runs: list[tuple[str, dict]], size: int) -> list[list[tuple[str, dict]]]:
    """The runs in groups of up to `size`, each of one model type (runs of one type are adjacent)."""
    groups: list[list[tuple[str, dict]]] = []
    for name, config in runs:
        last = groups[-1] if groups else None
        if last and len(last) < size and type_of_run(last[0][0]) == type_of_run(name):
            last.append((name, config))
        else:
            groups.append([(name, config)])
    return groups


class PETSSweepRun(SweepRun):
    command, other_sections, settings_class = "pets-sweep", {"pets": pets.PETSSettings}, PETSSweepSettings
    settings: PETSSweepSettings

    def prepare(self) -> None:
        self.runs = pets_runs(parsed_config(self.cli), self.settings)
        self.index = SweepIndex(self.out, [name for name, _ in self.runs])

    def run(self) -> dict:
        out, runs, index = self.out, self.runs, self.index
        bar = get_task(self.env["id"]).expert_reward
        configs = {name: str(write_config(out, name, config)) for name, config in runs}
        trials = runs[0][1]["pets"]["trials"]

        def land(args: tuple, found: dict | list[dict]) -> None:
            for entry in found if isinstance(found, list) else [found]:
                index.add(entry)
                models = sum(len(e["models"]) for e in index.entries.values())
                print(
                    f"pets-sweep: run {entry['run']} has {entry['finished_trials']} trials (best reward "
                    f"{entry['best_reward']:.1f}); {len(index.entries)}/{len(runs)} runs, {models} models in "
                    f"{index.path}",
                    flush=True,
                )

        if self.settings.stack == 1:
            arguments = [(name, configs[name], config["pets"]["run_dir"], trials, bar) for name, config in runs]
            self.run_all(run_one, arguments, land)
        else:
            groups = []
            for group in stacks(runs, self.settings.stack):
                names = [name for name, _ in group]
                dirs = [config["pets"]["run_dir"] for _, config in group]
                groups.append(("+".join(names), names, [configs[n] for n in names], dirs, trials, bar))
            self.run_all(run_stack, groups, land, unit=("stack", "stacks"))
        types = list(dict.fromkeys(type_of_run(name) for name, _ in runs))
        found = summary(list(index.entries.values()), types, bar)
        atomic.write_json(out / "summary.json", found)
        title = f"{get_task(self.env['id']).name}: {len(runs)} runs"
        curves = save_figure_atomically(curves_figure(list(index.entries.values()), title), out / "curves.png")
        for kind, one in found.items():
            median = one["median_trials_to_bar"]
            print(
                f"pets-sweep: {kind}: {one['reached_bar']}/{one['runs']} runs reached {bar:g}, trials to it "
                f"{one['trials_to_bar']} (median {median if median is not None else 'not reached'}); "
                f"best rewards {', '.join(f'{r:.1f}' for r in one['best_rewards'])}; mean of the last "
                f"{FINAL_TRIALS} trials {', '.join(f'{r:.1f}' for r in one['final_rewards'])}",
                flush=True,
            )
        print(f"pets-sweep: learning curves -> {curves}")
        print(f"pets-sweep: {len(runs)} runs in {out}; their models: objmm population --population.models '[{out}]'")
        return found


def main(argv: list[str]) -> None:
    run_experiment("pets-sweep", __doc__.splitlines()[0], argv, PETSSweepRun)
