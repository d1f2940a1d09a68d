"""`objmm pets`: the PETS online loop (Chua et al. 2018), in plain Python around `Trainer.fit`.

Per trial: train the model (from scratch, or fine-tune it: `training.mode`), measure its NLL on
the newest data before training on it and on the training data after, run one CEM-MPC episode
in the real env, and append it to the dataset. After every trial the run directory holds the
dataset, the model, `state.json` (finished trials and their metrics) and the learning-curve
figure, each written atomically; `objmm pets --resume RUN_DIR` goes on from the last finished
trial with nothing lost or repeated.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from objmm import atomic
from objmm.data import TransitionDataset, load_source
from objmm.envs import get_task
from objmm.errors import ObjmmError
from objmm.objectives import Objective
from objmm.planning import CEMConfig, CEMPlanner, ModelEnv, collect_episodes
from objmm.plots import plot_trials
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.metrics import dataset_metrics
from objmm.training.trainer import bare_trainer

STATE_FILE = "state.json"
CONFIG_FILE = "pets_config.yaml"


@dataclass
class ModelConfig:
    members: int = 5
    width: int = 200
    depth: int = 2
    probabilistic: bool = True


@dataclass
class TrainingConfig:
    """Table 1: cartpole full re-training (100 epochs, batch 16); half cheetah incremental (20 then 10, batch 64)."""

    mode: Literal["full", "incremental"] = "full"
    epochs: int = 5
    incremental_epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    train_fraction: float = 0.9


def check_run_dir(run_dir: Path) -> dict:
    """The saved state of a PETS run directory, or a one-line error if it is not one."""
    if not (run_dir / STATE_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
        raise ObjmmError(f"{run_dir} is not an objmm pets run (no {STATE_FILE} and {CONFIG_FILE})")
    return json.loads((run_dir / STATE_FILE).read_text())


class PETSRun:
    def __init__(
        self,
        run_dir: Path,
        env_id: str,
        trials: int,
        seed: int,
        initial_data: str,
        model: ModelConfig,
        objective: Objective | None,
        training: TrainingConfig,
        cem: CEMConfig,
        episode_steps: int | None,
        device: str,
        env_kwargs: dict,
        wandb_project: str,
        wandb_offline: bool,
    ):
        self.run_dir, self.env_id, self.trials, self.seed = run_dir, env_id, trials, seed
        self.task = get_task(env_id)
        self.initial_data, self.model_config, self.objective = initial_data, model, objective
        self.training, self.cem, self.device, self.env_kwargs = training, cem, device, env_kwargs
        self.episode_steps = episode_steps or self.task.episode_steps
        self.wandb_project, self.wandb_offline = wandb_project, wandb_offline
        self.module: DynamicsModule | None = None

    # ----------------------------------------------------------------- pieces of a trial
    def new_module(self, trial: int) -> DynamicsModule:
        torch.manual_seed(self.seed * 10_007 + trial)
        cfg = self.model_config
        return DynamicsModule(
            self.env_id, cfg.members, cfg.width, cfg.depth, cfg.probabilistic, self.objective, self.training.lr
        ).to(self.device)

    def fit(self, module: DynamicsModule, dataset: TransitionDataset, epochs: int, trial: int) -> None:
        datamodule = TransitionDataModule.from_dataset(
            dataset,
            batch_size=self.training.batch_size,
            ensemble_size=module.model.members,
            train_fraction=self.training.train_fraction,
            seed=self.seed * 10_007 + trial,
        )
        trainer = bare_trainer(epochs, self.device)
        trainer.fit(module, datamodule=datamodule)
        module.to(self.device)

    def episode(self, module: DynamicsModule, trial: int) -> tuple[float, TransitionDataset]:
        model = module.model.eval()
        env = ModelEnv(self.task, model.predict_next, self.task.reward(**self.env_kwargs), device=self.device)
        record = collect_episodes(
            self.env_id,
            CEMPlanner(env, self.cem),
            1,
            seed=self.seed * 10_007 + trial,
            steps=self.episode_steps,
            device=self.device,
            **self.env_kwargs,
        )
        rows = TransitionDataset.from_trajectories(self.env_id, record.obs, record.actions, record.next_obs)
        return float(record.returns[0]), rows

    # ----------------------------------------------------------------- the loop
    def run(self, resume: bool = False) -> dict:
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            state = check_run_dir(self.run_dir)
            dataset = TransitionDataset.load(self.run_dir / "dataset").head(state["dataset_rows"])
            if state["finished_trials"]:  # the last model: the next trial measures it on the newest data
                self.module = self.new_module(state["finished_trials"] - 1)
                self.module.load_state_dict(torch.load(self.run_dir / "model.pt", map_location=self.device))
        else:
            dataset = load_source(self.initial_data, self.env_id, seed=self.seed, **self.env_kwargs)
            dataset.metadata.update(source="pets", initial_data=self.initial_data)
            state = {"finished_trials": 0, "dataset_rows": len(dataset), "initial_rows": len(dataset), "history": []}
            dataset.save(self.run_dir / "dataset")
            atomic.write_json(self.run_dir / STATE_FILE, state)
        run = wandb.init(
            project=self.wandb_project,
            name=self.run_dir.name,
            dir=str(self.run_dir.resolve()),
            group="pets",
            mode="offline" if self.wandb_offline else "online",
            config=self.config_dict(),
            reinit="finish_previous",
        )
        newest = (
            dataset.data[state["dataset_rows"] - self.episode_steps :] if state["finished_trials"] else dataset.data
        )
        try:
            for trial in range(state["finished_trials"], self.trials):
                start = time.perf_counter()
                metrics = {"trial": trial}
                if self.module is not None:  # how well the last model predicts the data it has not seen
                    metrics.update({f"new_data/{k}": v for k, v in dataset_metrics(self.module.model, newest).items()})
                if self.module is None or self.training.mode == "full":
                    self.module, epochs = self.new_module(trial), self.training.epochs
                else:
                    epochs = self.training.incremental_epochs
                self.fit(self.module, dataset, epochs, trial)
                metrics.update(
                    {f"train_data/{k}": v for k, v in dataset_metrics(self.module.model, dataset.data).items()}
                )
                reward, rows = self.episode(self.module, trial)
                dataset, newest = dataset.concat(rows), rows.data
                metrics.update(reward=reward, rows=len(dataset), seconds=time.perf_counter() - start)
                self.save_trial(dataset, state, metrics)
                x = dataset.data["obs"][:, 0].numpy()
                figure = wandb.Image(str(self.run_dir / "pets_curve.png"))
                run.log(
                    {**metrics, f"data/{self.task.obs_names[0]}": wandb.Histogram(x), "pets_curve": figure}, step=trial
                )
                print(self.describe(metrics), flush=True)
        finally:
            run.finish()
            wandb.teardown()  # see objmm.cli._finish_wandb
        return state

    def save_trial(self, dataset: TransitionDataset, state: dict, metrics: dict) -> None:
        """Dataset, model, then state: a kill between them leaves state at the previous trial,
        and resume cuts the dataset back to `dataset_rows`."""
        dataset.save(self.run_dir / "dataset")
        atomic.write_atomically(self.run_dir / "model.pt", lambda tmp: torch.save(self.module.state_dict(), tmp))
        state["history"].append(metrics)
        state["finished_trials"] = metrics["trial"] + 1
        state["dataset_rows"] = len(dataset)
        atomic.write_json(self.run_dir / STATE_FILE, state)
        history = state["history"]
        plot_trials(
            [h["trial"] for h in history],
            [h["reward"] for h in history],
            [h.get("new_data/nll", h.get("new_data/mse", np.nan)) for h in history],
            [h.get("train_data/nll", h.get("train_data/mse")) for h in history],
            self.run_dir / "pets_curve.png",
            title=f"PETS {self.env_id}",
        )

    def describe(self, m: dict) -> str:
        loss = "nll" if self.model_config.probabilistic else "mse"
        new = f"{m[f'new_data/{loss}']:.3f}" if f"new_data/{loss}" in m else "-"
        return (
            f"trial {m['trial'] + 1}/{self.trials}: reward {m['reward']:.1f}, {loss} on new data {new}, "
            f"on train data {m[f'train_data/{loss}']:.3f}, {m['rows']} rows, {m['seconds']:.0f} s"
        )

    def config_dict(self) -> dict:
        return {
            "env_id": self.env_id,
            "trials": self.trials,
            "seed": self.seed,
            "initial_data": self.initial_data,
            "model": asdict(self.model_config),
            "objective": repr(self.objective),
            "training": asdict(self.training),
            "cem": asdict(self.cem),
            "episode_steps": self.episode_steps,
            "device": self.device,
        }


def pets(
    env_id: str = "objmm/PETSCartpole-v0",
    run_dir: str = "runs/pets",
    trials: int = 15,
    seed: int = 0,
    initial_data: str = "random:1x200",
    model: ModelConfig = ModelConfig(),
    objective: Objective | None = None,
    training: TrainingConfig = TrainingConfig(),
    cem: CEMConfig = CEMConfig(),
    episode_steps: int | None = None,
    device: str = "cpu",
    env_kwargs: dict | None = None,
    wandb_project: str = "objmm",
    wandb_offline: bool = True,
    resume: bool = False,
) -> None:
    """Run PETS: random initial data, then `trials` rounds of (train model, one MPC episode).

    Args:
        env_id: the objmm env.
        run_dir: where the dataset, model, state.json, figure and W&B run go.
        trials: MPC episodes to collect after the initial data.
        initial_data: dataset source for the initial data, e.g. `random:2000x25` (Table 1 cartpole).
        model: the ensemble (PE by default).
        objective: the training loss (default: NLL for probabilistic models, MSE otherwise).
        training: full re-training from scratch each trial, or incremental fine-tuning.
        cem: the planner's settings.
        episode_steps: steps of each MPC episode (default: the task's, 200 cartpole, 1000 half cheetah).
        resume: go on from the last finished trial saved in run_dir.
    """
    PETSRun(
        Path(run_dir),
        env_id,
        trials,
        seed,
        initial_data,
        model,
        objective,
        training,
        cem,
        episode_steps,
        device,
        dict(env_kwargs or {}),
        wandb_project,
        wandb_offline,
    ).run(resume=resume)
