"""The one channel from the workload to whoever is watching it (the harness, a test, nobody).

Stages call ``observer.event(key, value, **metadata)``; they never know who listens. The harness
runs a stage in a child process and gives it a :class:`JsonlObserver`, then tails the file for its
live display and its event log. Keys are the constants below, nothing else.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Protocol

# Event keys (one vocabulary, shared by every stage).
STAGE_START = "stage_start"  # value: stage name; metadata: resolved config
STAGE_END = "stage_end"  # value: stage name; metadata: the stage's result dict
STEP = "step"  # value: step index; metadata: loss, dt, tok_per_s, mfu, lr_mult, fingerprint, ...
EVAL = "eval"  # value: metric name; metadata: value, step
PROGRESS = "progress"  # value: done; metadata: total, what
LOG = "log"  # value: a human-readable line


class Observer(Protocol):
    def event(self, key: str, value: Any = None, /, **metadata: Any) -> None: ...


class NullObserver:
    """Listens to nothing. The default when a stage is called directly."""

    def event(self, key: str, value: Any = None, /, **metadata: Any) -> None:
        return None


class ListObserver:
    """Keeps events in memory (tests, in-process callers)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, key: str, value: Any = None, /, **metadata: Any) -> None:
        self.events.append({"key": key, "value": value, "metadata": metadata})

    def of(self, key: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["key"] == key]


class JsonlObserver:
    """Appends one JSON object per event to a file, flushed per line so a reader can tail it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def event(self, key: str, value: Any = None, /, **metadata: Any) -> None:
        record = {"time_ms": int(time.time() * 1000), "key": key, "value": value, "metadata": metadata}
        self._fh.write(json.dumps(record, default=_jsonable) + "\n")

    def close(self) -> None:
        self._fh.close()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
