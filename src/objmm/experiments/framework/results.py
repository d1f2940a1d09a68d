"""An experiment's results file: the settings it was made with and its pieces, keyed, rewritten
atomically as each piece lands.

The same command after a kill opens the same file and goes on with the pieces it lacks; a file
made with other settings is refused, and a damaged one named, each in one line that says what to
do. JSON for tables of plain data (`population.json`, `reweight.json`), pickle for a search's
state that holds objects (`attack_state.pkl`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments.framework.config import names_setting, plain, what_settings

#: settings added to objmm after results files were written, each with the value that does what objmm
#: did before it: a file that lacks one was made with that value, and goes on
ADDED_SETTINGS = {"cem.precision": "float32", "cem.compile": False, "trials": None, "references": 1}


def same_settings(saved, now, may_grow: tuple[str, ...] = ()) -> bool:
    """`saved == now`, but for settings `saved` predates (`ADDED_SETTINGS`) set to their old behaviour,
    for `config.HOW_SETTINGS`, which may differ, and for the lists named in `may_grow` (a grid's seeds
    or sizes), which may gain entries: every saved entry still there, more beside them."""
    if saved == now or not (isinstance(saved, dict) and isinstance(now, dict)):
        return saved == now
    before, after = what_settings(saved), what_settings(now)
    for key in may_grow:
        old, new = before.get(key), after.get(key)
        if isinstance(old, list) and isinstance(new, list) and all(entry in new for entry in old):
            before[key] = new

    def as_before(key: str) -> bool:  # a setting the file predates, at the value that changes nothing
        return any(names_setting(key, name) and after[key] == value for name, value in ADDED_SETTINGS.items())

    return before == {key: value for key, value in after.items() if key in before or not as_before(key)}


class ResultsFile:
    """`path` holds `{"settings": settings, field: [piece, ...]}` (or `{piece[key]: piece}` with
    `by_key`), each piece a dict with a unique `piece[key]`. `pieces` is every piece landed so far,
    by key, in the order they landed.

    Args:
        path: the file (`.json`, or `.pkl` for pieces that are not plain data).
        settings: what makes two runs the same (plain data: `config.plain`).
        field: the name of the pieces in the file (`rows`, `cells`, ...).
        key: the field of a piece that names it.
        setting: the setting that names the folder, for the message that refuses other settings.
        may_change: the settings that may change between a run and its resume, for the same message.
        by_key: the file holds the pieces as an object keyed by `key` instead of a list.
        may_grow: lists of the settings (flat keys, `seeds`) that may gain entries: the file goes on,
            its pieces kept, and the new entries' pieces are added.
    """

    def __init__(
        self,
        path: Path,
        settings: dict,
        field: str = "pieces",
        key: str = "name",
        setting: str = "out",
        may_change: str = "",
        by_key: bool = False,
        may_grow: tuple[str, ...] = (),
    ):
        self.path, self.settings, self.field, self.key = Path(path), plain(settings), field, key
        self.pickled, self.by_key = self.path.suffix == ".pkl", by_key
        self.pieces: dict[str, dict] = {}
        self.extra: dict = {}
        if not self.path.exists():
            return
        saved = self.read()
        if not same_settings(plain(saved.get("settings")), self.settings, may_grow):
            section = f"{setting.rpartition('.')[0]}." if "." in setting else ""
            changes = [f"{may_change} may change"] * bool(may_change)
            changes += [f"{' and '.join(section + key for key in may_grow)} may gain entries"] * bool(may_grow)
            keep = f", only {' and '.join(changes)}," if changes else ""
            raise ObjmmError(
                f"{self.path} was made with other settings; use another {setting} (or the same settings{keep} to go on)"
            )
        pieces = saved.get(field, [])
        pieces = pieces.values() if isinstance(pieces, dict) else pieces
        self.pieces = {piece[key]: piece for piece in pieces}
        self.extra = {k: v for k, v in saved.items() if k not in ("settings", field)}

    def read(self) -> dict:
        try:
            if self.pickled:
                return pickle.loads(self.path.read_bytes())
            return json.loads(self.path.read_text())
        except Exception as error:  # truncated, altered, not ours: name it, never a traceback from json/pickle
            raise ObjmmError(f"{self.path} is damaged ({type(error).__name__}); move it away to start again") from None

    def __contains__(self, key: str) -> bool:
        return key in self.pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def add(self, *pieces: dict, **extra) -> None:
        """Land pieces (a piece that lands twice is written once) and any other entries, then rewrite the file."""
        for piece in pieces:
            self.pieces[piece[self.key]] = piece
        self.extra.update(extra)
        self.write()

    def write(self) -> None:
        pieces = dict(self.pieces) if self.by_key else list(self.pieces.values())
        payload = {"settings": self.settings, self.field: pieces, **self.extra}
        if self.pickled:
            data = pickle.dumps(payload)
            atomic.write_atomically(self.path, lambda tmp: Path(tmp).write_bytes(data))
        else:
            atomic.write_json(self.path, payload)
