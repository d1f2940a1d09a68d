"""The experiment framework: the results file, the runner, resume by the same command or `--resume`,
and one named W&B run per experiment run that holds the whole config and goes on across resumes."""

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from objmm.cli import main
from objmm.errors import ObjmmError
from objmm.experiments.framework import RaySettings, ResultsFile, plain, run_pieces
from objmm.experiments.framework.clock import AttemptClock
from objmm.experiments.framework.config import wandb_run_id
from objmm.planning import CEMConfig

ROOT = Path(__file__).resolve().parents[1]
PETS = ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml")]


@pytest.mark.parametrize("name", ["table.json", "state.pkl"])
def test_a_results_file_keeps_each_piece_once_and_goes_on_with_its_own_settings_only(tmp_path, name):
    settings = {"cem": CEMConfig(horizon=3), "sizes": (1, 2)}
    path = tmp_path / "out" / name
    table = ResultsFile(path, settings, field="cells", key="name", setting="x.out")
    assert len(table) == 0 and not path.exists()  # nothing written before a piece lands
    table.add({"name": "a", "value": 1.0}, start={"reward": 3.0})
    table.add({"name": "b", "value": 2.0}, {"name": "a", "value": 1.5})  # "a" again: written once, the newest
    again = ResultsFile(path, {"cem": CEMConfig(horizon=3), "sizes": [1, 2]}, field="cells", key="name")
    assert list(again.pieces) == ["a", "b"] and again.pieces["a"]["value"] == 1.5
    assert again.extra == {"start": {"reward": 3.0}} and "b" in again and "c" not in again
    assert again.settings == plain(settings) == {"cem": plain(CEMConfig(horizon=3)), "sizes": [1, 2]}
    with pytest.raises(ObjmmError) as refused:
        ResultsFile(path, {**settings, "sizes": [1, 3]}, field="cells", key="name", setting="x.out", may_change="x.n")
    assert str(refused.value) == (
        f"{path} was made with other settings; use another x.out (or the same settings, only x.n may change, to go on)"
    )
    path.write_bytes(path.read_bytes()[:20])  # a torn file (a disk full, a copy cut short)
    with pytest.raises(ObjmmError, match=f"{path} is damaged .*; move it away to start again"):
        ResultsFile(path, settings, field="cells", key="name")
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left beside it


def test_a_results_file_keyed_by_name_reads_back_as_written(tmp_path):
    path = tmp_path / "cells.json"
    ResultsFile(path, {}, field="cells", key="name", by_key=True).add({"name": "S10", "r": 1})
    assert json.loads(path.read_text())["cells"] == {"S10": {"name": "S10", "r": 1}}
    assert ResultsFile(path, {}, field="cells", key="name", by_key=True).pieces == {"S10": {"name": "S10", "r": 1}}
    pickled = tmp_path / "s.pkl"
    ResultsFile(pickled, {}, field="history", key="generation").add({"generation": 1}, es=[1, 2])
    assert pickle.loads(pickled.read_bytes())["es"] == [1, 2]


def test_run_pieces_lands_every_piece_in_order_in_process(capsys):
    landed = []
    run_pieces(pow, [(2, 3), (3, 2)], lambda args, result: landed.append((args, result)), RaySettings(),
               describe=lambda i, args: f"piece {i}: {args}")  # fmt: skip
    assert landed == [((2, 3), 8), ((3, 2), 9)]
    assert capsys.readouterr().out == "piece 0: (2, 3)\npiece 1: (3, 2)\n"


def wandb_runs(run_id: str) -> list[Path]:
    return sorted(Path("runs/wandb").glob(f"offline-run-*-{run_id}"))


