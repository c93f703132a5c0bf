"""Pushing blobs: only what the registry lacks, mounted when another repository has it.

For each blob: HEAD it; else, for a layer stored uncompressed, look for a
compressed blob with the same diff id that the registry has; else mount it
from another repository of the same registry that is known to hold it
(``Knowledge``); else upload it. Stored bytes of a known digest and size go
up in one PUT (monolithic); a layer compressed on the way has no digest
until its end, so it goes up in ``Content-Range`` chunks (PATCH) and the
closing PUT names the digest. A failed upload is retried whole.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any, BinaryIO, Callable

from ..errors import RegistryError
from ..layers.compress import compressor
from ..layers.streams import HashingWriter
from ..model import Descriptor
from . import progress as P
from .client import Client
from .knowledge import Knowledge
from .transport import RETRY_STATUS, RetryPolicy, CONNECTION_ERRORS, brief

CHUNK = 16 << 20      # bytes per PATCH of a chunked upload (memory per job)


class _Counting:
    """A file-like body that reports progress every MiB (requests reads it in blocks)."""

    def __init__(self, f: BinaryIO, size: int, report: Callable[[int], None]) -> None:
        self._f = f
        self._size = size
        self._report = report
        self._pending = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._pending += len(data)
        if self._pending >= (1 << 20) or not data:
            self._report(self._pending)
            self._pending = 0
        return data

    def close(self) -> None:
        self._f.close()


class _ChunkSink:
    """Collects compressed bytes and PATCHes them in order; errors surface on the caller's thread."""

    def __init__(self, client: Client, location: str, report: Callable[[int], None],
                 chunk: int | None = None) -> None:
        self.client = client
        self.location = location
        self.report = report
        self.chunk = chunk or CHUNK
        self.buf = bytearray()
        self.sent = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def write(self, b: Any) -> int:
        with self._lock:
            if self.error is None:
                self.buf += b
                try:
                    while len(self.buf) >= self.chunk:
                        self._send(bytes(self.buf[: self.chunk]))
                        del self.buf[: self.chunk]
                except BaseException as e:  # re-raised by finish()
                    self.error = e
        return len(b)

    def flush(self) -> None:
        pass

    def _send(self, data: bytes) -> None:
        self.location = self.client.patch_chunk(self.location, self.sent, data)
        self.sent += len(data)
        self.report(len(data))

    def finish(self, digest: str) -> None:
        with self._lock:
            if self.error is None and self.buf:
                try:
                    self._send(bytes(self.buf))
                    self.buf.clear()
                except BaseException as e:
                    self.error = e
            if self.error is not None:
                raise self.error
        self.client.finish_upload(self.location, digest)


class Pusher:
    def __init__(self, client: Client, knowledge: Knowledge, progress: P.ProgressFn | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.knowledge = knowledge
        self.progress = progress or P.silent
        self.retry = retry or RetryPolicy(attempts=3)
        self._present: dict[str, int] = {}
        self._lock = threading.Lock()
        self.mounted = 0
        self.uploaded = 0
        self.uploaded_bytes = 0

    # --- what is there --------------------------------------------------------------------

    def has(self, digest: str) -> int | None:
        with self._lock:
            if digest in self._present:
                return self._present[digest]
        size = self.client.blob_size(digest)
        if size is not None:
            self._learn(digest, size)
        return size

    def _learn(self, digest: str, size: int) -> None:
        with self._lock:
            self._present[digest] = size

    def mount(self, digest: str, size: int | None, what: str) -> bool:
        """Link the blob from another repository of this registry that is known to hold it."""
        name = self.client.name
        for repo in self.knowledge.repos_with(name.host, digest, exclude=name.repo)[:3]:
            try:
                mounted, _ = self.client.start_upload(mount=digest, source=repo)
            except RegistryError:
                continue
            if mounted:
                if size is not None:
                    self._learn(digest, size)
                with self._lock:
                    self.mounted += 1
                self.progress(P.Event(P.MOUNTED, digest, what, size, size or 0, repo))
                return True
            self.knowledge.forget(name.host, repo, digest)
        return False

    def locate(self, digest: str, size: int | None, what: str) -> bool:
        if self.has(digest) is not None:
            return True
        return self.mount(digest, size, what)

    # --- uploads ------------------------------------------------------------------------------

    def _retrying(self, what: str, digest: str, size: int | None, attempt_fn: Callable[[], Any]) -> Any:
        failures = 0
        while True:
            try:
                return attempt_fn()
            except RegistryError as e:
                if e.status is not None and e.status not in RETRY_STATUS:
                    raise
                err: BaseException = e
            except CONNECTION_ERRORS as e:
                err = e
            failures += 1
            if failures >= self.retry.attempts:
                raise RegistryError(f"uploading {what} to {self.client.name} failed {failures} times: {brief(err)}")
            delay = self.retry.delay(failures)
            self.progress(P.Event(P.RETRY, digest, what, size, int(delay * 1000), brief(err)))
            time.sleep(delay)
            self.progress(P.Event(P.RESTART, digest, what, size, 0, "upload starts again"))

    def upload(self, digest: str, size: int, opener: Callable[[], BinaryIO], what: str) -> None:
        """Monolithic upload of stored bytes whose digest and size are known."""
        def report(n: int) -> None:
            self.progress(P.Event(P.ADVANCE, digest, what, size, n))

        def attempt() -> None:
            self.progress(P.Event(P.START, digest, what, size, 0))
            _, location = self.client.start_upload()
            assert location is not None
            self.client.put_blob(location, digest, size, lambda: _Counting(opener(), size, report))

        self._retrying(what, digest, size, attempt)
        self._done(digest, size, what)

    def upload_bytes(self, data: bytes, digest: str, what: str) -> None:
        self.upload(digest, len(data), lambda: io.BytesIO(data), what)

    def upload_stream(self, opener: Callable[[], BinaryIO], codec: str | None, level: int | None,
                      what: str, key: str, expect: str | None = None) -> tuple[str, int]:
        """Chunked upload of a stream (compressed on the way with ``codec``); returns digest, size."""
        def attempt() -> tuple[str, int]:
            self.progress(P.Event(P.START, key, what, None, 0))
            _, location = self.client.start_upload()
            assert location is not None
            sink = _ChunkSink(self.client, location,
                              lambda n: self.progress(P.Event(P.ADVANCE, key, what, None, n)))
            hw = HashingWriter(sink)  # type: ignore[arg-type]
            w = compressor(hw, codec, level)  # type: ignore[arg-type]
            src = opener()
            try:
                while sink.error is None:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    w.write(b)
                w.close()
            finally:
                src.close()
            if expect is not None and hw.digest != expect:
                from ..errors import DigestMismatch

                raise DigestMismatch(f"{what}: the bytes read hash to {hw.digest}, expected {expect}")
            sink.finish(hw.digest)
            return hw.digest, hw.size

        digest, size = self._retrying(what, key, None, attempt)
        self._done(digest, size, what, key)
        return digest, size  # type: ignore[no-any-return]

    def _done(self, digest: str, size: int, what: str, key: str | None = None) -> None:
        self._learn(digest, size)
        with self._lock:
            self.uploaded += 1
            self.uploaded_bytes += size
        self.progress(P.Event(P.DONE, key or digest, what, size, size))


def descriptor(media_type: str, digest: str, size: int, like: Descriptor | None = None) -> Descriptor:
    if like is None:
        return Descriptor(media_type, digest, size)
    return like.with_(media_type=media_type, digest=digest, size=size)
