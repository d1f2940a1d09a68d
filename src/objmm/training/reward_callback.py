"""A Lightning Callback that measures the controller's real episode reward while a model trains."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from matplotlib.ticker import MaxNLocator

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.planning import CEMConfig, CEMPlanner, collect_episodes
from objmm.plots import METRIC_WORDS, legend_below, metric_label, plt, save_figure_atomically
from objmm.progress import episode_progress
from objmm.seeding import derive_seed

#: logged metrics that are not a validation set's
NOT_VALIDATION = ("train/", "reward/", "summary/", "epoch")


def run_directory(trainer: L.Trainer) -> Path:
    """Where a run's own files go: the W&B run's files folder, else the trainer's log dir."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.experiment.dir)
    return Path(trainer.log_dir or trainer.default_root_dir)


class EpisodeRewardCallback(L.Callback):
    """Every `every_n_epochs`, run `episodes` CEM-MPC episodes with the current model in the real env.

    Logs `reward/mean` and `reward/std` beside the validation metrics; remembers the epochs of
    best reward and best `monitor` (validation NLL), logs both at the end of fit and saves a
    figure of reward and `monitor` against epoch in the run directory (and to W&B).

    Args:
        every_n_epochs: evaluate after every n-th epoch (and after the last).
        episodes: real episodes per evaluation, run side by side.
        cem: the planner's settings.
        monitor: the validation metric to remember and plot beside the reward; its best is the
            lowest, or the highest for a log-likelihood (`.../paper_ll...`).
        seed: where the episodes' starts and the planner's samples derive from (default: the run's
            `seed_everything`, as every other random stream of the run).
        env_kwargs: evaluate in an env with these settings instead of the model's own (`env.kwargs`),
            e.g. another cartpole goal (the paper's Fig. 12).
        progress: print the episodes' steps and reward so far while they run.
        history_path: where the per-epoch history goes at the end of fit (JSON: the rewards, every
            validation metric of every epoch, the summary); default `history.json` in the run directory.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        episodes: int = 10,
        cem: CEMConfig | None = None,
        monitor: str = "val/nll",
        seed: int | None = None,
        env_kwargs: dict | None = None,
        figure_name: str = "reward_vs_nll.png",
        progress: bool = True,
        history_path: str | None = None,
    ):
        super().__init__()
        if every_n_epochs < 1 or episodes < 1:
            raise ObjmmError(
                f"EpisodeRewardCallback needs every_n_epochs and episodes >= 1, got {every_n_epochs} and {episodes}"
            )
        self.every_n_epochs, self.episodes, self.cem = every_n_epochs, episodes, cem or CEMConfig()
        self.monitor, self.seed, self.env_kwargs, self.figure_name = (
            monitor,
            seed,
            dict(env_kwargs or {}),
            figure_name,
        )
        self.progress, self.history_path = progress, history_path
        self.reward_history: list[tuple[int, float, float]] = []  # (epoch, mean, std)
        self.monitor_history: list[tuple[int, float]] = []  # (epoch, value)
        self.metrics_history: list[dict[str, float]] = []  # {"epoch": e, every validation metric}
        self.figure_path: Path | None = None

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, pl_module: L.LightningModule, epoch: int = 0, seed: int | None = None) -> np.ndarray:
        """Episode rewards [episodes] of the CEM controller using `pl_module.model`, in the env the
        model was made for (`env.kwargs`), unless this callback was given other env settings; `seed`:
        the run's (default: this callback's, else 0).

        The planner's samples come from its own stream, seeded for this epoch: the same model gives
        the same rewards in an uninterrupted and a resumed fit, and training's
        random state is left as it was."""
        seed = (self.seed or 0) if seed is None else seed
        model = pl_module.model
        env_kwargs = {**pl_module.env_kwargs, **self.env_kwargs}
        planner = CEMPlanner.for_dynamics(model.task, model.predict_next, self.cem, env_kwargs, pl_module.device)
        planner.seed_noise(derive_seed(seed, "planner", epoch))
        was_training = model.training
        model.eval()
        try:
            record = collect_episodes(
                model.task.env_id,
                planner,
                self.episodes,
                seed=seed,
                device=pl_module.device,
                progress=episode_progress(f"epoch {epoch}: episode ") if self.progress else None,
                **env_kwargs,
            )
            return record.returns
        finally:
            model.train(was_training)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.monitor in trainer.callback_metrics:
            self.monitor_history.append((epoch, float(trainer.callback_metrics[self.monitor])))
        # validation ran before this hook: this epoch's metrics of every validation set
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith(NOT_VALIDATION)}
        if metrics:
            self.metrics_history.append({"epoch": epoch, **metrics})
        last = epoch + 1 == trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        # the callback's own seed, or the run's: `seed_everything`, which the datamodule carries
        seed = self.seed if self.seed is not None else getattr(trainer.datamodule, "seed", 0)
        rewards = self.evaluate(pl_module, epoch, seed)
        self.reward_history.append((epoch, float(rewards.mean()), float(rewards.std())))
        pl_module.log_dict({"reward/mean": float(rewards.mean()), "reward/std": float(rewards.std())})
        print(f"epoch {epoch}: episode reward {rewards.mean():.1f} ± {rewards.std():.1f} over {self.episodes} episodes")

    # ----------------------------------------------------------------- summary
    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.reward_history:
            epoch, mean, _ = max(self.reward_history, key=lambda row: row[1])
            out.update({"summary/best_reward": mean, "summary/best_reward_epoch": epoch})
        if self.monitor_history:
            best = max if "paper_ll" in self.monitor else min
            epoch, value = best(self.monitor_history, key=lambda row: row[1])
            out.update({"summary/best_monitor": value, "summary/best_monitor_epoch": epoch})
        return out

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        summary = self.summary()
        if not summary or not trainer.is_global_zero:
            return
        history = {
            "reward": [{"epoch": e, "mean": m, "std": s} for e, m, s in self.reward_history],
            "metrics": self.metrics_history,
            "summary": summary,
        }
        atomic.write_json(
            Path(self.history_path) if self.history_path else run_directory(trainer) / "history.json", history
        )
        for logger in trainer.loggers:
            logger.log_metrics(summary, step=trainer.global_step)
        print("  ".join(f"{k.removeprefix('summary/')}={v:.4g}" for k, v in summary.items()))
        if not self.reward_history:
            return
        epochs, means, stds = zip(*self.reward_history, strict=True)
        nll_epochs, nll = zip(*self.monitor_history, strict=True) if self.monitor_history else ((), ())
        task = pl_module.model.task.name.removeprefix("PETS ")  # the env is PETS's; the fit is not
        title = f"A model of the {task} as it trains: episode reward and {metric_label(self.monitor)}"
        # the monitored metric on every other validation set too (fit's `data.val_sets`), dashed
        metric = self.monitor.rpartition("/")[2]
        others = {
            key.rpartition("/")[0]: [(row["epoch"], row[key]) for row in self.metrics_history if key in row]
            for key in sorted({k for row in self.metrics_history for k in row})
            if key.endswith(f"/{metric}") and key != self.monitor
        }
        figure = reward_and_nll_figure(
            epochs, means, stds, nll_epochs, nll, metric=self.monitor, title=title, others=others
        )
        self.figure_path = save_figure_atomically(figure, run_directory(trainer) / self.figure_name)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="reward_vs_nll", images=[str(self.figure_path)])
        print(f"figure: {self.figure_path}")

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        return {
            "reward_history": self.reward_history,
            "monitor_history": self.monitor_history,
            "metrics_history": self.metrics_history,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.reward_history = [tuple(row) for row in state_dict["reward_history"]]
        self.monitor_history = [tuple(row) for row in state_dict["monitor_history"]]
        self.metrics_history = list(state_dict.get("metrics_history", []))


def reward_and_nll_figure(
    reward_epochs: Sequence[int],
    reward_mean: Sequence[float],
    reward_std: Sequence[float],
    nll_epochs: Sequence[int],
    nll: Sequence[float],
    metric: str = "val/nll",
    title: str = "",
    others: dict[str, list[tuple[int, float]]] | None = None,
):
    """Episode reward (mean ± std) and a validation metric against training epoch (the paper's
    Fig. 4), with the epochs of best reward and best metric marked; `others` (validation set ->
    [(epoch, value)]): the same metric on other validation sets, dashed, on the metric's axis."""
    fig, ax_reward = plt.subplots(figsize=(6.4, 4.0))
    mean = list(reward_mean)
    low = [m - s for m, s in zip(mean, reward_std, strict=True)]
    high = [m + s for m, s in zip(mean, reward_std, strict=True)]
    label = metric_label(metric)
    handles = ax_reward.plot(reward_epochs, mean, "o-", color="tab:blue", label="episode reward (mean ± std)")
    ax_reward.fill_between(reward_epochs, low, high, color="tab:blue", alpha=0.2)
    ax_reward.set_xlabel("training epoch")
    ax_reward.set_ylabel("episode reward (higher is better)", color="tab:blue")
    ax_reward.xaxis.set_major_locator(MaxNLocator(integer=True))
    best = max(range(len(mean)), key=mean.__getitem__)
    handles += ax_reward.plot(
        reward_epochs[best],
        mean[best],
        "*",
        color="tab:blue",
        ms=14,
        label=f"best reward (epoch {reward_epochs[best]})",
    )
    ax_nll = ax_reward.twinx()
    handles += ax_nll.plot(nll_epochs, nll, "-", color="tab:red", label=label)
    for i, (name, points) in enumerate(sorted((others or {}).items())):
        if points:
            x, y = zip(*points, strict=True)
            shade = plt.cm.Oranges(0.5 + 0.4 * i / max(1, len(others) - 1))
            handles += ax_nll.plot(x, y, "--", color=shade, label=metric_label(f"{name}/{metric.rpartition('/')[2]}"))
    better = "higher" if "paper_ll" in metric else "lower"
    ax_nll.set_ylabel(f"{label} ({better} is better)", color="tab:red")
    if len(nll):
        values = list(nll)
        pick = max if "paper_ll" in metric else min
        best = pick(range(len(values)), key=values.__getitem__)
        words = METRIC_WORDS.get(metric.rpartition("/")[2], "metric")
        handles += ax_nll.plot(
            nll_epochs[best], values[best], "D", color="tab:red", ms=9, label=f"best {words} (epoch {nll_epochs[best]})"
        )
    legend_below(ax_reward, handles)
    if title:
        ax_reward.set_title(title, fontsize="medium")
    return fig
