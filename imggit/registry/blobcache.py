"""The local blob cache: verified blobs by digest, and partial downloads to resume.

::

    $IMGGIT_HOME/cache/blobs/sha256/<hex>           complete, verified blobs
    $IMGGIT_HOME/cache/blobs/partial/<digest>       a download in progress (or broken off)
    $IMGGIT_HOME/cache/blobs/partial/<digest>.lock  held by the process downloading it

A partial file only ever grows by bytes received in order, so after a
crash (even SIGKILL) the next download resumes from its length with an HTTP
Range request; it becomes a complete blob only once its digest checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from typing import Iterator

from ..config import cache_path


def hash_file(path: str, limit: int | None = None) -> "hashlib._Hash":
    h = hashlib.sha256()
    left = limit
    with open(path, "rb", buffering=0) as f:
        while left is None or left > 0:
            b = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h


class BlobCache:
    def __init__(self, root: str | None = None) -> None:
        self.root = root or cache_path("blobs")

    def complete(self, digest: str) -> str:
        alg, _, hexd = digest.partition(":")
        return os.path.join(self.root, alg, hexd)

    def partial(self, digest: str) -> str:
        return os.path.join(self.root, "partial", digest)

    def has(self, digest: str, size: int | None) -> str | None:
        p = self.complete(digest)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return None
        return p if size is None or st.st_size == size else None

    def verify(self, digest: str, size: int | None) -> str | None:
        """The complete blob if it is there and still hashes to its digest (else it is dropped)."""
        p = self.has(digest, size)
        if p is None:
            return None
        if "sha256:" + hash_file(p).hexdigest() == digest:
            return p
        with contextlib.suppress(OSError):
            os.unlink(p)
        return None

    def adopt(self, partial: str, digest: str) -> str:
        dest = self.complete(digest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(partial, dest)
        return dest

    @contextlib.contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        """One process (and thread) downloads a digest at a time; others wait, then find it done."""
        path = self.partial(digest) + ".lock"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
