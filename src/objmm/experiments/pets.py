"""`objmm pets`: the PETS online loop (Chua et al. 2018), in plain Python around `Trainer.fit`.

Initial data: `data.train` (PETS: one random-action rollout of trial length, `random:1x200` on the
cartpole). Then per trial: measure the last model on the data it has not seen (the newest
episode), train a model (from scratch, or go on training it: `pets.training`) on the 0.9 split of
every episode's rows, measure it on that split, on the held-out 0.1 (`val`) and on any
`data.val_sets`, run one CEM-MPC episode in the real env and append it to the dataset. After every
trial the run directory holds the dataset, the trial's model (`models/trial_NN.pt`), `state.json`
(every trial's metrics) and `pets_curve.png`, each written atomically; the same command again (or
`objmm pets --resume RUN_DIR`) goes on from the last finished trial, nothing lost or repeated.

    objmm pets --config configs/pets/cartpole.yaml
    objmm pets --resume runs/pets_cartpole --pets.trials 20
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from matplotlib.ticker import MaxNLocator

from objmm import atomic
from objmm.data import TransitionDataset
from objmm.envs import get_task
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.framework import ExperimentRun, run_experiment
from objmm.experiments.pets_files import STATE_FILE, load_state, model_path
from objmm.models import StackedDynamics
from objmm.planning import CEMConfig, CEMPlanner, collect_episodes
from objmm.plots import clip_outliers, legend_below, plt, save_figure_atomically
from objmm.progress import EpochProgress, episode_progress
from objmm.seeding import derive_seed
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import load_model, save_model
from objmm.training.trainer import INNER_FIT, inner_fit

#: the settings a resumed run may change: its length, where it is and runs, and how it is logged
MAY_CHANGE = ("pets.trials", "pets.run_dir", "trainer.logger", "trainer.accelerator", "trainer.devices")


@dataclass
class PETSSettings:
    """The `pets:` section.

    Args:
        run_dir: where the dataset, the models, state.json and the figure go.
        trials: MPC episodes to collect after the initial data.
        training: `full`: every trial trains a new model from scratch for `trainer.max_epochs`
            (Table 1, cartpole); `incremental`: the first trial trains for `trainer.max_epochs`, each
            later one goes on training the same model for `incremental_epochs` (Table 1, half cheetah).
        incremental_epochs: epochs of each later trial in `incremental` training.
        episode_steps: steps of each MPC episode (default: the task's, cartpole 200, half cheetah 1000).
        cem: the planner's settings (Table 1: cartpole 25/400/40/5, half cheetah 30/500/50/5).
    """

    run_dir: str = "runs/pets"
    trials: int = 15
    training: Literal["full", "incremental"] = "full"
    incremental_epochs: int = 10
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=CEMConfig)

    def __post_init__(self):
        require_at_least_one(
            "pets", trials=self.trials, incremental_epochs=self.incremental_epochs, episode_steps=self.episode_steps
        )


def fit_times(metrics: dict, seconds: float, trainer) -> None:
    """A trial's fit time in `metrics`, split as `benchmarks/bench_stacked_pets.py` projects the
    paper's runs from it: `seconds/fit_step`, the steady seconds per optimiser step (after the first
    epoch), and `seconds/fit_fixed`, the rest (the fit's set-up, the first epoch's extra)."""
    steps = max(trainer.global_step, 1)
    clock = next((c for c in trainer.callbacks if isinstance(c, EpochProgress)), None)
    per_step = clock.steady_step_seconds if clock is not None and clock.steady_step_seconds else seconds / steps
    metrics.update(
        {"seconds/fit": seconds, "seconds/fit_step": per_step, "seconds/fit_fixed": seconds - steps * per_step}
    )


class PETSRun(ExperimentRun):
    section, settings_class, resume_file, out_setting = "pets", PETSSettings, STATE_FILE, "run_dir"
    settings: PETSSettings

    def __init__(self, cli):
        super().__init__(cli)
        self.run_dir = self.out
        self.template: DynamicsModule = cli.model  # never trained: each new model is a fresh copy
        self.datamodule: TransitionDataModule = cli.datamodule
        self.task = get_task(self.env["id"])
        self.steps = self.settings.episode_steps or self.task.episode_steps
        self.module: DynamicsModule | None = None
        #: the metric the progress lines and the figure show: NLL for probabilistic models, else MSE
        self.loss = "nll" if self.template.model.probabilistic else "mse"
        #: draw pets_curve.png at every trial's save (a stack of K runs draws each run's at its end:
        #: K figures a trial, ~0.2 s each, would be the stack's serial cost)
        self.curve_each_trial = True

    def interrupted(self, command: str) -> str:
        return f"resume with: objmm pets --resume {self.run_dir}"

    # ----------------------------------------------------------------- pieces of a trial
    def new_module(self, trial: int) -> DynamicsModule:
        """A fresh copy of the template, its weights drawn from the trial's own seed."""
        module = copy.deepcopy(self.template)
        module.model.reset_parameters(torch.Generator().manual_seed(derive_seed(self.seed, "model", trial)))
        return module

    def training_data(self, trial: int) -> TransitionDataModule:
        """The trial's training data: the 0.9 of every episode's rows (`split: rows`), so every trial's
        data is trained on; the trial's own bootstrap (`fit_index`)."""
        datamodule = self.datamodule.with_dataset(self.dataset, fit_index=trial, split="rows", val_sets={})
        datamodule.setup("fit")
        return datamodule

    def trainer(self, epochs: int, trial: int):
        prefix = f"  trial {trial + 1}/{self.settings.trials}: "
        return self.cli.instantiate_trainer(max_epochs=epochs, callbacks=[EpochProgress(prefix)], **INNER_FIT)

    def fit(self, datamodule: TransitionDataModule, epochs: int, trial: int, metrics: dict) -> float:
        """Train the trial's model; its last epoch's mean training loss (its time into `metrics`)."""
        trainer = self.trainer(epochs, trial)
        start = time.perf_counter()
        inner_fit(trainer, self.module, datamodule=datamodule)
        fit_times(metrics, time.perf_counter() - start, trainer)
        self.module.to(self.device)
        return float(trainer.callback_metrics.get("train/loss", float("nan")))

    def metrics(self, name: str, dataset: TransitionDataset) -> dict[str, float]:
        data = self.datamodule
        values = dataset_metrics(
            self.module.model, dataset, self.module.objective, data.val_batches, data.val_batch_size, self.seed
        )
        return {f"{name}/{key}": value for key, value in values.items()}

    def episode(self, trial: int, metrics: dict) -> tuple[float, TransitionDataset]:
        """The trial's CEM-MPC episode in the real env: its reward and rows (its planner's seconds
        into `metrics`)."""
        return episodes([self], trial, [metrics])[0]

    # ----------------------------------------------------------------- start or resume
    def prepare(self) -> None:
        """A run in `run_dir` goes on (its settings checked, its data and last model read); a new one
        starts from its initial data (checked)."""
        if (self.run_dir / STATE_FILE).exists():
            self.state = load_state(self.run_dir)
            self.check_saved_config(MAY_CHANGE)
            dataset = TransitionDataset.load(self.run_dir / "dataset")
            if len(dataset) < self.state["dataset_rows"]:
                raise ObjmmError(
                    f"{self.run_dir / 'dataset'} has {len(dataset)} rows, state.json {self.state['dataset_rows']}"
                )
            self.dataset = dataset.head(self.state["dataset_rows"])
            if self.state["finished_trials"]:  # the last model: the next trial measures it on the newest data
                self.module, _ = load_model(model_path(self.run_dir, self.state["finished_trials"] - 1), self.device)
            self.trials_left = self.settings.trials - self.state["finished_trials"]
            return
        self.state = None
        dataset = self.datamodule.load(self.datamodule.train_source, "initial")
        if len(dataset) < 2:
            raise ObjmmError(f"data.train {self.datamodule.train_source!r} has {len(dataset)} rows; PETS needs 2")
        if not dataset.has_trajectories():  # its held-out rows are a share of each episode: none of one row
            raise ObjmmError(
                f"data.train {self.datamodule.train_source!r} is one-step rows, not trajectories; PETS starts "
                "from rollouts (random:1x200, babbling:20x10, a saved run's dataset)"
            )
        dataset.metadata.update(source="pets", initial_data=self.datamodule.train_source)
        self.dataset, self.trials_left = dataset, self.settings.trials

    def log_config(self) -> None:
        if self.trials_left > 0:  # a finished run asked again opens no empty W&B run
            super().log_config()

    def start(self) -> tuple[dict, TransitionDataset]:
        """The state and dataset the loop goes on from; a new run writes its first ones (its config is
        written by now, after its settings and initial data were accepted)."""
        if self.state is not None:
            return self.state, self.dataset
        state = {
            "finished_trials": 0,
            "dataset_rows": len(self.dataset),
            "initial_rows": len(self.dataset),
            "history": [],
        }
        self.dataset.save(self.run_dir / "dataset")
        atomic.write_json(self.run_dir / STATE_FILE, state)
        return state, self.dataset

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict:
        self.begin()
        for trial in range(self.state["finished_trials"], self.settings.trials):
            self.run_trial(trial)
        return self.end()

    def begin(self) -> None:
        """What the loop goes on from: state, dataset, the extra val sets, and the newest episode
        (the data a resumed run's last model has not seen)."""
        self.state, self.dataset = self.start()
        self.extra = {name: self.datamodule.load(source, name) for name, source in self.datamodule.val_sources.items()}
        self.newest = self.newest_episode(self.dataset)

    def run_trial(self, trial: int) -> None:
        """One trial: measure the last model on the new data, train, measure, run an episode, save.
        The trial's model initialisation, bootstrap and planner samples each come from a seed of the
        trial's own: a resumed run repeats an uninterrupted one, in full and incremental training.
        (Stacked runs, `pets_stacked`, go through the same pieces, training and planning K at once.)"""
        start = time.perf_counter()
        metrics, epochs = self.open_trial(trial)
        datamodule = self.training_data(trial)
        self.measure(metrics, self.fit(datamodule, epochs, trial, metrics), datamodule)
        planned = time.perf_counter()
        reward, rows = self.episode(trial, metrics)
        self.close_trial(metrics, reward, rows, len(datamodule.train_set), (start, planned, time.perf_counter()))

    def open_trial(self, trial: int) -> tuple[dict, int]:
        """The trial's first metrics (the last model on the data it has not seen) and its model: a new
        one (every trial in full training, the first in incremental), trained for the epochs returned."""
        metrics: dict[str, float] = {"trial": trial}
        if self.module is not None:
            metrics.update(self.metrics("new_data", self.newest))
        if self.module is None or self.settings.training == "full":
            self.module, epochs = self.new_module(trial), self.cli.trainer.max_epochs
        else:
            epochs = self.settings.incremental_epochs
        rows = len(self.dataset)
        print(f"trial {trial + 1}/{self.settings.trials}: training on {rows} rows for {epochs} epochs", flush=True)
        return metrics, epochs

    def measure(self, metrics: dict, train_loss: float, datamodule: TransitionDataModule) -> None:
        """The trained model on its training rows, the held-out rows and every extra val set."""
        metrics["train/loss"] = train_loss
        metrics.update(self.metrics("train_data", datamodule.train_set))
        metrics.update(self.metrics("val", datamodule.val_datasets["val"]))
        for name, rows in self.extra.items():
            metrics.update(self.metrics(name, rows))

    def close_trial(
        self, metrics: dict, reward: float, rows: TransitionDataset, train_rows: int, times: tuple[float, float, float]
    ) -> None:
        """The episode's rows join the dataset; the trial is saved (`save_trial`) and printed. `times`:
        when the trial started, its episode started and its episode ended (in a stack, the K runs'
        shared episode: its time must not count the saves of the runs closed before this one)."""
        start, planned, done = times
        trained_rows = len(self.dataset)
        self.newest, self.dataset = rows, self.dataset.concat(rows)
        metrics.update({"reward/mean": reward, "rows": len(self.dataset), "seconds": done - start})
        metrics.update({"seconds/training": planned - start, "seconds/episode": done - planned})
        self.save_trial(self.dataset, self.state, metrics, trained_rows, train_rows)
        print(self.describe(metrics), flush=True)

    def end(self) -> dict:
        print(
            f"pets: {self.state['finished_trials']} trials in {self.run_dir}: {STATE_FILE}, models/, dataset/, "
            f"pets_curve.png"
            + (f"; W&B run in {self.logger.experiment.dir}" if self.logger and self.trials_left > 0 else "")
        )
        return self.state

    def newest_episode(self, dataset: TransitionDataset) -> TransitionDataset:
        last = dataset.data["episode"] == dataset.data["episode"].max()
        return TransitionDataset(dataset.data[last], dict(dataset.metadata))

    def save_trial(self, dataset: TransitionDataset, state: dict, metrics: dict, trained_rows: int, train_rows: int):
        """Dataset, the trial's own model file, the learning curve (unless `curve_each_trial` is off),
        then state: a kill between them leaves state at the previous trial, whose model keeps its own
        file; resume cuts the dataset back to `dataset_rows` and draws the curve again. The seconds
        this took, all but state.json itself, go into `metrics` as `seconds/save`."""
        start = time.perf_counter()
        trial = metrics["trial"]
        dataset.save(self.run_dir / "dataset")
        save_model(
            model_path(self.run_dir, trial), self.module, trial=trial, dataset_rows=trained_rows, train_rows=train_rows
        )
        state["history"].append(metrics)
        state["finished_trials"] = trial + 1
        state["dataset_rows"] = len(dataset)
        figure = self.draw_curve() if self.curve_each_trial else None
        metrics["seconds/save"] = time.perf_counter() - start
        atomic.write_json(self.run_dir / STATE_FILE, state)
        if self.logger:
            import wandb

            x = dataset.data["obs"][:, 0].numpy()
            self.logger.log_metrics(metrics, step=trial)
            logged = {f"data/{self.task.obs_names[0]}": wandb.Histogram(x)}
            self.logger.experiment.log(logged | ({"pets_curve": wandb.Image(str(figure))} if figure else {}))

    def draw_curve(self) -> Path:
        """`pets_curve.png` (and its PDF) from the trials in state.json's history."""
        history, loss = self.state["history"], self.loss
        figure = trials_figure(
            [h["trial"] for h in history],
            [h["reward/mean"] for h in history],
            [h.get(f"new_data/{loss}", float("nan")) for h in history],
            [h[f"train_data/{loss}"] for h in history],
            title=f"{self.task.name}: episode reward and model {loss.upper()} per trial",
        )
        return save_figure_atomically(figure, self.run_dir / "pets_curve.png")

    def describe(self, m: dict) -> str:
        loss = self.loss
        new = f"{m[f'new_data/{loss}']:.3f}" if f"new_data/{loss}" in m else "-"
        return (
            f"trial {m['trial'] + 1}/{self.settings.trials}: reward {m['reward/mean']:.1f}, {loss} on new data {new}, "
            f"on train data {m[f'train_data/{loss}']:.3f}, on held-out data {m[f'val/{loss}']:.3f}, "
            f"{m['rows']} rows, {m['seconds']:.0f} s ({m['seconds/episode']:.0f} s the episode)"
        )


