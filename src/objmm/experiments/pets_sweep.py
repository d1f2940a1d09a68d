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

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments import pets
from objmm.experiments.ray_cluster import RaySettings, run_tasks
from objmm.training.trainer import quiet_lightning

INDEX = "index.json"


@dataclass
class SweepSettings:
    """The `sweep:` section.

    Args:
        seeds: one run per seed (its `seed_everything`).
        models: model type -> its model section, a file (`{D: configs/models/d.yaml}`, relative to where
            objmm runs, as `--model` is) or written out (`{D: {members: 1, probabilistic: false}}`);
            empty: the config's own `model`, one type, named by what it is (D, DE, P or PE).
        out: the sweep directory: one run directory per type and seed, `configs/`, and `index.json`.
        ray: with an address, each run is a Ray task (`cpus_per_task` threads each).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: dict[str, str | dict] = field(default_factory=dict)
    out: str = "runs/pets_sweep"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        if not self.seeds:
            raise ObjmmError("sweep.seeds is empty; give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ObjmmError(f"sweep.seeds repeats a seed: {self.seeds}")
        for name, path in self.models.items():
            if isinstance(path, str) and not Path(path).is_file():
                raise ObjmmError(f"sweep.models.{name}: no model section file at {path}")


def model_type(model: dict) -> str:
    return ("P" if model.get("probabilistic", True) else "D") + ("E" if model.get("members", 5) > 1 else "")


def run_configs(base: dict, sweep: SweepSettings) -> list[tuple[str, dict]]:
    """(run name, its full pets config) for every type and seed."""
    types = {
        name: yaml.safe_load(Path(model).read_text()) if isinstance(model, str) else dict(model)
        for name, model in sweep.models.items()
    }
    types = types or {model_type(base["model"]): base["model"]}
    runs = []
    for name, model in types.items():
        for seed in sweep.seeds:
            run = f"{name}_s{seed}"
            config = {**base, "seed_everything": seed, "model": model}
            config["pets"] = {**base["pets"], "run_dir": str(Path(sweep.out) / run)}
            logger = config["trainer"].get("logger")
            if isinstance(logger, dict) and logger.get("class_path", "").endswith("WandbLogger"):
                init = {**logger["init_args"], "name": run, "group": Path(sweep.out).name}
                config["trainer"] = {**config["trainer"], "logger": {**logger, "init_args": init}}
            runs.append((run, config))
    return runs


def run_one(name: str, config_path: str, run_dir: str, trials: int) -> dict:
    """One PETS run, started or resumed (or skipped when finished); its entry in the index."""
    from objmm.cli import finish_wandb

    state_file = Path(run_dir) / pets.STATE_FILE
    done = json.loads(state_file.read_text())["finished_trials"] if state_file.exists() else 0
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
    from objmm.cli import ObjmmCLI

    quiet_lightning()
    cli = ObjmmCLI(
        args=argv,
        run=False,
        sections={"pets": pets.PETSSettings, "sweep": SweepSettings},
        save_config_callback=None,
        parser_kwargs={"prog": "objmm pets-sweep", "description": __doc__.splitlines()[0]},
    )
    sweep: SweepSettings = cli.config_init.sweep
    base = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    base.pop("sweep")
    out = Path(sweep.out)
    runs = run_configs(base, sweep)
    index_path, index = out / INDEX, {}
    if index_path.exists():
        index = {entry["run"]: entry for entry in json.loads(index_path.read_text())["runs"]}
    arguments = []
    for name, config in runs:
        path = atomic.write_text(out / "configs" / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False))
        arguments.append((name, str(path), config["pets"]["run_dir"], config["pets"]["trials"]))

    def land(args: tuple, entry: dict) -> None:
        index[entry["run"]] = entry
        atomic.write_json(index_path, {"runs": [index[n] for n, _ in runs if n in index]})
        models = sum(len(e["models"]) for e in index.values())
        print(
            f"pets-sweep: run {entry['run']} has {entry['finished_trials']} trials (best reward "
            f"{entry['best_reward']:.1f}); {len(index)}/{len(runs)} runs, {models} models in {index_path}",
            flush=True,
        )

    print(f"pets-sweep: {len(runs)} runs ({', '.join(n for n, _ in runs)}) in {out}", flush=True)
    try:
        if sweep.ray.address:
            run_tasks(sweep.ray, run_one, arguments, land)
        else:
            for args in arguments:
                print(f"pets-sweep: run {args[0]} ({args[2]})", flush=True)
                land(args, run_one(*args))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the same objmm pets-sweep command goes on from here ({out})") from None
    print(f"pets-sweep: {len(runs)} runs in {out}; their models: objmm population --population.models '[{out}]'")
