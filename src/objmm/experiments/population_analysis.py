"""What `objmm population` makes of its table: rho of each LL estimator against reward (Fig. 3),
Appendix C's paired change with trajectory batches, the trend line, and Fig. 3 itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from objmm.plots import METRIC_WORDS, plt
from objmm.stats import clustered_correlation, correlation, correlation_change, describe_correlations

#: Fig. 3's LL (the mean over rows) and Appendix C's medians over batches: (metric, batch mode)
ESTIMATORS = (
    ("paper_ll", "random"),
    ("paper_ll_batch_median", "random"),
    ("paper_ll_batch_median", "large"),
    ("paper_ll_batch_median", "trajectory"),
)
#: Appendix C's paired comparisons of the median LL over batches: (batch mode, the mode it is set against)
BATCH_CHANGES = (("trajectory", "random"), ("large", "random"), ("trajectory", "large"))
#: how a figure names each batch mode
BATCH_WORDS = {"random": "random batches", "large": "large batches", "trajectory": "trajectory batches"}


def correlations(
    rows: list[dict], datasets: list[str], batches: list[str], resamples: int, seed: int, paper: dict | None = None
) -> list[dict]:
    """rho of each LL estimator against the mean reward, per dataset, Pearson and Spearman: the
    interval over models (`low`, `high`) and the one clustered by run (`run_low`, `run_high`), and
    the paper's Fig. 3 rho where `paper` names the dataset."""
    reward = [row["reward/mean"] for row in rows]
    runs = [row["run"] for row in rows]
    out = []
    for name in datasets:
        for metric, mode in ESTIMATORS:
            if mode not in batches:
                continue
            ll = [row.get(f"{name}/{mode}/{metric}", float("nan")) for row in rows]
            for method in ("pearson", "spearman"):
                c = correlation(ll, reward, method, resamples=resamples, seed=seed)
                clustered = clustered_correlation(ll, reward, runs, method, resamples=resamples, seed=seed)
                found = {"dataset": name, "ll": f"{mode}/{metric}", **asdict(c)}
                found.update(run_low=clustered.low, run_high=clustered.high, runs=len(set(runs)))
                if paper and name in paper and method == "pearson" and (metric, mode) == ESTIMATORS[0]:
                    found["paper_rho"] = paper[name]
                out.append(found)
    return out


def batch_change(
    rows: list[dict], datasets: list[str], mode_to: str, mode_from: str, resamples: int, seed: int
) -> list[dict]:
    """Appendix C's comparison, paired: per dataset and method, rho with the median LL over
    `mode_to` batches minus rho with the median over `mode_from` batches, on the same models, with
    an interval clustered by run."""
    reward = [row["reward/mean"] for row in rows]
    runs = [row["run"] for row in rows]
    metric = "paper_ll_batch_median"
    out = []
    for name in datasets:
        x_from = [row.get(f"{name}/{mode_from}/{metric}", np.nan) for row in rows]
        x_to = [row.get(f"{name}/{mode_to}/{metric}", np.nan) for row in rows]
        for method in ("pearson", "spearman"):
            change = correlation_change(x_from, x_to, reward, runs, method, resamples=resamples, seed=seed)
            out.append({"dataset": name, "method": method, **asdict(change)})
    return out


def summarise(
    rows: list[dict], datasets: list[str], batches: list[str], resamples: int, seed: int, paper: dict | None = None
) -> dict:
    """What `correlations.json` says of a set of models: their count, `correlations` and Appendix C's
    paired changes (`trajectory_minus_random`, empty unless both were measured; `large_minus_random`
    and `trajectory_minus_large` where large batches were)."""
    summary = {
        "models": len(rows),
        "correlations": correlations(rows, datasets, batches, resamples, seed, paper),
        "trajectory_minus_random": [],
    }
    for mode_to, mode_from in BATCH_CHANGES:
        if {mode_to, mode_from} <= set(batches):
            summary[f"{mode_to}_minus_{mode_from}"] = batch_change(rows, datasets, mode_to, mode_from, resamples, seed)
    return summary


def describe_summary(summary: dict) -> list[str]:
    """One line per dataset and estimator of `summarise`'s rho, then one per dataset, method and
    paired change between batch modes."""
    lines = describe_correlations(summary["correlations"])
    for mode_to, mode_from in BATCH_CHANGES:
        lines += [
            f"{c['dataset']}: {c['method']} rho, {mode_to} minus {mode_from} batches (median LL) "
            f"{c['mean']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] (paired, by run)"
            for c in summary.get(f"{mode_to}_minus_{mode_from}", [])
        ]
    return lines


def total_least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Slope and intercept of the total least squares line through the finite (x, y) points (the
    principal axis of their covariance), as the paper draws Fig. 3's trend lines; None if undefined."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return None
    _, vectors = np.linalg.eigh(np.cov(np.stack([x, y])))
    dx, dy = vectors[:, -1]
    if abs(dx) < 1e-12:
        return None
    slope = dy / dx
    return float(slope), float(y.mean() - slope * x.mean())


def bounds(c: dict) -> tuple[str, str]:
    """The keys of the interval to show for a correlation: clustered by run with 3 runs or more (fewer
    clusters resample next to nothing), else over models."""
    return ("run_low", "run_high") if c.get("runs", 1) >= 3 and "run_low" in c else ("low", "high")


def population_figure(
    rows: Sequence[dict],
    datasets: Sequence[str],
    estimators: Sequence[tuple[str, str]],
    correlations: Sequence[dict],
    title: str = "",
):
    """Fig. 3's layout: one panel per dataset (columns), the LL of every model against its mean
    episode reward, with Pearson's and Spearman's rho and their intervals (`bounds`), the paper's
    rho and a total least squares trend line; one row of panels per LL estimator (the first is
    Fig. 3's mean LL, the others Appendix C's medians over batches)."""
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
            lines = [
                f"{m}: {c['rho']:+.2f} [{c[lo]:+.2f}, {c[hi]:+.2f}]" for m, c in found.items() for lo, hi in [bounds(c)]
            ]
            if "paper_rho" in found.get("pearson", {}):
                lines.append(f"the paper: {found['pearson']['paper_rho']:+.2f}")
            finite = ll[np.isfinite(ll)]
            if len(finite) >= 4:  # keep the bulk in view, as the paper does: a first model's LL can be off by orders
                q25, q75 = np.percentile(finite, [25, 75])
                low, high = max(finite.min(), q25 - 3 * (q75 - q25)), finite.max()
                ax.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
                off = int((finite < ax.get_xlim()[0]).sum())
                if off:  # rho and the trend line are on all points, those off the plot too
                    lines.append(f"{off} model{'s' if off > 1 else ''} further left (LL down to {finite.min():.3g})")
            box = {"facecolor": "white", "alpha": 0.8, "linewidth": 0}
            ax.text(0.98, 0.03, "\n".join(lines), transform=ax.transAxes, ha="right", fontsize="x-small", bbox=box)
            line = total_least_squares(ll, reward)  # fitted on all points, as rho is
            if line is not None:
                xs = np.array(ax.get_xlim())
                ax.plot(xs, line[0] * xs + line[1], color="tab:red", lw=0.8)
                ax.set_xlim(*xs)
            where = "" if metric == "paper_ll" else f", {BATCH_WORDS[mode]}"
            ax.set_title(f"{name}{where}", fontsize="small")
            ax.set_xlabel(METRIC_WORDS.get(metric, metric), fontsize="small")
            if j == 0:
                ax.set_ylabel("mean episode reward (higher: better)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
