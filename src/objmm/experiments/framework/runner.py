"""Running an experiment's independent pieces (blocks of models, grid cells, PETS runs, fits),
in this process or as Ray tasks: `run_pieces`.

With no address Ray is never imported: the pieces run here one after another. With one, each piece
is a Ray task on the cluster (`auto`, `ray://HOST:10001`) or on a Ray started here (`local`, with
`num_cpus`); results come back to this process as each task ends, and the experiment writes them
(its results file is keyed, so a result that lands twice is written once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from objmm import interrupts


@dataclass
class RaySettings:
    """Where an experiment's pieces run.

    Args:
        address: a Ray cluster (`auto`, `ray://HOST:10001`), or `local` for a Ray started here with
            `num_cpus`; empty: everything runs in this process and Ray is not started.
        num_cpus: CPUs of the Ray started by `address: local` (default: all of this machine's).
        cpus_per_task: CPUs a task takes (its torch threads).
        gpus_per_task: GPUs a task takes (fractions share a GPU).
        log_to_driver: show the tasks' printed progress here.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    log_to_driver: bool = False


def _with_threads(function: Callable, threads: int) -> Callable:
    def task(*args):
        import torch

        torch.set_num_threads(max(1, threads))
        return function(*args)

    return task


def run_pieces(
    function: Callable[..., Any],
    arguments: list[tuple],
    land: Callable[[tuple, Any], None],
    ray: RaySettings | None = None,
    describe: Callable[[int, tuple], str] | None = None,
) -> None:
    """`function(*args)` for every args in `arguments`, and `land(args, result)` here as each one
    ends: as Ray tasks where `ray.address` is set, else one after another in this process (each
    announced by `describe(i, args)` when given)."""
    if ray is not None and ray.address:
        run_tasks(ray, function, arguments, land)
        return
    for i, args in enumerate(arguments):
        if describe:
            print(describe(i, args), flush=True)
        land(args, function(*args))


def run_tasks(
    settings: RaySettings,
    function: Callable[..., Any],
    arguments: Iterable[tuple],
    on_result: Callable[[tuple, Any], None],
) -> None:
    """`function(*args)` for every args in `arguments` as Ray tasks; `on_result(args, result)` here as
    each one ends. Ctrl-C here stops waiting and shuts Ray down (the finished results are kept)."""
    import ray

    if settings.address == "local":
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=settings.log_to_driver)
    else:
        ray.init(address=settings.address, log_to_driver=settings.log_to_driver)
    try:
        remote = ray.remote(num_cpus=settings.cpus_per_task, num_gpus=settings.gpus_per_task)(
            _with_threads(function, settings.cpus_per_task)
        )
        pending = {remote.remote(*args): args for args in arguments}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            interrupts.check()
            for ref in done:
                on_result(pending.pop(ref), ray.get(ref))
    finally:
        ray.shutdown()
