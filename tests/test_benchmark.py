"""`objmm benchmark`: objectives x stress settings x seeds of PETS, the ranked table with paired
intervals, the same command again, and bad input in one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from objmm.stats import paired_difference

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ["benchmark", "--config", str(ROOT / "configs" / "benchmark" / "tiny.yaml")]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, objmm_in) -> Path:
    where = tmp_path_factory.mktemp("benchmark")
    objmm_in(where, BENCHMARK)
    return where / "runs" / "benchmark_tiny"


def test_every_objective_stress_and_seed_is_a_pets_run_with_its_settings(benchmark):
    saved = json.loads((benchmark / "benchmark.json").read_text())
    runs = {r["name"]: r for r in saved["runs"]}
    assert sorted(runs) == sorted(
        f"{o}-{s}_s{seed}" for o in ("nll", "multi_step") for s in ("default", "small") for seed in (0, 1)
    )
    config = yaml.safe_load((benchmark / "multi_step-small_s1" / "pets_config.yaml").read_text())
    assert config["model"]["width"] == 8 and config["seed_everything"] == 1  # the stress setting, the seed
    assert config["model"]["objective"]["class_path"] == "objmm.objectives.MultiStep"
    state = json.loads((benchmark / "nll-default_s0" / "state.json").read_text())
    rewards = [h["reward/mean"] for h in state["history"]]
    assert runs["nll-default_s0"]["auc"] == pytest.approx(np.mean(rewards)) and len(rewards) == 2


def test_the_summary_pairs_each_objective_with_the_baseline_on_the_same_seeds(benchmark):
    saved = json.loads((benchmark / "benchmark.json").read_text())
    runs = {r["name"]: r for r in saved["runs"]}
    row = next(r for r in saved["summary"] if (r["objective"], r["stress"]) == ("multi_step", "small"))
    mine = [runs[f"multi_step-small_s{s}"]["final"] for s in (0, 1)]
    nll = [runs[f"nll-small_s{s}"]["final"] for s in (0, 1)]
    expected = paired_difference(mine, nll)
    assert row["final_minus_baseline"] == pytest.approx(expected.mean)
    assert (row["final_minus_baseline_low"], row["final_minus_baseline_high"]) == pytest.approx(
        (expected.low, expected.high)
    )
    assert row["final"] == pytest.approx(np.mean(mine)) and row["seeds"] == 2
    table = (benchmark / "table.md").read_text()
    small = table.split("## small")[1]
    ranked = [line.split(" | ")[1] for line in small.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    finals = {r["objective"]: r["final"] for r in saved["summary"] if r["stress"] == "small"}
    assert ranked == sorted(finals, key=lambda o: -finals[o])  # ranked by final reward
    assert (benchmark / "curves.png").is_file() and (benchmark / "curves.pdf").is_file()


def test_the_same_command_again_runs_nothing(benchmark, objmm_in, capsys):
    before = (benchmark / "benchmark.json").read_text()
    capsys.readouterr()
    objmm_in(benchmark.parents[1], BENCHMARK)
    assert "trial 1/" not in capsys.readouterr().out
    assert json.loads((benchmark / "benchmark.json").read_text())["runs"] == json.loads(before)["runs"]


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "benchmark").glob("*.yaml")), ids=lambda p: p.name)
def test_every_benchmark_config_holds_valid_settings(config, monkeypatch):
    """`--print_config` does not build the section; its settings class checks it (stress keys, env ids)."""
    from objmm.experiments.benchmark import BenchmarkSettings

    monkeypatch.chdir(ROOT)
    section = yaml.safe_load(config.read_text())["benchmark"]
    assert BenchmarkSettings(**section).objectives


def test_a_stress_setting_may_run_another_env(in_tmp, objmm_in):
    stress = "{d4: {env_id: objmm/PETSCartpole-d4-v0}}"
    objmm_in(in_tmp, [*BENCHMARK, "--benchmark.stress", stress, "--benchmark.seeds", "[0]", "--benchmark.out", "b"])
    config = yaml.safe_load((in_tmp / "b" / "multi_step-d4_s0" / "pets_config.yaml").read_text())
    assert config["env"]["id"] == "objmm/PETSCartpole-d4-v0"
    state = json.loads((in_tmp / "b" / "nll-d4_s0" / "state.json").read_text())
    assert len(state["history"]) == 2


def test_bad_input_is_one_line(in_tmp, error_of):
    assert "benchmark.baseline 'mse' is not one of the objectives" in error_of(
        *BENCHMARK, "--benchmark.baseline", "mse"
    )
    message = error_of(*BENCHMARK, "--benchmark.stress", "{fast: {planner: {}}}")
    assert "benchmark.stress.fast: 'planner' is not a setting" in message
    message = error_of(*BENCHMARK, "--benchmark.objectives", "{nll: {class_path: objmm.objectives.Nope}}")
    assert "benchmark.objectives.nll" in message and "is not an objective" in message
    message = error_of(*BENCHMARK, "--benchmark.stress", "{d: {env_id: objmm/PETSCartpole-d-3-v0}}")
    assert "the number of distractors must be >= 0, not -3" in message


def test_the_committed_cpu_table_is_the_one_its_results_give():
    """docs/benchmark/cartpole_cpu/ holds what `objmm benchmark` wrote: its table and summary follow
    from its runs, and docs/experiments.md quotes them."""
    from objmm.experiments.benchmark import BenchmarkSettings, ranked_table, summarise

    folder = ROOT / "docs" / "benchmark" / "cartpole_cpu"
    saved = json.loads((folder / "benchmark.json").read_text())
    settings = BenchmarkSettings(**{k: v for k, v in saved["settings"].items() if k != "pets"})
    rows = summarise({run["name"]: run for run in saved["runs"]}, settings)
    assert len(saved["runs"]) == 54 and len(rows) == len(saved["summary"]) == 18
    for row, kept in zip(rows, saved["summary"], strict=True):
        assert row == pytest.approx(kept)
    assert (folder / "table.md").read_text() == ranked_table(rows, settings, settings.solved)
    docs = (ROOT / "docs" / "experiments.md").read_text()
    section = docs[docs.index("## The benchmark of mismatch fixes") :].replace("**", "")  # bold aside
    for row in rows:
        assert f"{row['final']:.1f} [{row['final_low']:.1f}, {row['final_high']:.1f}]" in section, row["objective"]
        if "final_minus_baseline" in row:
            low, high = row["final_minus_baseline_low"], row["final_minus_baseline_high"]
            assert f"{row['final_minus_baseline']:+.1f} [{low:+.1f}, {high:+.1f}]" in section, row["objective"]
