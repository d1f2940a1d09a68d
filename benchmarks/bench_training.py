"""Training throughput: objmm's LightningModule under `Trainer.fit` vs a plain-torch loop.

    python benchmarks/bench_training.py [--epochs 3] [--rounds 5] [--batch-size 32] [--width 200] [--device cpu]
                                        [--stack K]

Both train the same PE model (same initial weights) on the same [members, batch] bootstrap
batches of the cartpole grid data, with the same loss and Adam; validation is off on both sides.
`--stack K`: K such models trained as one, as stacked PETS runs train a trial's models
(`fit_stacked`: each model its own bootstrap and Adam state, one batched step), against a plain loop
of the same stacked step (`StackedDynamicsModule`'s loss and optimiser, no Trainer): Lightning's
fixed cost a step, shared by K models.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import lightning as L
import torch

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.datamodule import EnsembleBatches
from objmm.training.stacked import StackedBatches, StackedDynamicsModule, fit_stacked
from objmm.training.trainer import bare_trainer


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)


def timed_epochs(batches, loss_of, optimizer: torch.optim.Optimizer, epochs: int, device: str) -> list[float]:
    """The seconds of each of `epochs` plain-torch epochs: a step is `loss_of(batch)`, backward and
    the optimiser's step."""
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in batches:
            loss = loss_of(batch.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def plain_epochs(module: DynamicsModule, batches: EnsembleBatches, epochs: int, device: str) -> list[float]:
    model, objective = module.model.to(device), module.objective

    def loss_of(batch):
        prediction = model(batch["obs"], batch["action"])
        target = model.targets(batch["obs"], batch["next_obs"])
        return objective(prediction, target, batch).mean() + model.net.logvar_bound_penalty()

    # the same Adam: each layer's weights decayed as PETS does
    return timed_epochs(batches, loss_of, module.configure_optimizers(), epochs, device)


def plain_stacked_epochs(modules: list[DynamicsModule], data: list[TransitionDataModule], epochs: int, device: str):
    """The stacked step of `fit_stacked`, in a plain loop: K models' [K, members, batch] batches
    through `StackedDynamicsModule`'s loss and its optimiser."""
    for module, d in zip(modules, data, strict=True):
        module.model.fit_normaliser(d.train_set.data["obs"], d.train_set.data["action"])
        module.objective.on_fit_start(d.train_set)
    stacked = StackedDynamicsModule(modules).to(device)
    batches = StackedBatches([d.train_batches(device) for d in data])
    seconds = timed_epochs(batches, lambda batch: stacked(batch).sum(), stacked.configure_optimizers(), epochs, device)
    stacked.unstack()  # the trained models back into the K modules, as `fit_stacked` leaves them
    return seconds


def datamodules(k: int, batch_size: int, members: int = 5) -> list[TransitionDataModule]:
    """K datamodules of the grid data's one split, each with its own bootstrap and shuffles (its `fit_index`)."""
    found = []
    for i in range(k):
        data = TransitionDataModule(train="grid", batch_size=batch_size, ensemble_size=members)
        data.setup()
        data.fit_index = i
        found.append(data)
    return found


def sides(
    initial: DynamicsModule, data: TransitionDataModule, trainer: L.Trainer, stack: int, epochs: int, device: str
):
    """A round's two sides on fresh copies of `initial`, built before either is timed: Lightning's
    fit and the plain loop (which returns its epochs' seconds), for a model alone or `stack` models
    trained as one."""
    if stack > 1:
        models, plain_models = ([copy.deepcopy(initial) for _ in range(stack)] for _ in range(2))
        data_k, plain_data = datamodules(stack, data.batch_size), datamodules(stack, data.batch_size)
        return (
            lambda: fit_stacked(models, data_k, trainer),
            lambda: plain_stacked_epochs(plain_models, plain_data, epochs, device),
        )
    module, plain_module = copy.deepcopy(initial), copy.deepcopy(initial)
    plain_module.model.fit_normaliser(data.train_set.data["obs"], data.train_set.data["action"])
    # each epoch's rows moved to the device in one copy, as the datamodule's batches are
    batches = EnsembleBatches(data.train_set.data, 5, data.batch_size, True, seed=0, device=device)
    return lambda: trainer.fit(module, datamodule=data), lambda: plain_epochs(plain_module, batches, epochs, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating Lightning / plain rounds")
    parser.add_argument("--stack", type=int, default=1, help="models trained as one (1: a model alone)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = datamodules(1, args.batch_size)[0]
    initial = DynamicsModule(members=5, width=args.width)
    rows = len(data.train_set) * args.epochs * args.stack  # every model's rows
    steady_rows = len(data.train_set) * (args.epochs - 1) * args.stack
    rounds = []
    # a shared machine's speed drifts by tens of percent from one minute to the next, so the two
    # sides alternate, round after round, and each round's ratio is reported with the median
    for i in range(args.rounds):
        timer = EpochTimer()
        trainer = bare_trainer(args.epochs, args.device, callbacks=[timer])
        fit, plain = sides(initial, data, trainer, args.stack, args.epochs, args.device)
        seconds = {}
        for side in ("lightning", "plain") if i % 2 == 0 else ("plain", "lightning"):  # neither always goes first
            start = time.perf_counter()
            if side == "lightning":
                fit()
            else:
                plain_seconds = plain()
            seconds[side] = time.perf_counter() - start
        t_lightning, t_plain = seconds["lightning"], seconds["plain"]
        # steady state: epochs after the first (fit start-up, allocator warm-up excluded on both sides)
        steady_lightning, steady_plain = sum(timer.seconds[1:]), sum(plain_seconds[1:])
        rounds.append(
            {
                "lightning_rows_per_s": round(rows / t_lightning),
                "plain_rows_per_s": round(rows / t_plain),
                "ratio_lightning_time_over_plain": round(t_lightning / t_plain, 3),
                "steady_lightning_rows_per_s": round(steady_rows / steady_lightning),
                "steady_plain_rows_per_s": round(steady_rows / steady_plain),
                "steady_ratio_lightning_over_plain": round(steady_lightning / steady_plain, 3),
            }
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    header = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "stack": args.stack,
    }
    print(json.dumps({**header, "width": args.width, "rows": rows, **median, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
