"""The local blob cache: verified blobs by digest, and partial downloads to resume.

::

    $IMGGIT_HOME/cache/blobs/sha256/<hex>           complete, verified blobs
    $IMGGIT_HOME/cache/blobs/partial/<digest>       a download in progress (or broken off)
    $IMGGIT_HOME/cache/blobs/partial/<digest>.lock  held by the process downloading it

A partial file only ever grows by bytes received in order, so after a
crash (even SIGKILL) the next download resumes from its length with an HTTP
Range request; it becomes a complete blob only once its digest checked.

A blob's mtime is the last time a pull used it: ``imggit gc`` removes what
no pull used (and partial downloads nobody resumed) for ``--prune`` days.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from dataclasses import dataclass
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


@dataclass
class PruneResult:
    removed: int = 0
    freed: int = 0
    kept: int = 0


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
            with contextlib.suppress(OSError):
                os.utime(p)             # used now: gc keeps it another --prune days
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

    def prune(self, max_age: float, dry_run: bool = False) -> PruneResult:
        """Remove blobs no pull used, and partial downloads nobody resumed, for ``max_age`` seconds.

        A partial download that a running pull holds (its lock is taken) is never touched.
        """
        res = PruneResult()
        if not os.path.isdir(self.root):
            return res
        cutoff = time.time() - max_age

        def expire(path: str, free: bool = True) -> bool:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if not free or st.st_mtime >= cutoff:
                    res.kept += 1
                    return False
                if not dry_run:
                    os.unlink(path)
                res.removed += 1
                res.freed += st.st_size
                return True
            return False

        for alg in sorted(os.listdir(self.root)):
            d = os.path.join(self.root, alg)
            if alg != "partial" and os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    expire(os.path.join(d, name))
        pdir = os.path.join(self.root, "partial")
        names = sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []
        for name in names:
            if not name.endswith(".lock"):
                with self._try_lock(name, create=not dry_run) as free:
                    if expire(os.path.join(pdir, name), free) and not dry_run:
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(pdir, name + ".lock"))
        if not dry_run:
            for name in names:
                # a lock file left by a download that is gone, and that nobody holds
                if name.endswith(".lock") and not os.path.exists(os.path.join(pdir, name[:-5])):
                    with contextlib.suppress(OSError), self._try_lock(name[:-5]) as free:
                        if free:
                            os.unlink(os.path.join(pdir, name))
        return res

    @contextlib.contextmanager
    def _try_lock(self, digest: str, create: bool = True) -> Iterator[bool]:
        """The download lock of ``digest`` without waiting: yields whether it was free (without
        ``create``, a lock file that is not there counts as free and is not made)."""
        try:
            fd = os.open(self.partial(digest) + ".lock", os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
