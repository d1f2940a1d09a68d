"""`objmm pets-sweep`: many PETS runs from one pets config, one per seed (and model type), every
trial's model kept: the population of the paper's Fig. 3 (e.g. 50 runs x 20 trials = 1000 models).

    objmm pets-sweep --config configs/population/cartpole_runs.yaml
    objmm pets-sweep --config configs/population/cartpole_runs.yaml --sweep.ray.address auto

The config is a pets config (`env`, `model`, `data`, `trainer`, `pets`, `seed_everything`) plus a
`sweep:` section. Each run is an ordinary `objmm pets` run in `<sweep.out>/<TYPE>_s<SEED>` (its
`seed_everything` the seed, its `model` the type's model section), so `objmm pets --resume` works on
it alone. The same command again goes on where the sweep stopped: finished runs are skipped,
unfinished ones resumed. `index.json` lists every run and its saved models; `objmm population`
takes the sweep directory as its `models`. Each run is a W&B run of its own, grouped by the sweep.
"""

from __future__ import annotations

from pathlib import Path

from objmm.experiments import pets
from objmm.experiments.sweeps import SweepIndex, SweepSettings, parsed_config, run_all, run_configs, write_config


def pets_runs(base: dict, sweep: SweepSettings) -> list[tuple[str, dict]]:
    """Every run's pets config: the sweep's run configs, each in its own run directory."""
    runs = run_configs(base, sweep)
    for name, config in runs:
        config["pets"] = {**config["pets"], "run_dir": str(Path(sweep.out) / name)}
    return runs


def run_one(name: str, config_path: str, run_dir: str, trials: int) -> dict:
    """One PETS run, started or resumed (or skipped when finished); its entry in the index."""
    from objmm.cli import finish_wandb

    state_file = Path(run_dir) / pets.STATE_FILE
    done = pets.load_state(Path(run_dir))["finished_trials"] if state_file.exists() else 0
    if done < trials:
        # a started run goes on with its own saved config; only the number of trials may grow
        argv = ["--resume", run_dir, "--pets.trials", str(trials)] if state_file.exists() else ["--config", config_path]
        try:
            pets.main(argv)
        finally:
            finish_wandb(exit_code=0)
    state = pets.load_state(Path(run_dir))
    models = [str(pets.model_path(Path(run_dir), t)) for t in range(state["finished_trials"])]
    best = max((h["reward/mean"] for h in state["history"]), default=float("nan"))
    return {"run": name, "run_dir": run_dir, "finished_trials": state["finished_trials"], "best_reward": best,
            "models": models}  # fmt: skip


def main(argv: list[str]) -> None:
    from objmm.cli import experiment_cli

    cli = experiment_cli(
        "pets-sweep", __doc__.splitlines()[0], argv, {"pets": pets.PETSSettings, "sweep": SweepSettings}
    )
    sweep: SweepSettings = cli.config_init.sweep
    out = Path(sweep.out)
    runs = pets_runs(parsed_config(cli), sweep)
    index = SweepIndex(out, [name for name, _ in runs])
    arguments = [
        (name, str(write_config(out, name, config)), config["pets"]["run_dir"], config["pets"]["trials"])
        for name, config in runs
    ]

    def land(args: tuple, entry: dict) -> None:
        index.add(entry)
        models = sum(len(e["models"]) for e in index.entries.values())
        print(
            f"pets-sweep: run {entry['run']} has {entry['finished_trials']} trials (best reward "
            f"{entry['best_reward']:.1f}); {len(index.entries)}/{len(runs)} runs, {models} models in {index.path}",
            flush=True,
        )

    run_all("pets-sweep", sweep, run_one, arguments, land)
    print(f"pets-sweep: {len(runs)} runs in {out}; their models: objmm population --population.models '[{out}]'")
