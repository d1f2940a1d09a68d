"""`objmm`: one command line for every experiment: the usage, then `commands.dispatch` (each
command's module is imported only when it runs, so `objmm --help` and a mistyped command answer
at once, without torch or Lightning).

Bad input ends with one line, `objmm: error: ...`, and exit status 2; Ctrl-C with the line that
says how to go on, and exit status 130.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from objmm import interrupts
from objmm.commands import COMMANDS, dispatch
from objmm.errors import objmm_cause


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return (
        "usage: objmm COMMAND --config CONFIG [--section.setting VALUE ...]\n\n"
        "objmm studies and fixes objective mismatch in model-based RL. Commands:\n"
        + "\n".join(lines)
        + "\n\n`objmm COMMAND --help` lists a command's settings; `--print_config` prints them all."
    )


def main(args: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # "Seed set to 0"
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning vs newer torch, not ours
    # LightningCLI warns when called in-process (tests, notebooks) while sys.argv holds other arguments
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    try:
        with interrupts.handled():
            dispatch(argv)
    except Exception as error:
        cause = objmm_cause(error)
        if cause is None:
            raise
        finish_wandb(exit_code=2)
        print(f"objmm: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        finish_wandb(exit_code=130)
        print(f"objmm: interrupted; {interrupt}" if str(interrupt) else "objmm: interrupted", file=sys.stderr)
        sys.exit(130)
    finish_wandb(exit_code=0)


def finish_wandb(exit_code: int) -> None:
    """Close the W&B run, if the command started one (W&B is imported only by commands that log)."""
    if "wandb" in sys.modules:
        from objmm.experiments.framework.run import finish_wandb as finish

        finish(exit_code)


__all__ = ["COMMANDS", "main"]
