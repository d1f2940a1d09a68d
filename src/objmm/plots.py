"""Figures, written atomically (a temporary file renamed into place), readable as they come out:
axes named in words, legends, integer ticks where the axis counts something."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from objmm import atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

METRIC_WORDS = {
    "nll": "NLL",
    "nll_median": "median NLL",
    "nll_batch_median": "NLL (median over batches)",
    "paper_ll": "LL (paper's convention)",
    "paper_ll_batch_median": "LL (paper's convention, median over batches)",
    "mse": "MSE",
    "loss": "training objective",
}


def metric_label(key: str) -> str:
    """`val/nll` -> `NLL on the val set`."""
    where, _, metric = key.rpartition("/")
    words = METRIC_WORDS.get(metric, metric)
    return f"{words} on the {where} set" if where else words


def clip_outliers(ax, x: Sequence[float], *series: Sequence[float]) -> None:
    """Keep the axis on the bulk of the values: a model meeting new states can be off by 100x for
    a trial or two, which would flatten the rest of the curve. Values far above the bulk (beyond the
    upper quartile plus 10 interquartile ranges) are drawn at the top edge as ^ with the largest
    number at that x."""
    values = np.array([v for one in series for v in one], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 4:
        return
    q1, q3 = np.percentile(values, [25, 75])
    top = q3 + 10 * max(q3 - q1, 1.0)
    if values.max() <= top:
        return
    ax.set_ylim(values.min() - 0.05 * (top - values.min()), top)
    for i, xi in enumerate(x):
        above = [one[i] for one in series if np.isfinite(one[i]) and one[i] > top]
        if above:
            ax.plot(xi, top, "^", color="tab:red", clip_on=False)
            ax.annotate(f"{max(above):.3g}", (xi, top), textcoords="offset points", xytext=(4, -10), fontsize="x-small")


def legend_below(ax, handles: list) -> None:
    """One legend for both y axes, under the plot where it hides no data."""
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small", frameon=False)


def save_figure_atomically(fig, path: Path) -> Path:
    try:
        return atomic.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_reward_and_nll(*args, path: Path, **kwargs) -> Path:
    """`reward_and_nll_figure(...)` saved to `path`."""
    return save_figure_atomically(reward_and_nll_figure(*args, **kwargs), path)


def plot_trials(*args, path: Path, **kwargs) -> Path:
    """`trials_figure(...)` saved to `path`."""
    return save_figure_atomically(trials_figure(*args, **kwargs), path)


def reward_and_nll_figure(
    reward_epochs: Sequence[int],
    reward_mean: Sequence[float],
    reward_std: Sequence[float],
    nll_epochs: Sequence[int],
    nll: Sequence[float],
    metric: str = "val/nll",
    title: str = "",
):
    """Episode reward (mean ± std) and a validation metric against training epoch (the paper's
    Fig. 4), with the epochs of best reward and best metric marked."""
    fig, ax_reward = plt.subplots(figsize=(6.4, 4.0))
    mean = list(reward_mean)
    low = [m - s for m, s in zip(mean, reward_std, strict=True)]
    high = [m + s for m, s in zip(mean, reward_std, strict=True)]
    label = metric_label(metric)
    handles = ax_reward.plot(reward_epochs, mean, "o-", color="tab:blue", label="episode reward (mean ± std)")
    ax_reward.fill_between(reward_epochs, low, high, color="tab:blue", alpha=0.2)
    ax_reward.set_xlabel("training epoch")
    ax_reward.set_ylabel("episode reward", color="tab:blue")
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
    ax_nll.set_ylabel(label, color="tab:red")
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


def plot_population(*args, path: Path, **kwargs) -> Path:
    """`population_figure(...)` saved to `path`."""
    return save_figure_atomically(population_figure(*args, **kwargs), path)


def population_figure(
    rows: Sequence[dict],
    datasets: Sequence[str],
    estimators: Sequence[tuple[str, str]],
    correlations: Sequence[dict],
    title: str = "",
):
    """Fig. 3's layout: one panel per dataset (columns), the LL of every model against its mean
    episode reward, with Pearson's and Spearman's rho and their intervals; one row of panels per LL
    estimator (the first is Fig. 3's mean LL, the others Appendix C's medians over batches)."""
    fig, axes = plt.subplots(
        len(estimators), len(datasets), figsize=(4.2 * len(datasets), 3.4 * len(estimators)), squeeze=False
    )
    reward = np.array([row["reward/mean"] for row in rows], dtype=float)
    for i, (metric, mode) in enumerate(estimators):
        for j, name in enumerate(datasets):
            ax = axes[i][j]
            ll = np.array([row.get(f"{name}/{mode}/{metric}", np.nan) for row in rows], dtype=float)
            ax.scatter(ll, reward, s=8, alpha=0.6)
            found = {c["method"]: c for c in correlations if c["dataset"] == name and c["ll"] == f"{mode}/{metric}"}
            text = "\n".join(f"{m}: {c['rho']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]" for m, c in found.items())
            ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", fontsize="x-small")
            finite = ll[np.isfinite(ll)]
            if len(finite) >= 4:  # keep the bulk in view: a diverged model's LL can be off by orders
                low, high = np.percentile(finite, [1, 100])
                ax.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
            batches = "random batches" if mode == "random" else "trajectory batches"
            where = "" if metric == "paper_ll" else f", {batches}"
            ax.set_title(f"{name}{where}", fontsize="small")
            ax.set_xlabel(METRIC_WORDS.get(metric, metric), fontsize="small")
            if j == 0:
                ax.set_ylabel("mean episode reward")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training_study(*args, path: Path, **kwargs) -> Path:
    """`training_study_figure(...)` saved to `path`."""
    return save_figure_atomically(training_study_figure(*args, **kwargs), path)


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


def plot_along_expert(*args, path: Path, **kwargs) -> Path:
    """`along_expert_figure(...)` saved to `path`."""
    return save_figure_atomically(along_expert_figure(*args, **kwargs), path)


def along_expert_figure(
    names: Sequence[str],
    actions: np.ndarray,
    expert_actions: np.ndarray,
    predicted: np.ndarray,
    next_obs: np.ndarray,
    obs_names: Sequence[str],
    title: str = "",
):
    """Fig. 6 / Appendix E: along one expert trajectory, the action each model's planner picks from
    every expert state (top, beside the expert's own), and each model's predicted next state for the
    expert's action (one panel per observation entry, beside the true one)."""
    steps = np.arange(len(expert_actions))
    panels = 1 + next_obs.shape[-1]
    fig, axes = plt.subplots(panels, 1, figsize=(8, 1.9 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, expert_actions[:, 0], color="black", lw=1.2, label="expert")
    for name, acts in zip(names, actions, strict=True):
        ax.plot(steps, acts[:, 0], lw=1, alpha=0.85, label=name)
    ax.set_ylabel("planned action")
    ax.legend(fontsize="x-small", ncol=len(names) + 1, loc="upper right")
    for d in range(next_obs.shape[-1]):
        ax = axes[1 + d][0]
        ax.plot(steps, next_obs[:, d], color="black", lw=1.2, label="true")
        for name, pred in zip(names, predicted, strict=True):
            ax.plot(steps, pred[:, d], lw=1, alpha=0.85, label=name)
        ax.set_ylabel(f"next {obs_names[d] if d < len(obs_names) else d}", fontsize="small")
    axes[-1][0].set_xlabel("step of the expert trajectory")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_attack_path(*args, path: Path, **kwargs) -> Path:
    """`attack_path_figure(...)` saved to `path`."""
    return save_figure_atomically(attack_path_figure(*args, **kwargs), path)


def attack_path_figure(
    generations: Sequence[int],
    lls: Sequence[float],
    rewards: Sequence[float],
    start: tuple[float, float],
    bound: float,
    title="",
):
    """Fig. 7: the best member of each CMA-ES generation (of those with a member within the bound)
    in LL-reward space, from the start model to the end, the generation as colour; the LL bound the
    attack may not cross as a dashed line."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([start[0], *lls], [start[1], *rewards], color="grey", lw=0.8, zorder=1)
    points = ax.scatter(lls, rewards, c=generations, cmap="viridis", s=22, zorder=2)
    ax.scatter([start[0]], [start[1]], marker="*", s=140, color="tab:red", zorder=3, label="start")
    if len(lls):
        ax.scatter([lls[-1]], [rewards[-1]], marker="X", s=90, color="black", zorder=3, label="end")
    ax.axvline(bound, ls="--", color="tab:red", lw=0.8, label="LL bound (the start's)")
    fig.colorbar(points, ax=ax, label="generation")
    ax.set_xlabel("LL (paper's convention) on the validation set")
    ax.set_ylabel("mean episode reward")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def plot_reweight(*args, path: Path, **kwargs) -> Path:
    """`reweight_figure(...)` saved to `path`."""
    return save_figure_atomically(reweight_figure(*args, **kwargs), path)


def reweight_figure(
    sizes: Sequence[int], bounds: Sequence[float], rewards: dict[str, np.ndarray], baseline: str, title=""
):
    """Fig. 8: mean reward per (training-set size S, distance bound eps) cell, one heatmap per
    objective, then each objective's difference to `baseline` (red: better than the baseline)."""
    names = list(rewards)
    others = [n for n in names if n != baseline]
    panels = len(names) + len(others)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    finite = np.concatenate([r[np.isfinite(r)] for r in rewards.values()] or [np.zeros(1)])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    def draw(ax, values, cmap, lo, hi, label):
        image = ax.imshow(values, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes], fontsize="x-small")
        ax.set_yticks(range(len(bounds)), [f"{b:.3g}" for b in bounds], fontsize="x-small")
        ax.set_xlabel("training points S")
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small")
        ax.set_title(label, fontsize="small")
        return image

    for ax, name in zip(axes[0], names, strict=False):
        image = draw(ax, rewards[name], "viridis", vmin, vmax, f"{name}: mean reward")
    fig.colorbar(image, ax=axes[0][len(names) - 1])
    for ax, name in zip(axes[0][len(names) :], others, strict=True):
        diff = rewards[name] - rewards[baseline]
        span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
        image = draw(ax, diff, "RdBu_r", -span or -1, span or 1, f"{name} - {baseline}")
        fig.colorbar(image, ax=ax)
    axes[0][0].set_ylabel("distance bound eps")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
