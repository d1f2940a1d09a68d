"""The one exception objmm raises for bad input; the CLI prints it as one line and exits non-zero."""


class ObjmmError(Exception):
    """A problem with the user's input or run (unknown env, bad dataset, diverged loss)."""


def require_at_least_one(section: str, **counts: int | None) -> None:
    """Raise one line naming the first count below 1, as `<section>.<name>` (a count of None, "not
    set", passes): the check every settings class makes of its sizes."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ObjmmError(f"{section + '.' if section else ''}{name} must be at least 1, got {value}")


def objmm_cause(error: BaseException) -> ObjmmError | None:
    """The ObjmmError behind `error`, if any: jsonargparse wraps the errors of the classes it
    instantiates (a callback's bad setting) in its own, with ours as the cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ObjmmError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
