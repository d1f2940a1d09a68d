"""Figures, written atomically (a temporary file renamed into place)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

from objmm import atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure_atomically(fig, path: Path) -> Path:
    try:
        return atomic.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_reward_and_nll(
    reward_epochs: Sequence[int],
    reward_mean: Sequence[float],
    reward_std: Sequence[float],
    nll_epochs: Sequence[int],
    nll: Sequence[float],
    path: Path,
    nll_label: str = "validation NLL",
    title: str = "",
) -> Path:
    """Episode reward (mean ± std) and validation NLL against training epoch (the paper's Fig. 4)."""
    fig, ax_reward = plt.subplots(figsize=(6.4, 4.0))
    mean = list(reward_mean)
    low = [m - s for m, s in zip(mean, reward_std, strict=True)]
    high = [m + s for m, s in zip(mean, reward_std, strict=True)]
    ax_reward.plot(reward_epochs, mean, "o-", color="tab:blue", label="episode reward")
    ax_reward.fill_between(reward_epochs, low, high, color="tab:blue", alpha=0.2)
    ax_reward.set_xlabel("training epoch")
    ax_reward.set_ylabel("episode reward", color="tab:blue")
    ax_nll = ax_reward.twinx()
    ax_nll.plot(nll_epochs, nll, "-", color="tab:red", label=nll_label)
    ax_nll.set_ylabel(nll_label, color="tab:red")
    if title:
        ax_reward.set_title(title)
    return save_figure_atomically(fig, path)


def plot_trials(
    trials: Sequence[int],
    reward: Sequence[float],
    nll_new_data: Sequence[float],
    nll_train_data: Sequence[float],
    path: Path,
    title: str = "",
) -> Path:
    """PETS learning curve: episode reward and model NLL per trial (the paper's Fig. 11)."""
    fig, ax_reward = plt.subplots(figsize=(6.4, 4.0))
    trial_numbers = [t + 1 for t in trials]
    ax_reward.plot(trial_numbers, reward, "o-", color="tab:blue")
    ax_reward.set_xlabel("trial")
    ax_reward.set_ylabel("episode reward", color="tab:blue")
    ax_nll = ax_reward.twinx()
    ax_nll.plot(trial_numbers, nll_new_data, "s--", color="tab:red", label="on the new trial's data (before training)")
    ax_nll.plot(trial_numbers, nll_train_data, "-", color="tab:orange", label="on the training data")
    ax_nll.set_ylabel("model NLL (symlog)", color="tab:red")
    ax_nll.set_yscale("symlog")  # a model meeting new states can be off by 1000x; keep the rest readable
    ax_nll.legend(loc="center right", fontsize="small")
    if title:
        ax_reward.set_title(title)
    return save_figure_atomically(fig, path)
