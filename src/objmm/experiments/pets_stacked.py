"""K PETS runs of one config stepped together: each trial, their models train as one batched network
(`training.stacked`) and their episodes are planned in one CEM call per step (`pets.episodes`).

Each run is an ordinary `objmm pets` run in its own folder (`objmm pets --resume` works on it alone)
and its numbers are those it has alone, to float tolerance: its own data, model seed, bootstrap,
shuffles, optimiser state, planner samples and start states. `objmm pets-sweep` with `sweep.stack: K`
runs its runs K at a time through `run_stacked`. Runs a kill left at different trials (one saved
its trial, the next had not) first catch up alone, then go on together.

W&B holds one run per process, so stacked runs log to their W&B runs after the stack's last trial:
each trial's metrics and the learning curve, in each run's own W&B run. Trials a killed stack left
unlogged are logged by the next start (`wandb_trials` in state.json counts those logged).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from objmm import atomic
from objmm.experiments import pets
from objmm.experiments.framework import finish_wandb, open_experiment
from objmm.experiments.pets import PETSRun, episodes, fit_times
from objmm.experiments.pets_files import STATE_FILE
from objmm.training.stacked import fit_stacked


def open_runs(arguments: Sequence[list[str]]) -> list[PETSRun]:
    """Each `objmm pets` command line's run, parsed, checked and its config saved, not run."""
    return [open_experiment("pets", pets.__doc__.splitlines()[0], argv, PETSRun) for argv in arguments]


def stacked_trial(runs: Sequence[PETSRun], trial: int) -> None:
    """One trial of K runs: each measures its last model, the K models train as one, each measures
    its trained model, the K episodes are planned together, each saves its trial."""
    start = time.perf_counter()
    opened = [run.open_trial(trial) for run in runs]
    datamodules = [run.training_data(trial) for run in runs]
    epochs = opened[0][1]  # one config: every run trains as long
    trainer, fit_start = runs[0].trainer(epochs, trial), time.perf_counter()
    losses = fit_stacked([run.module for run in runs], datamodules, trainer)
    fit_seconds = time.perf_counter() - fit_start  # one fit for the stack: each run records it
    for metrics, _ in opened:
        fit_times(metrics, fit_seconds, trainer)
    for run, (metrics, _), loss, datamodule in zip(runs, opened, losses, datamodules, strict=True):
        run.module.to(run.device)
        run.measure(metrics, loss, datamodule)
    planned = time.perf_counter()
    found = episodes(runs, trial, [metrics for metrics, _ in opened])
    times = (start, planned, time.perf_counter())  # the K runs' shared trial, before any of them saves
    for run, (metrics, _), (reward, rows), datamodule in zip(runs, opened, found, datamodules, strict=True):
        run.close_trial(metrics, reward, rows, len(datamodule.train_set), times)


def log_to_wandb(run: PETSRun, logger, first_unlogged: int) -> None:
    """The run's trials from `first_unlogged` on, its config and its learning curve into its W&B run."""
    state = run.state
    if logger is None or first_unlogged >= state["finished_trials"]:
        return
    import wandb

    run.logger = logger
    run.log_config()
    for metrics in state["history"][first_unlogged:]:
        logger.log_metrics(metrics, step=metrics["trial"])
    logger.experiment.log({"pets_curve": wandb.Image(str(run.run_dir / "pets_curve.png"))})
    finish_wandb(exit_code=0)
    state["wandb_trials"] = state["finished_trials"]
    atomic.write_json(run.run_dir / STATE_FILE, state)


def run_together(runs: Sequence[PETSRun]) -> None:
    """Every run to its `pets.trials`, together where they stand at the same trial."""
    loggers = [run.logger for run in runs]
    for run in runs:
        run.logger = None  # one W&B run per process: each run logs after the loop (log_to_wandb)
        run.curve_each_trial = False  # each run's curve is drawn once, after the loop
        run.begin()
    # what each W&B run holds, kept in state.json from the first trial saved here on (a SIGKILL skips
    # the `finally` below: the next start logs from there); a run that never stacked logged as it went
    unlogged = [run.state.setdefault("wandb_trials", run.state["finished_trials"]) for run in runs]
    try:
        together = max(run.state["finished_trials"] for run in runs)
        for run in runs:  # a kill between two runs' saves left some a trial behind
            for trial in range(run.state["finished_trials"], min(together, run.settings.trials)):
                run.run_trial(trial)
        for trial in range(together, runs[0].settings.trials):
            stacked_trial(runs, trial)
    finally:
        for run, logger, first in zip(runs, loggers, unlogged, strict=True):
            if run.state["history"]:
                run.draw_curve()
            log_to_wandb(run, logger, first)
            run.logger = None  # its W&B run is finished: `end` must not open another
    for run in runs:
        run.end()