def test_pets_goes_on_by_the_same_command_in_one_named_wandb_run_and_refuses_other_settings(in_tmp, capsys, error_of):
    main([*PETS, "--pets.trials", "1"])
    time.sleep(1.0)  # W&B names an offline part by its start's second: two parts in one second share a folder
    main([*PETS, "--pets.trials", "2"])  # the same command again, one trial longer: goes on
    out = capsys.readouterr().out
    assert "trial 1/2" not in out.split("pets: 1 trials")[-1] and "trial 2/2" in out
    state = json.loads(Path("runs/pets_tiny/state.json").read_text())
    assert state["finished_trials"] == 2 and len(state["history"]) == 2
    runs = wandb_runs(wandb_run_id("pets", "runs/pets_tiny"))
    assert len(runs) == 2  # one W&B run in two parts (wandb sync joins them)
    for run in runs:
        log = next(run.glob("run-*.wandb")).read_bytes()
        assert b"pets_tiny" in log and b"pets.trials" not in log and b"cem" in log  # named, its config logged
    err = error_of(*PETS, "--model.lr", "0.01")
    assert err == (
        "objmm: error: runs/pets_tiny holds a pets run with other settings (model.lr: 0.003 -> 0.01); go on with "
        "its own (objmm pets --resume runs/pets_tiny) or use another pets.run_dir"
    )
    assert json.loads(Path("runs/pets_tiny/state.json").read_text()) == state  # nothing touched
    assert len(wandb_runs(wandb_run_id("pets", "runs/pets_tiny"))) == 2  # and no W&B run opened for it


def test_resume_takes_a_folder_of_any_experiment(in_tmp, error_of):
    assert error_of("population", "--resume", "nowhere") == (
        "objmm: error: nowhere is not an objmm population run (no population_config.yaml in it)"
    )
    assert error_of("attack", "--resume") == "objmm: error: --resume needs an objmm attack run directory"
    assert error_of("pets-sweep", "--resume", "nowhere") == (
        "objmm: error: nowhere is not an objmm pets-sweep run (no sweep_config.yaml in it)"
    )


def test_babbling_runs_pets_from_each_size_of_off_task_data_and_goes_on(in_tmp, capsys, error_of):
    """Appendix A on the framework: one PETS run per size, from that many babbling transitions."""
    args = ["babbling", "--config", str(ROOT / "configs" / "babbling" / "tiny.yaml")]
    main(args)
    table = json.loads(Path("runs/babbling_tiny/babbling.json").read_text())
    assert [run["name"] for run in table["runs"]] == ["S20_s0", "S60_s0"]
    for run, size in zip(table["runs"], (20, 60), strict=True):
        state = json.loads(Path(f"runs/babbling_tiny/{run['name']}/state.json").read_text())
        assert state["initial_rows"] == size and len(run["rewards"]) == state["finished_trials"] == 2
        assert run["rewards"] == [h["reward/mean"] for h in state["history"]]
    assert Path("runs/babbling_tiny/fig10.png").stat().st_size > 10_000
    capsys.readouterr()
    main(args)  # the same command again: nothing is run twice
    out = capsys.readouterr().out
    assert "2 PETS runs (2 done)" in out and "training on" not in out
    assert json.loads(Path("runs/babbling_tiny/babbling.json").read_text()) == table
    # a table as written before 2026-12-04 (every run's whole config as its settings) goes on, and a
    # second seed adds its runs beside the first one's
    old = [yaml.safe_load(Path(f"runs/babbling_tiny/configs/{name}.yaml").read_text()) for name in ("S20_s0", "S60_s0")]
    Path("runs/babbling_tiny/babbling.json").write_text(json.dumps({**table, "settings": {"runs": old}}))
    main([*args, "--babbling.seeds", "[0, 1]"])
    grown = json.loads(Path("runs/babbling_tiny/babbling.json").read_text())
    assert "4 PETS runs (2 done)" in capsys.readouterr().out
    assert [run["name"] for run in grown["runs"]] == ["S20_s0", "S60_s0", "S20_s1", "S60_s1"]
    assert grown["runs"][:2] == table["runs"] and grown["settings"]["seeds"] == [0, 1]
    error = error_of(*args, "--babbling.horizon", "20")  # but not another horizon
    assert error.endswith(
        "babbling.json was made with other settings; use another babbling.out "
        "(or the same settings, only babbling.sizes and babbling.seeds may gain entries, to go on)"
    )


