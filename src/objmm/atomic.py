"""Write result files atomically: into a temporary file beside the target, then rename it into place,
so a crash or a kill never leaves half a file behind; and delete folders so that a kill never leaves
half a folder where a resumed run would read it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it and set it back
    os.umask(mask)
    return mask


#: read once, at import: reading sets the mask for a moment, which a thread writing files meanwhile
#: (`AttemptClock`'s) would otherwise race against
_UMASK = _read_umask()


def umask() -> int:
    """The process's file-creation mask, as it was when objmm started."""
    return _UMASK


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` and rename the temporary file to `path`; the file gets the usual
    permissions (0666 less the umask), not mkstemp's owner-only 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, payload: dict) -> Path:
    return write_text(path, json.dumps(payload, indent=2))


def remove_folder(path: Path) -> None:
    """Delete the folder `path`, renamed aside first (to `.NAME.deleting`, which the next call for
    the same path clears): a kill while deleting leaves no half-deleted folder at `path` (a resumed
    run's partial results, a dataset's previous copy) for a later run to read as a whole one."""
    path = Path(path)
    aside = path.with_name(f".{path.name}.deleting")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(path, aside)
    shutil.rmtree(aside)
