"""`objmm fit-sweep`: M fits per model type, reward and validation NLL against epoch (Fig. 4-5).

    objmm fit-sweep --config configs/fit-sweep/cartpole.yaml

The config is a fit config (`env`, `model`, `data` with its `val_sets`, `trainer` with an
`EpisodeRewardCallback`, `seed_everything`) plus a `sweep:` section (seeds = the M runs, model
types, out). Each run is an ordinary `objmm fit` (W&B run `<TYPE>_s<SEED>`, grouped by the sweep)
that keeps its checkpoints in `<out>/<run>/checkpoints/` and its per-epoch rewards and validation
metrics in `<out>/<run>/history.json`. The same command again skips finished runs and resumes
the others from their last checkpoint. At the end, `training_study.png` (one column per type: the
mean reward over the M runs, then every validation set's NLL, MSE for deterministic types, with
the epochs of best mean reward and best mean validation loss marked) and `training_study.json`
(those epochs and values per type).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments.framework import run_experiment
from objmm.experiments.sweeps import (
    SweepIndex,
    SweepRun,
    SweepSettings,
    parsed_config,
    run_configs,
    type_of_run,
    with_wandb,
    write_config,
)
from objmm.plots import METRIC_WORDS, clip_outliers, plt, save_figure_atomically

FIGURE = "training_study.png"
SUMMARY = "training_study.json"
#: the class paths of the reward callback, whose history the study reads
REWARD_CALLBACKS = ("objmm.training.EpisodeRewardCallback", "objmm.training.reward_callback.EpisodeRewardCallback")
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"


def fit_runs(base: dict, sweep: SweepSettings) -> list[tuple[str, dict]]:
    """Every run's fit config: its history and checkpoints in `<out>/<run>/`, and a W&B run id of its
    own that a resumed run keeps."""
    callbacks = base["trainer"].get("callbacks") or []
    if not any(c.get("class_path") in REWARD_CALLBACKS for c in callbacks):
        raise ObjmmError("fit-sweep needs an EpisodeRewardCallback in trainer.callbacks (the reward per epoch)")
    out = Path(sweep.out)
    tag = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:6]
    runs = run_configs(base, sweep)
    for name, config in runs:
        where = out / name
        changed = []
        for callback in callbacks:
            init = dict(callback.get("init_args") or {})
            if callback["class_path"] in REWARD_CALLBACKS:
                init["history_path"] = str(where / "history.json")
            elif callback["class_path"] == CHECKPOINT:
                continue  # replaced below: one of ours, in the run's folder
            changed.append({**callback, "init_args": init})
        changed.append(
            {"class_path": CHECKPOINT, "init_args": {"dirpath": str(where / "checkpoints"), "save_last": True}}
        )
        config["trainer"] = {**config["trainer"], "callbacks": changed}
    return [(name, with_wandb(config, id=f"{name}-{tag}", resume="allow")) for name, config in runs]


def run_one(name: str, config_path: str, where: str) -> dict:
    """One fit, started, resumed from its last checkpoint, or skipped when its history is written."""
    from objmm.experiments import fit
    from objmm.experiments.framework import finish_wandb

    history, last = Path(where) / "history.json", Path(where) / "checkpoints" / "last.ckpt"
    if not history.exists():
        resume = ["--ckpt_path", str(last)] if last.exists() else []
        try:
            fit.main(["fit", "--config", config_path, *resume])
        finally:
            finish_wandb(exit_code=0)
    if not history.exists():
        raise ObjmmError(f"fit-sweep: run {name} ended without {history}")
    return {"run": name, "history": str(history)}


def curves(histories: list[dict], sets: list[str], loss: str) -> dict:
    """Mean (and range) over runs of the reward and of each set's loss, per epoch."""
    reward_epochs = sorted({r["epoch"] for h in histories for r in h["reward"]})
    rewards = np.array([[next((r["mean"] for r in h["reward"] if r["epoch"] == e), np.nan) for e in reward_epochs]
                        for h in histories])  # fmt: skip
    epochs = sorted({m["epoch"] for h in histories for m in h["metrics"]})
    losses = {
        s: np.array(
            [
                [next((m.get(f"{s}/{loss}", np.nan) for m in h["metrics"] if m["epoch"] == e), np.nan) for e in epochs]
                for h in histories
            ]
        )  # fmt: skip
        for s in sets
    }
    return {"reward_epochs": reward_epochs, "rewards": rewards, "epochs": epochs, "losses": losses}


