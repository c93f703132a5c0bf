"""Transfer progress as events; the library reports, the CLI renders (or not).

Callbacks run on worker threads, so a renderer must be thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# kinds
PLAN = "plan"          # n = total bytes to move, total = number of blobs
START = "start"        # a blob begins (n = bytes already there, from a partial download)
ADVANCE = "advance"    # n more bytes
DONE = "done"          # a blob is complete and verified
CACHED = "cached"      # a blob was found complete in the cache (verified)
EXISTS = "exists"      # the destination registry has it already
MOUNTED = "mounted"    # linked from another repository of the same registry
RETRY = "retry"        # a transfer failed and will be tried again (note = why, n = wait ms)
RESTART = "restart"    # the bytes of a blob were dropped and it starts again from 0


@dataclass(frozen=True)
class Event:
    kind: str
    key: str = ""              # the blob digest
    what: str = ""             # "layer 3", "config"
    total: int | None = None   # the blob's size
    n: int = 0
    note: str = ""


ProgressFn = Callable[[Event], None]


def silent(event: Event) -> None:
    pass
