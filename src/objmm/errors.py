"""The one exception objmm raises for bad input; the CLI prints it as one line and exits non-zero."""


class ObjmmError(Exception):
    """A problem with the user's input or run (unknown env, bad dataset, diverged loss)."""