def test_a_grid_s_list_may_gain_entries_but_not_lose_or_change_them(tmp_path):
    path = tmp_path / "table.json"
    ResultsFile(path, {"seeds": [0, 1], "lr": 0.1}, "runs").add({"name": "s0"})
    grown = ResultsFile(path, {"seeds": [0, 1, 2], "lr": 0.1}, "runs", setting="x.out", may_grow=("seeds",))
    assert list(grown.pieces) == ["s0"]
    grown.add({"name": "s2"})
    assert json.loads(path.read_text())["settings"]["seeds"] == [0, 1, 2]
    for other in ({"seeds": [0, 2], "lr": 0.1}, {"seeds": [0, 1, 2], "lr": 0.2}):  # one lost, or another lr
        with pytest.raises(ObjmmError, match=r"only x\.seeds may gain entries, to go on"):
            ResultsFile(path, other, "runs", setting="x.out", may_grow=("seeds",))
    with pytest.raises(ObjmmError, match="was made with other settings"):  # and only where the caller says so
        ResultsFile(path, {"seeds": [0, 1, 2, 3], "lr": 0.1}, "runs")


def test_a_results_file_made_before_a_setting_existed_goes_on_at_that_setting_s_old_behaviour(tmp_path):
    path = tmp_path / "table.json"
    old = plain({"cem": CEMConfig(horizon=3), "stack": 2})
    del old["cem"]["precision"], old["cem"]["cuda_graph"], old["cem"]["compile"]  # as written before they existed
    path.write_text(json.dumps({"settings": old, "cells": [{"name": "a"}]}))
    table = ResultsFile(path, {"cem": CEMConfig(horizon=3), "stack": 2}, field="cells", key="name")
    assert list(table.pieces) == ["a"]  # float32 is what it was made with
    with pytest.raises(ObjmmError, match="was made with other settings"):  # but not at another precision
        ResultsFile(path, {"cem": CEMConfig(horizon=3, precision="bfloat16"), "stack": 2}, field="cells", key="name")
    with pytest.raises(ObjmmError, match="was made with other settings"):  # nor with compiled model calls
        ResultsFile(path, {"cem": CEMConfig(horizon=3, compile=True), "stack": 2}, field="cells", key="name")
    with pytest.raises(ObjmmError, match="was made with other settings"):  # nor with a setting that never existed
        ResultsFile(path, {"cem": CEMConfig(horizon=3), "stack": 2, "width": 8}, field="cells", key="name")
    # how the planner runs is not what it plans: eager or captured as a CUDA graph, the file goes on
    for graph in (False, True):
        settings = {"cem": CEMConfig(horizon=3, cuda_graph=graph), "stack": 2}
        table = ResultsFile(path, settings, field="cells", key="name")
        assert list(table.pieces) == ["a"]
    # reweight's grid made before `references`: one reference, as then; several are other results
    settings = {"cem": CEMConfig(horizon=3), "stack": 2}
    assert list(ResultsFile(path, {**settings, "references": 1}, field="cells", key="name").pieces) == ["a"]
    with pytest.raises(ObjmmError, match="was made with other settings"):
        ResultsFile(path, {**settings, "references": 2}, field="cells", key="name")


def test_an_attempt_killed_midway_counts_in_the_next_attempts_wall_time(tmp_path):
    """A job killed by SIGKILL and run again is timed over both attempts (to within the clock's beat),
    and a finished job's key is dropped, so a redo starts from 0."""
    clocks = tmp_path / "clocks.json"
    attempt = (
        "import time\nfrom objmm.experiments.framework.clock import AttemptClock\n"
        f"with AttemptClock({str(clocks)!r}, 'step', every=0.05):\n    time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", attempt])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        beats = json.loads(clocks.read_text())["step"]["seconds"] if clocks.exists() else 0.0
        if beats >= 1.0:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    first = json.loads(clocks.read_text())["step"]
    assert first["attempts"] == 1 and first["seconds"] >= 1.0

    with AttemptClock(clocks, "step") as clock:
        time.sleep(0.2)
    assert clock.attempts == 2
    assert first["seconds"] + 0.2 <= clock.seconds < first["seconds"] + 5.0
    clock.forget()
    assert "step" not in json.loads(clocks.read_text())
    assert AttemptClock(clocks, "step").attempts == 1
