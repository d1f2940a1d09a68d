"""`AttemptClock`: a resumable job's wall time over all its attempts, not only the last one.

A job killed and started again goes on where it stopped, so the attempt that finishes it is timed
short. The clock keeps each job's seconds so far in a JSON file (one key per job), written when the
attempt ends and every `every` seconds while it runs (a daemon thread: a kill -9 loses at most that
much); the next attempt of the same key starts from them. `forget` drops a finished job's key;
`carry` puts a finished job's seconds back, for a redo that goes on from where it finished.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from objmm import atomic


class AttemptClock:
    def __init__(self, path: Path, key: str, every: float = 30.0):
        self.path, self.key, self.every = Path(path), key, every
        self._lock = threading.Lock()  # the thread and the caller both write the file
        self._stop = threading.Event()
        earlier = self._read().get(key, {})
        self.earlier, self.attempts = float(earlier.get("seconds", 0.0)), int(earlier.get("attempts", 0)) + 1
        self._start: float | None = None

    @property
    def seconds(self) -> float:
        """The earlier attempts' seconds and this one's so far."""
        return self.earlier + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def __enter__(self) -> AttemptClock:
        self._start = time.perf_counter()
        self._write()
        self._thread = threading.Thread(target=self._beat, name="objmm-attempt-clock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._write()
        self.earlier, self._start = self.seconds, None

    def forget(self) -> None:
        """Drop this job's key once its time is recorded elsewhere (a redo puts it back with `carry`)."""
        with self._lock:
            kept = {k: v for k, v in self._read().items() if k != self.key}
            atomic.write_json(self.path, kept)

    @classmethod
    def carry(cls, path: Path, key: str, seconds: float, attempts: int) -> None:
        """Start `key`'s next attempt from a finished job's `seconds` over `attempts` (set, not added:
        carrying the same job twice counts it once)."""
        clock = cls(path, key)
        clock.earlier, clock.attempts = float(seconds), int(attempts)
        clock._write()  # not started: its seconds are the earlier ones

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _write(self) -> None:
        with self._lock:
            clocks = self._read()
            clocks[self.key] = {"seconds": self.seconds, "attempts": self.attempts}
            atomic.write_json(self.path, clocks)
