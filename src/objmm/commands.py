"""objmm's commands: each is a module of `objmm.experiments` with a `main(argv)`, imported only when
that command runs (so `objmm --help` and a mistyped command answer at once, without torch or
Lightning). `dispatch` runs one in this process; `cli.main` is `objmm` itself, and `objmm
reproduce` runs the paper's commands through `dispatch` too."""

from __future__ import annotations

import difflib
import importlib

from objmm.errors import ObjmmError

#: command -> (module with `main(argv)`, what it does)
COMMANDS = {
    "fit": ("objmm.experiments.fit", "fit a model, its real reward measured as it trains (Fig. 4-5)"),
    "validate": ("objmm.experiments.fit", "Lightning's validate on a fit config"),
    "test": ("objmm.experiments.fit", "Lightning's test on a fit config"),
    "predict": ("objmm.experiments.fit", "Lightning's predict on a fit config"),
    "pets": ("objmm.experiments.pets", "the PETS loop: train, plan, collect, per trial (Fig. 3's runs, App. A-B)"),
    "data": ("objmm.experiments.datasets", "the paper's datasets: grid, sampled, babbling, expert, on-policy"),
    "evaluate": ("objmm.experiments.evaluate", "saved models' LL, NLL and MSE on named datasets"),
    "pets-sweep": ("objmm.experiments.pets_sweep", "many PETS runs (seeds x model types): a population"),
    "fit-sweep": ("objmm.experiments.fit_sweep", "many fits per model type, reward and NLL per epoch (Fig. 4-5)"),
    "population": ("objmm.experiments.population", "LL against reward of every model of a population (Fig. 3)"),
    "attack": ("objmm.experiments.attack", "lower a model's reward without lowering its LL (Sec. 4.3, Fig. 6-7)"),
    "reweight": ("objmm.experiments.reweight", "re-weighted losses on the (S, eps) grid (Sec. 5, Fig. 8, App. D)"),
    "pairs": ("objmm.experiments.pairs", "models of similar LL and far-apart rewards (App. E)"),
    "goals": ("objmm.experiments.goals", "a PETS run's models on other goals, without retraining (App. B, Fig. 11-13)"),
    "babbling": ("objmm.experiments.babbling", "PETS from off-task initial data of growing size (App. A, Fig. 10)"),
    "benchmark": (
        "objmm.experiments.benchmark",
        "loss objectives against the mismatch, on equal terms: a ranked table",
    ),
    "reproduce": ("objmm.experiments.reproduce", "the paper's experiments in order, a report beside its numbers"),
}
#: the commands that are LightningCLI's own subcommands (their module's `main` takes the subcommand too)
LIGHTNING = ("fit", "validate", "test", "predict")


def command_of(argv: list[str]) -> str:
    """The command `argv` runs; a one-line error (with a guess) for one that does not exist."""
    if not argv or argv[0].startswith("-"):
        return "fit"  # `objmm --config X` is fit's, as LightningCLI reads it (and asks for a subcommand)
    if argv[0] not in COMMANDS:
        guess = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"did you mean {guess[0]}? " if guess else ""
        raise ObjmmError(f"unknown command {argv[0]!r}; {hint}(`objmm --help` lists the commands)")
    return argv[0]


def dispatch(argv: list[str]) -> None:
    """Run `objmm ARGV...` in this process (errors are raised, not printed: `main` prints them)."""
    command = command_of(argv)
    module = importlib.import_module(COMMANDS[command][0])
    module.main(argv if command in LIGHTNING or argv[0].startswith("-") else argv[1:])


__all__ = ["COMMANDS", "LIGHTNING", "command_of", "dispatch"]