def episodes(runs: Sequence[PETSRun], trial: int, metrics: Sequence[dict]) -> list[tuple[float, TransitionDataset]]:
    """The trial's episode of each of K runs of one config (K = 1: a run alone), planned in one CEM
    call per step through a stack of their models (`StackedDynamics`, in which a model predicts as
    it does in a stack of any K); run k's planner samples and start state come from run k's own seeds,
    so each run's episode is the one it has alone. Each run's reward and rows; into each run's
    `metrics`, the planner's seconds at the first step (`seconds/planning_first`: a CUDA graph's
    capture, a compile) and at the others together (`seconds/planning`), which the K runs share."""
    first = runs[0]
    stack = StackedDynamics([run.module.model.eval() for run in runs]).to(first.device)
    planner = CEMPlanner.for_dynamics(
        first.task, stack.predict_next, first.settings.cem, first.env["kwargs"], first.device
    )
    planner.seed_noise([derive_seed(run.seed, "planner", trial) for run in runs])
    what = "episode" if len(runs) == 1 else f"{len(runs)} episodes"
    record = collect_episodes(
        first.env["id"],
        planner,
        len(runs),
        seed=[derive_seed(run.seed, "episode", trial) for run in runs],
        steps=first.steps,
        device=first.device,
        progress=episode_progress(f"  trial {trial + 1}/{first.settings.trials}: {what} "),
        **first.env["kwargs"],
    )
    for run_metrics in metrics:
        run_metrics.update(
            {"seconds/planning_first": record.policy_first_seconds, "seconds/planning": record.policy_seconds}
        )
    one = lambda x, k: x[k : k + 1]  # noqa: E731 (episode k of [K, T, ...])
    return [
        (
            float(record.returns[k]),
            TransitionDataset.from_trajectories(
                first.env["id"], one(record.obs, k), one(record.actions, k), one(record.next_obs, k)
            ),
        )
        for k in range(len(runs))
    ]


