"""What imggit has learnt about registries, kept between runs (like Docker's v2 metadata).

- which repositories of a registry hold a blob (seen in a manifest it read,
  pulled, or pushed there): a push to another repository of the same
  registry mounts it instead of uploading it;
- which compressed blobs have the content of a diff id (pushed or pulled):
  a push from the engine, whose layers are uncompressed, finds the blob
  the registry already has without compressing the layer again.

One SQLite file under ``$IMGGIT_HOME/cache``; losing it costs only speed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import Iterable, Iterator

from ..config import cache_path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_repo (host TEXT, repo TEXT, digest TEXT, seen REAL,
                                      PRIMARY KEY (host, digest, repo));
CREATE TABLE IF NOT EXISTS diff_blob (diff_id TEXT, digest TEXT, media_type TEXT, size INTEGER,
                                      PRIMARY KEY (diff_id, digest));
"""


class Knowledge:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or cache_path("registry.sqlite")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.executescript(_SCHEMA)
            with con:
                yield con
        finally:
            con.close()

    def _safe(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.suppress(sqlite3.Error, OSError)   # a cache: never fail a transfer over it

    def saw(self, host: str, repo: str, digests: Iterable[str]) -> None:
        now = time.time()
        rows = [(host, repo, d, now) for d in set(digests)]
        if not rows:
            return
        with self._safe(), self._db() as db:
            db.executemany("INSERT OR REPLACE INTO blob_repo VALUES (?, ?, ?, ?)", rows)

    def forget(self, host: str, repo: str, digest: str) -> None:
        with self._safe(), self._db() as db:
            db.execute("DELETE FROM blob_repo WHERE host=? AND repo=? AND digest=?", (host, repo, digest))

    def repos_with(self, host: str, digest: str, exclude: str | None = None) -> list[str]:
        with self._safe(), self._db() as db:
            rows = db.execute("SELECT repo FROM blob_repo WHERE host=? AND digest=? ORDER BY seen DESC",
                              (host, digest)).fetchall()
            return [r[0] for r in rows if r[0] != exclude]
        return []

    def same_content(self, diff_id: str, digest: str, media_type: str, size: int) -> None:
        if digest == diff_id:
            return
        with self._safe(), self._db() as db:
            db.execute("INSERT OR REPLACE INTO diff_blob VALUES (?, ?, ?, ?)", (diff_id, digest, media_type, size))

    def blobs_for(self, diff_id: str) -> list[tuple[str, str, int]]:
        """(digest, media type, size) of compressed blobs known to hold this diff id."""
        with self._safe(), self._db() as db:
            return [(r[0], r[1], int(r[2])) for r in db.execute(
                "SELECT digest, media_type, size FROM diff_blob WHERE diff_id=?", (diff_id,)).fetchall()]
        return []
