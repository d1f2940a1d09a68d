"""Fault injection: damaged files and interrupted writes are named or recovered, never loaded as data."""

import json
import os
import stat
from pathlib import Path

import pytest

from objmm.cli import main
from objmm.data import TransitionDataset, random_rollouts
from objmm.errors import ObjmmError

CARTPOLE = "objmm/PETSCartpole-v0"


@pytest.fixture
def saved(tmp_path) -> Path:
    random_rollouts(CARTPOLE, episodes=3, horizon=10).save(tmp_path / "d")
    return tmp_path / "d"


@pytest.mark.parametrize("cut", [0, 37, -4], ids=["emptied", "truncated", "short by a value"])
@pytest.mark.parametrize("field", ["obs", "next_obs", "episode"])
def test_a_cut_rows_file_is_named_and_left_as_it_was(saved, field, cut):
    file = saved / "rows" / f"{field}.memmap"
    data = file.read_bytes()
    file.write_bytes(data[:cut])
    damaged_size = file.stat().st_size
    with pytest.raises(ObjmmError, match=f"dataset {saved} is damaged: {field} holds {damaged_size} bytes"):
        TransitionDataset.load(saved)
    assert file.stat().st_size == damaged_size  # not grown back (zeros) behind the user's back


def test_changed_rows_fail_the_checksum(saved):
    file = saved / "rows" / "obs.memmap"
    data = bytearray(file.read_bytes())
    data[5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ObjmmError, match="do not match the checksum written when it was saved"):
        TransitionDataset.load(saved)


@pytest.mark.parametrize("name", ["objmm.json", "rows/meta.json"])
def test_garbled_metadata_is_named(saved, name):
    (saved / name).write_text("{not json")
    with pytest.raises(ObjmmError, match=f"dataset {saved} is damaged: its metadata cannot be read"):
        TransitionDataset.load(saved)


def test_saving_over_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(ObjmmError, match="exists and is not an objmm dataset; choose another path"):
        random_rollouts(CARTPOLE, episodes=1, horizon=5).save(precious)
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_the_data_command_refuses_it_too(in_tmp, capsys):
    Path("notes").mkdir()
    (Path("notes") / "a.txt").write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "grid", "--points", "2", "--out", "notes"])
    assert exit_info.value.code == 2
    assert "notes exists and is not an objmm dataset" in capsys.readouterr().err
    assert (Path("notes") / "a.txt").read_text() == "keep"


def test_a_save_killed_between_its_renames_is_recovered_on_load(saved):
    old = saved.with_name(f".{saved.name}.old")
    os.replace(saved, old)  # where save() stands between its two renames
    dataset = TransitionDataset.load(saved)
    assert len(dataset) == 30 and saved.is_dir() and not old.exists()


def test_result_files_are_readable_by_others_as_usual(in_tmp):
    main(["pets", "--config", str(Path(__file__).parents[1] / "configs" / "pets_tiny.yaml"), "--pets.trials", "1"])
    run = Path("runs/pets_tiny")
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (run / "state.json", run / "pets_config.yaml", run / "models" / "trial_00.pt", run / "pets_curve.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert stat.S_IMODE((run / "dataset").stat().st_mode) == 0o777 & ~mask
    assert json.loads((run / "dataset" / "objmm.json").read_text())["checksum"]
