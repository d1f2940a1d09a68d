"""What every figure shares: metric names in words, outliers kept off the axis, a legend below the
plot, and the atomic save (a temporary file renamed into place). Each figure itself lives beside
the experiment that draws it (`experiments/pets.py`'s Fig. 11, `experiments/population.py`'s Fig. 3
...; `training/reward_callback.py` draws fit's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from objmm import atomic

matplotlib.use("Agg")  # figures are files: no screen needed; the figures import `plt` from here
import matplotlib.pyplot as plt  # noqa: E402

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
    """`path` (a PNG at 150 dpi) and its vector copy beside it (`.pdf`, for a paper), each written atomically."""
    path = Path(path)
    try:
        atomic.write_atomically(
            path.with_suffix(".pdf"), lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight")
        )
        return atomic.write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
