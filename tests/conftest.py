import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

CARTPOLE = "objmm/PETSCartpole-v0"


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default="cpu",
        help="where the tests that take the `device` fixture put their models, tensors and trainers "
        "(benchmarks/gpu_check.sh runs `pytest -m device --device cuda`)",
    )


def pytest_collection_modifyitems(config, items):
    """Every test that takes `device` is marked `device`, so `-m device` selects exactly those."""
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The --device option (default cpu); on a machine without CUDA, `--device cuda` stops the run."""
    device = torch.device(request.config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.exit(f"--device {device}: torch sees no CUDA device here", returncode=2)
    return device


@pytest.fixture(scope="session")
def accelerator(device) -> list[str]:
    """The command-line arguments that put an objmm command's trainer (and so its planner) on `device`."""
    return ["--trainer.accelerator", "gpu" if device.type == "cuda" else "cpu"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run inside a fresh directory (runs/, data/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def error_of(capsys):
    """Run `objmm ARGS...` in-process, expecting exit status 2; its stderr, stripped."""
    from objmm.cli import main

    def run(*args: str) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        assert exit_info.value.code == 2
        return capsys.readouterr().err.strip()

    return run


@pytest.fixture(scope="session")
def objmm_in():
    """`objmm_in(directory, args, ...)`: run objmm commands in-process inside `directory` (for
    module-scoped reference runs, which cannot use the function-scoped `in_tmp`)."""
    from objmm.cli import main

    def run(directory, *commands: list[str]) -> None:
        cwd = os.getcwd()
        os.chdir(directory)
        try:
            for args in commands:
                main(args)
        finally:
            os.chdir(cwd)

    return run


def kill_when(args: list[str], cwd, ready, timeout: float = 600) -> None:
    """Start `objmm args` in a process of its own inside `cwd` and SIGKILL it as soon as `ready()`
    is true (a result it writes has appeared), or after `timeout` seconds (long: on a loaded machine
    the first result of a tiny run took more than 2 minutes)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from objmm.cli import main; main()", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def pets_tiny(tmp_path_factory, objmm_in):
    """`copy_to(folder)`: puts one `objmm pets` run of configs/pets/tiny.yaml (3 trials, on the CPU)
    at `folder/runs/pets_tiny`; the run is made once per test session, not once per test."""
    import shutil
    from pathlib import Path

    made = tmp_path_factory.mktemp("pets_tiny")
    config = Path(__file__).resolve().parents[1] / "configs" / "pets" / "tiny.yaml"
    objmm_in(made, ["pets", "--config", str(config)])

    def copy_to(folder) -> None:
        shutil.copytree(made / "runs" / "pets_tiny", Path(folder) / "runs" / "pets_tiny")

    return copy_to


def histories(out: Path) -> dict[str, list[dict]]:
    """Every run's per-trial metrics, less the wall times."""
    return {
        run.name: [
            {k: v for k, v in h.items() if not k.startswith("seconds")}
            for h in json.loads((run / "state.json").read_text())["history"]
        ]
        for run in sorted(out.iterdir())
        if (run / "state.json").exists()
    }
