"""Parallel, resumable, verified blob downloads into the blob cache.

Each blob is fetched by one worker of a bounded pool (``jobs``), hashed as
it streams into ``partial/<digest>``, and resumed with ``Range`` from where
it broke: after a dropped connection (retried alone, with backoff), and
after the process was killed (the next run finds the partial file). A
download that ends with the wrong size or digest is dropped and tried
again from zero a few times, then fails naming the layer. A blob becomes a
cache entry only once verified; blobs already in the cache are re-hashed
and reused.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import urllib3

from ..errors import DigestMismatch, RegistryError
from ..layers.streams import Reader
from . import progress as P
from .blobcache import BlobCache, hash_file
from .client import Client, iter_body
from .transport import CONNECTION_ERRORS, RETRY_STATUS, RetryPolicy, brief

READ_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError)


class Cancelled(Exception):
    pass


class _Broken(Exception):
    """The body stopped early: resume from what arrived."""


_RETRYABLE: tuple[type[BaseException], ...] = (_Broken, *READ_ERRORS)


@dataclass(frozen=True)
class Want:
    digest: str
    size: int | None
    what: str            # "layer 3" (for messages and progress)


class Fetcher:
    def __init__(self, client: Client, cache: BlobCache | None = None, *, jobs: int = 4,
                 progress: P.ProgressFn | None = None, retry: RetryPolicy | None = None,
                 mismatch_attempts: int = 3) -> None:
        self.client = client
        self.cache = cache or BlobCache()
        self.jobs = max(1, jobs)
        self.progress = progress or P.silent
        self.retry = retry or client.t.retry
        self.mismatch_attempts = mismatch_attempts
        self.bytes_fetched = 0
        self._count_lock = threading.Lock()

    def fetch(self, wants: list[Want]) -> dict[str, str]:
        """Every wanted blob as a verified file in the cache: digest -> path."""
        unique: dict[str, Want] = {}
        for w in wants:
            unique.setdefault(w.digest, w)
        todo = list(unique.values())
        self.progress(P.Event(P.PLAN, n=sum(w.size or 0 for w in todo), total=len(todo)))
        if not todo:
            return {}
        stop = threading.Event()
        out: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=min(self.jobs, len(todo)), thread_name_prefix="imggit-pull")
        try:
            futures = {pool.submit(self._one, w, stop): w for w in todo}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    stop.set()
                    for p in pending:
                        p.cancel()
                    raise f.exception()  # type: ignore[misc]
            for f, w in futures.items():
                out[w.digest] = f.result()
            return out
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- one blob --------------------------------------------------------------------------

    def _one(self, w: Want, stop: threading.Event) -> str:
        with self.cache.lock(w.digest):
            if stop.is_set():
                raise Cancelled()
            found = self.cache.verify(w.digest, w.size)
            if found is not None:
                self.progress(P.Event(P.CACHED, w.digest, w.what, w.size, w.size or 0))
                return found
            return self._download(w, stop)

    def _download(self, w: Want, stop: threading.Event) -> str:
        part = self.cache.partial(w.digest)
        os.makedirs(os.path.dirname(part), exist_ok=True)
        failures = 0        # consecutive failures without progress
        mismatches = 0
        while True:
            offset = os.path.getsize(part) if os.path.exists(part) else 0
            if w.size is not None and offset > w.size:
                os.truncate(part, 0)
                offset = 0
            h = hash_file(part, offset) if offset else None
            self.progress(P.Event(P.START, w.digest, w.what, w.size, offset))
            before = offset
            try:
                n, h = self._stream(w, part, offset, h, stop)
            except _Broken as e:
                got = os.path.getsize(part) if os.path.exists(part) else 0
                failures = 0 if got > before else failures + 1
                if failures >= self.retry.attempts:
                    raise RegistryError(f"{w.what} ({w.digest[:19]}): download failed {failures} times in a row "
                                        f"({e})", hint="run the same command again: it resumes") from None
                delay = self.retry.delay(failures)
                self.progress(P.Event(P.RETRY, w.digest, w.what, w.size, int(delay * 1000), str(e)))
                time.sleep(delay)
                continue
            got = "sha256:" + h.hexdigest()
            if (w.size is None or n == w.size) and got == w.digest:
                path = self.cache.adopt(part, w.digest)
                self.progress(P.Event(P.DONE, w.digest, w.what, w.size, n))
                return path
            with contextlib.suppress(OSError):
                os.unlink(part)
            mismatches += 1
            why = (f"expected {w.size} bytes, got {n}" if w.size is not None and n != w.size
                   else f"digest mismatch: expected {w.digest}, got {got}")
            if mismatches >= self.mismatch_attempts:
                raise DigestMismatch(f"{w.what} ({w.digest[:19]}) from {self.client.name}: {why} "
                                     f"(tried {mismatches} times)")
            self.progress(P.Event(P.RESTART, w.digest, w.what, w.size, 0, why))

    def _stream(self, w: Want, part: str, offset: int, h: Any, stop: threading.Event) -> tuple[int, Any]:
        import hashlib

        if h is None:
            h = hashlib.sha256()

        def on_retry(reason: str, delay: float) -> None:
            self.progress(P.Event(P.RETRY, w.digest, w.what, w.size, int(delay * 1000), reason))

        try:
            resp = self.client.get_blob(w.digest, offset, on_retry=on_retry)
        except RegistryError as e:
            if e.status is None or e.status in RETRY_STATUS:
                raise _Broken(str(e)) from None
            raise
        try:
            if resp.status_code == 416 or (resp.status_code == 200 and offset):
                # the registry cannot resume from here: start again from the first byte
                if resp.status_code == 416:
                    resp.close()
                    os.truncate(part, 0)
                    raise _Broken("the registry refused to resume (HTTP 416)")
                os.truncate(part, 0)
                offset = 0
                h = hashlib.sha256()
                self.progress(P.Event(P.RESTART, w.digest, w.what, w.size, 0, "no range support"))
            elif resp.status_code == 206:
                cr = resp.headers.get("Content-Range", "")
                start = cr.split(" ", 1)[-1].split("-", 1)[0]
                if not start.isdigit() or int(start) != offset:
                    os.truncate(part, 0)
                    raise _Broken(f"the registry answered range {cr!r} for offset {offset}")
            n = offset
            with open(part, "ab" if offset else "wb", buffering=0) as f:
                body = iter_body(resp)
                while True:
                    if stop.is_set():
                        raise Cancelled()
                    try:
                        chunk = next(body, b"")
                    except READ_ERRORS as e:
                        raise _Broken(brief(e)) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    n += len(chunk)
                    with self._count_lock:
                        self.bytes_fetched += len(chunk)
                    self.progress(P.Event(P.ADVANCE, w.digest, w.what, w.size, len(chunk)))
                    if w.size is not None and n > w.size:
                        break
            if w.size is not None and n < w.size:
                raise _Broken(f"connection closed after {n} of {w.size} bytes")
            return n, h
        finally:
            resp.close()


class RemoteBlob(Reader):
    """A blob read straight from the registry, resuming with Range when the connection drops."""

    def __init__(self, client: Client, digest: str, size: int | None, what: str) -> None:
        self.client = client
        self.digest = digest
        self.size = size
        self.what = what
        self._resp: Any = None
        self._body: Any = None
        self._pos = 0          # bytes received so far (including those in _buf)
        self._buf = b""
        self._failures = 0

    def _open(self) -> None:
        resp = self.client.get_blob(self.digest, self._pos)
        if resp.status_code == 416:
            resp.close()
            raise RegistryError(f"{self.what}: the registry refused to resume at byte {self._pos}", status=416)
        body = iter_body(resp)
        if resp.status_code == 200 and self._pos:
            skip = self._pos     # no Range support: read past what we have
            while skip > 0:
                b = next(body, b"")
                if not b:
                    break
                if len(b) > skip:
                    self._buf += b[skip:]
                skip -= len(b)
        self._resp, self._body = resp, body

    def _fill(self) -> bytes:
        """The next piece of the body (b"" at its end), reconnecting as needed."""
        while True:
            try:
                if self._body is None:
                    self._open()
                    if self._buf:
                        data, self._buf = self._buf, b""
                        self._pos += len(data)
                        return data
                data = next(self._body, b"")
                if not data and self.size is not None and self._pos < self.size:
                    raise _Broken(f"connection closed after {self._pos} of {self.size} bytes")
                self._pos += len(data)
                self._failures = 0
                return data  # type: ignore[no-any-return]
            except _RETRYABLE as e:
                self._drop()
                self._failures += 1
                if self._failures >= self.client.t.retry.attempts:
                    raise RegistryError(f"{self.what}: reading from {self.client.name} failed: {brief(e)}") from None
                time.sleep(self.client.t.retry.delay(self._failures))
            except RegistryError as e:
                self._drop()
                if e.status is not None and e.status not in RETRY_STATUS:
                    raise
                self._failures += 1
                if self._failures >= self.client.t.retry.attempts:
                    raise
                time.sleep(self.client.t.retry.delay(self._failures))

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._pending()]
            while True:
                b = self._fill()
                if not b:
                    return b"".join(parts)
                parts.append(b)
        if not self._rest:
            self._rest = self._fill()
        data, self._rest = self._rest[:n], self._rest[n:]
        return data

    _rest = b""

    def _pending(self) -> bytes:
        data, self._rest = self._rest, b""
        return data

    def _drop(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
        self._resp = self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
