import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

CARTPOLE = "objmm/PETSCartpole-v0"


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
