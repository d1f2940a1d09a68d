"""Intervals a reader can trust: Pearson's and Spearman's rho with a bootstrap interval (Fig. 3's rho
per panel), and the mean of paired differences with one (Fig. 8's cells), both optionally clustered.

Clustered: models of one PETS run (or trained on one dataset) are not independent draws, so
resampling models alone gives intervals that are too narrow. With `clusters`, a resample draws
whole clusters with replacement (the runs, the datasets) and keeps all their points: the
cluster bootstrap (Cameron, Gelbach & Miller 2008; Field & Welsh 2007). scipy.stats.bootstrap
resamples observations only, hence the few lines here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Method = Literal["pearson", "spearman"]


@dataclass(frozen=True)
class Correlation:
    method: str
    rho: float
    low: float  # the bootstrap interval, at `confidence`
    high: float
    n: int  # pairs used (pairs with a NaN or infinite value are left out)


def _defined_pairs(x, y, *labels) -> tuple[np.ndarray, ...] | None:
    """The finite (x, y) pairs (and their labels); None where no correlation is defined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    found = (x[keep], y[keep], *(np.asarray(label)[keep] for label in labels))
    return found if len(found[0]) >= 3 and np.ptp(found[0]) > 0 and np.ptp(found[1]) > 0 else None


def _interval(values, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap `values` at `confidence` (NaNs left out)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return float(low), float(high)


def _rho(method: Method):
    if method == "pearson":
        return lambda x, y: stats.pearsonr(x, y).statistic
    if method == "spearman":
        return lambda x, y: stats.spearmanr(x, y).statistic
    raise ValueError(f"unknown correlation {method!r}; use pearson or spearman")


def correlation(
    x, y, method: Method = "pearson", resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Correlation:
    """rho of the finite (x, y) pairs and its percentile bootstrap interval over resampled pairs.

    Percentile rather than scipy's default BCa: BCa's jackknife fails on the ties a population of
    solved cartpole models produces (many rewards equal to the last digit). Resamples whose rho is
    undefined (all x or all y equal, likely in small samples) are left out of the percentiles; with
    none of them the interval is scipy's own."""
    pairs = _defined_pairs(x, y)
    if pairs is None:  # no correlation is defined
        return Correlation(method, float("nan"), float("nan"), float("nan"), int(np.isfinite(np.add(x, y)).sum()))
    x, y = pairs
    rho = _rho(method)
    with warnings.catch_warnings():  # constant resamples: their rho is NaN, and left out below
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (x, y),
            rho,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = _interval(result.bootstrap_distribution, confidence)
    return Correlation(method, float(rho(x, y)), low, high, int(len(x)))


def cluster_resamples(clusters, resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of `resamples` cluster-bootstrap resamples: each draws as many clusters as there
    are, with replacement, and takes every row of each."""
    clusters = np.asarray(clusters)
    names, which = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(which == k) for k in range(len(names))]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[k] for k in rng.integers(0, len(names), len(names))]) for _ in range(resamples)]


def clustered_correlation(
    x, y, clusters, method: Method = "pearson", resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Correlation:
    """rho of the finite (x, y) pairs and its percentile interval over cluster-bootstrap resamples
    (`clusters`: one label per pair, e.g. the PETS run a model comes from)."""
    pairs = _defined_pairs(x, y, clusters)
    if pairs is None:
        return Correlation(method, float("nan"), float("nan"), float("nan"), int(np.isfinite(np.add(x, y)).sum()))
    x, y, clusters = pairs
    rho = _rho(method)
    with warnings.catch_warnings():  # constant resamples: their rho is NaN, and left out below
        warnings.simplefilter("ignore")
        found = [rho(x[rows], y[rows]) for rows in cluster_resamples(clusters, resamples, seed)]
    low, high = _interval(found, confidence)
    return Correlation(method, float(rho(x, y)), low, high, int(len(x)))


@dataclass(frozen=True)
class Difference:
    mean: float  # the mean of the paired differences
    low: float  # its bootstrap interval, at `confidence`
    high: float
    n: int  # pairs
    clusters: int


def paired_difference(
    a, b, clusters=None, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Difference:
    """The mean of a - b over pairs (two methods on the same seeds, data and episodes) and its
    percentile interval over (cluster-)bootstrap resamples of the pairs."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    clusters = np.arange(len(diff)) if clusters is None else np.asarray(clusters)
    if len(diff) < 2:
        return Difference(float(diff.mean()) if len(diff) else float("nan"), float("nan"), float("nan"), len(diff), 1)
    low, high = _interval([diff[rows].mean() for rows in cluster_resamples(clusters, resamples, seed)], confidence)
    return Difference(float(diff.mean()), low, high, int(len(diff)), int(len(np.unique(clusters))))


def mean_interval(values, clusters=None, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Difference:
    """The mean of `values` and its percentile interval over (cluster-)bootstrap resamples."""
    values = np.asarray(values, dtype=float)
    return paired_difference(values, np.zeros_like(values), clusters, resamples, confidence, seed)


def correlation_change(
    x_from,
    x_to,
    y,
    clusters,
    method: Method = "pearson",
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """rho(x_to, y) - rho(x_from, y): how much a second estimator of x (the same models' LL another
    way) changes the correlation, with its percentile interval over cluster-bootstrap resamples
    that draw the same rows for both (a paired design); rows where any of the three is not finite
    are left out."""
    x_from, x_to, y = (np.asarray(v, dtype=float) for v in (x_from, x_to, y))
    keep = np.isfinite(x_from) & np.isfinite(x_to) & np.isfinite(y)
    x_from, x_to, y, clusters = x_from[keep], x_to[keep], y[keep], np.asarray(clusters)[keep]
    if len(y) < 3:
        return Difference(float("nan"), float("nan"), float("nan"), int(len(y)), int(len(np.unique(clusters))))
    rho = _rho(method)
    with warnings.catch_warnings():  # constant resamples: their rho is NaN, and left out below
        warnings.simplefilter("ignore")
        found = [rho(x_to[r], y[r]) - rho(x_from[r], y[r]) for r in cluster_resamples(clusters, resamples, seed)]
        change = rho(x_to, y) - rho(x_from, y)
    low, high = _interval(found, confidence)
    return Difference(float(change), low, high, int(len(y)), int(len(np.unique(clusters))))


def describe_correlations(found: list[dict]) -> list[str]:
    """One line per dataset and LL estimator of `found` (dicts of a `Correlation` with its `dataset`
    and `ll`, and optionally `run_low`/`run_high`, the interval clustered by run, and `paper_rho`):
    Pearson's rho [interval], Spearman's rho [interval], n."""
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for c in found:
        pairs.setdefault((c["dataset"], c["ll"]), {})[c["method"]] = c

    def one(method: str, c: dict) -> str:
        text = f"{method} rho {c['rho']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"
        if "run_low" in c:
            text += f" (by run [{c['run_low']:+.2f}, {c['run_high']:+.2f}])"
        return text + (f", the paper {c['paper_rho']:+.2f}" if "paper_rho" in c else "")

    return [
        f"{name}, LL {ll}: " + ", ".join(one(m, c) for m, c in by.items()) + f" (n {next(iter(by.values()))['n']})"
        for (name, ll), by in pairs.items()
    ]