def trials_figure(
    trials: Sequence[int],
    reward: Sequence[float],
    nll_new_data: Sequence[float],
    nll_train_data: Sequence[float],
    title: str = "",
):
    """PETS learning curve: episode reward and model NLL per trial (the paper's Fig. 11)."""
    fig, ax_reward = plt.subplots(figsize=(6.4, 4.0))
    trial_numbers = [t + 1 for t in trials]
    handles = ax_reward.plot(trial_numbers, reward, "o-", color="tab:blue", label="episode reward")
    ax_reward.set_xlabel("trial")
    ax_reward.set_ylabel("episode reward", color="tab:blue")
    ax_reward.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_nll = ax_reward.twinx()
    handles += ax_nll.plot(
        trial_numbers, nll_new_data, "s--", color="tab:red", label="NLL on the trial's new data (before training)"
    )
    handles += ax_nll.plot(trial_numbers, nll_train_data, "-", color="tab:orange", label="NLL on the training data")
    ax_nll.set_ylabel("model NLL", color="tab:red")
    clip_outliers(ax_nll, trial_numbers, [*nll_new_data], [*nll_train_data])
    legend_below(ax_reward, handles)
    if title:
        ax_reward.set_title(title, fontsize="medium")
    return fig


def main(argv: list[str]) -> None:
    run_experiment("pets", __doc__.splitlines()[0], argv, PETSRun)