def summarise(curve: dict, loss: str) -> dict:
    mean_reward = np.nanmean(curve["rewards"], axis=0)
    mean_val = np.nanmean(curve["losses"]["val"], axis=0)
    best_r, best_v = int(np.nanargmax(mean_reward)), int(np.nanargmin(mean_val))
    return {
        "runs": int(curve["rewards"].shape[0]),
        "best_reward_epoch": curve["reward_epochs"][best_r],
        "best_mean_reward": float(mean_reward[best_r]),
        f"best_val_{loss}_epoch": curve["epochs"][best_v],
        f"best_mean_val_{loss}": float(mean_val[best_v]),
        "last_mean_reward": float(mean_reward[-1]),
    }


def training_study_figure(studied: dict, sets: Sequence[str], summary: dict):
    """Fig. 4-5's layout: one column per model type; on top the mean episode reward over its runs
    (the band: their range), below each validation set's loss (NLL, MSE for deterministic types),
    mean over the runs; the epoch of best mean reward (dashed) and of best mean `val` loss (dotted)."""
    kinds = list(studied)
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 6.4), squeeze=False, sharex="col")
    for j, kind in enumerate(kinds):
        c, s = studied[kind], summary[kind]
        loss = c["loss"]
        top, bottom = axes[0][j], axes[1][j]
        rewards = c["rewards"]
        top.plot(c["reward_epochs"], np.nanmean(rewards, 0), "o-", color="tab:green", markersize=3)
        top.fill_between(c["reward_epochs"], np.nanmin(rewards, 0), np.nanmax(rewards, 0), color="tab:green", alpha=0.2)
        top.set_title(f"{kind} ({s['runs']} runs)")
        for name in sets:
            bottom.plot(c["epochs"], np.nanmean(c["losses"][name], 0), label=name)
        series = [np.nanmean(c["losses"][name], 0) for name in sets]
        clip_outliers(bottom, c["epochs"], *series)
        for ax in (top, bottom):
            ax.axvline(s["best_reward_epoch"], color="tab:green", linestyle="--", linewidth=1)
            ax.axvline(s[f"best_val_{loss}_epoch"], color="tab:blue", linestyle=":", linewidth=1.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_xlabel("epoch")
        bottom.set_ylabel(f"{METRIC_WORDS.get(loss, loss)} (mean over runs)")
        bottom.legend(fontsize="x-small")
        if j == 0:
            top.set_ylabel("episode reward (mean over runs)")
    fig.suptitle("reward and validation loss per epoch; dashed: best mean reward, dotted: best mean val loss")
    fig.tight_layout()
    return fig


class FitSweepRun(SweepRun):
    command = "fit-sweep"

    def prepare(self) -> None:
        self.runs = fit_runs(parsed_config(self.cli), self.settings)
        self.index = SweepIndex(self.out, [name for name, _ in self.runs])

    def run(self) -> dict:
        out, runs, index = self.out, self.runs, self.index
        arguments = [(name, str(write_config(out, name, config)), str(out / name)) for name, config in runs]

        def land(args: tuple, entry: dict) -> None:
            index.add(entry)
            print(f"fit-sweep: run {entry['run']} done; {len(index.entries)}/{len(runs)} runs", flush=True)

        self.run_all(run_one, arguments, land)
        sets = ["val", *self.cli.datamodule.val_sources]
        by_type: dict[str, dict] = {}
        for name, config in runs:
            kind = type_of_run(name)
            loss = "nll" if config["model"].get("probabilistic", True) else "mse"
            history = json.loads(Path(index.entries[name]["history"]).read_text())
            by_type.setdefault(kind, {"loss": loss, "histories": []})["histories"].append(history)
        studied = {kind: {**t, **curves(t["histories"], sets, t["loss"])} for kind, t in by_type.items()}
        summary = {kind: summarise(c, c["loss"]) for kind, c in studied.items()}
        atomic.write_json(out / SUMMARY, summary)
        figure = save_figure_atomically(training_study_figure(studied, sets, summary), out / FIGURE)
        for kind, s in summary.items():
            loss = studied[kind]["loss"]
            print(
                f"  {kind}: best mean reward {s['best_mean_reward']:.1f} at epoch {s['best_reward_epoch']}, best mean "
                f"val {loss} {s[f'best_mean_val_{loss}']:.4g} at epoch {s[f'best_val_{loss}_epoch']} ({s['runs']} runs)"
            )
        print(f"fit-sweep: {len(runs)} runs -> {out / SUMMARY}, {figure}")
        return summary


def main(argv: list[str]) -> None:
    run_experiment("fit-sweep", __doc__.splitlines()[0], argv, FitSweepRun)
