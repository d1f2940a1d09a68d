"""The figures read as they come out: words on the axes, legends, best epochs marked, ticks labelled."""

import matplotlib.pyplot as plt

from objmm.experiments.pets import trials_figure
from objmm.plots import save_figure_atomically
from objmm.training.reward_callback import reward_and_nll_figure


def labels(axis) -> list[str]:
    axis.figure.canvas.draw()
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def test_the_pets_curve_labels_a_narrow_nll_axis_and_counts_trials_in_whole_numbers():
    fig = trials_figure([0, 1, 2, 3], [20.0, 170.0, 178.0, 179.0], [float("nan"), -12.1, -12.6, -12.9], [-11.0] * 4)
    ax_reward, ax_nll = fig.axes
    assert len(labels(ax_nll.yaxis)) >= 3  # a span of under a factor of ten still gets numbers
    assert all(text.lstrip("−-").isdigit() for text in labels(ax_reward.xaxis))  # trials 1, 2, ... not 1.5
    assert ax_nll.get_yscale() == "linear"
    legend = [t.get_text() for t in ax_reward.get_legend().get_texts()]
    assert "NLL on the trial's new data (before training)" in legend
    plt.close(fig)


def test_a_surprised_model_does_not_flatten_the_pets_curve():
    new_data = [float("nan"), 3728.8, -11.3, -13.0, -14.1, -15.0]
    fig = trials_figure(range(6), [20.0, 60.0, 170.0, 179.0, 178.0, 179.5], new_data, [181.9, 10.0, -9, -12, -13, -14])
    ax_nll = fig.axes[1]
    low, high = ax_nll.get_ylim()
    assert high < 200 and low < -15  # the axis spans the bulk, not up to 3729
    notes = [t.get_text() for t in ax_nll.texts]
    assert notes == ["182", "3.73e+03"]  # the values off the axis are written at its edge, one per trial
    assert len(labels(ax_nll.yaxis)) >= 3
    plt.close(fig)


def test_the_reward_figure_marks_the_epochs_of_best_reward_and_best_nll():
    fig = reward_and_nll_figure(
        [2, 5, 8],
        [95.0, 175.0, 172.0],
        [3.0, 1.0, 2.0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [-6.0, -8, -9, -10, -11, -12, -13, -14, -15],
        metric="val/nll",
        others={"random": [(0, -5.0), (4, -9.0), (8, -12.0)]},
    )
    ax_reward, ax_nll = fig.axes
    legend = [t.get_text() for t in ax_reward.get_legend().get_texts()]
    assert "best reward (epoch 5)" in legend and "best NLL (epoch 8)" in legend
    assert "NLL on the random set" in legend  # the second validation set, on the NLL's axis
    assert [list(line.get_ydata()) for line in ax_nll.get_lines()][1] == [-5.0, -9.0, -12.0]
    assert ax_nll.get_ylabel() == "NLL on the val set (lower is better)"
    assert ax_reward.get_ylabel() == "episode reward (higher is better)"
    plt.close(fig)


def test_every_figure_is_saved_with_a_vector_copy(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = save_figure_atomically(fig, tmp_path / "fig.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]  # no temporary file left
