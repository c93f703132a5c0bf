"""Writing an image under a tag, with the move journalled first.

Every verb that writes goes through ``publish``: the image is written
untagged (blobs, config, manifest: complete and verified), the journal
records the move, then the tag moves. If anything fails before the last
step, no tag has moved; the journal then holds an entry for a move that did
not happen, which ``undo`` and ``reflog`` show as such (the tag's current
value is what the store says).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from .. import journal as _journal
from ..errors import RefError
from ..model import Image
from ..stores.base import Store, WriteRequest, WriteResult

_FILES = ("docker-archive", "oci-archive")   # the archive file is the output: no tag to move inside it


def current(store: Store, tag: str) -> Image | None:
    try:
        return store.get(tag)
    except RefError:
        return None


def publish(store: Store, req: WriteRequest, *, command: str | None = None) -> WriteResult:
    tag = store.normalize_tag(req.tag) if req.tag else None
    j = _journal.open_journal()
    if tag is None or j is None:
        return store.write(req)
    if store.transport in _FILES:
        res = store.write(req)
        j.record(store, tag, res.image, res.image.config.raw, command)
        return res
    old = current(store, tag)
    if old is not None:
        with contextlib.suppress(Exception):
            j.note_existing(store, tag, old, store.raw_config(old))
    res = store.write(replace(req, tag=None))
    j.record(store, tag, res.image, res.image.config.raw, command)
    moved = store.tag(res.image, tag)
    return WriteResult(moved.image, res.written_blobs, res.written_bytes, res.reused_blobs,
                       old.id if old is not None else moved.previous)


def move_tag(store: Store, image: Image, tag: str, *, command: str | None = None) -> WriteResult:
    """Point ``tag`` at an image the store already has (journalled)."""
    tag = store.normalize_tag(tag)
    j = _journal.open_journal()
    old = current(store, tag)
    if j is not None:
        if old is not None:
            with contextlib.suppress(Exception):
                j.note_existing(store, tag, old, store.raw_config(old))
        j.record(store, tag, image, store.raw_config(image), command)
    res = store.tag(image, tag)
    res.previous = old.id if old is not None else res.previous
    return res
