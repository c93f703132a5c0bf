"""``reflog``, ``undo`` and ``gc``: the journal's verbs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from .. import journal as _journal
from ..errors import RefError, UsageError
from ..model import Image, Manifest, short
from ..revisions import parse_rev, parse_store
from ..session import Session
from ..stores.base import LayerInput, Store, WriteRequest, WriteResult


def _journal_or_fail() -> _journal.Journal:
    j = _journal.open_journal()
    if j is None:
        raise UsageError("the journal is off (IMGGIT_JOURNAL=0)")
    return j


def _tag_ref(session: Session, text: str) -> tuple[Store, str]:
    rev = parse_rev(text)
    if rev.ops:
        raise UsageError(f"{text!r}: name a tag, without ~N or @{{N}}")
    if not rev.ref.name:
        raise UsageError(f"{text!r} names no tag")
    store = session.store(rev.ref.transport, rev.ref.location) if rev.ref.transport else session.default_store()
    return store, store.normalize_tag(rev.ref.name)


def reflog(session: Session, ref: str | None) -> list[_journal.Entry]:
    j = _journal_or_fail()
    if ref is None:
        return j.moves()
    store, tag = _tag_ref(session, ref)
    entries = j.reflog(_journal.ref_name(store, tag))
    if not entries:
        raise RefError(f"the journal has no record of {tag!r} in {store.describe()}",
                       hint="only tags that imggit wrote or moved have a reflog")
    return entries


def store_of(session: Session, info: dict[str, Any]) -> Store:
    if info.get("store") == "embedded":
        return session.embedded()
    if info.get("transport") == "docker-daemon":
        return session.engine()
    return session.store(info["transport"], info.get("location"))


@dataclass
class UndoResult:
    store: Store
    tag: str
    image: Image | None          # where the tag points now (None: the tag was removed)
    previous: str | None          # where it pointed before the undo
    restored: bool = False        # the image was gone from the store and was re-created


def undo(session: Session, ref: str | None) -> UndoResult:
    j = _journal_or_fail()
    if ref is None:
        moves = [m for m in j.moves() if m.new is not None and m.new.get("tag")]
        if not moves:
            raise UsageError("the journal records no tag move to undo")
        info = moves[0].new
        assert info is not None
        store, tag = store_of(session, info), info["tag"]
    else:
        store, tag = _tag_ref(session, ref)
    name = _journal.ref_name(store, tag)
    entries = j.reflog(name)
    if not entries:
        raise RefError(f"the journal has no record of {tag!r} in {store.describe()}",
                       hint="only tags that imggit wrote or moved can be undone")
    current = entries[0].new
    if len(entries) < 2:
        # imggit created the tag: undoing removes it
        store.delete_tag(tag)
        j.forget(name, f"imggit undo: removed {tag}")
        return UndoResult(store, tag, None, current.get("id") if current else None)
    oids = j.reflog_oids(name)
    info = entries[1].new
    assert info is not None
    image = _journal.find_or_restore(session, store, j, oids[1], info)
    restored = bool(image.extra.get("restored"))
    from .publish import move_tag

    if restored:
        from .publish import publish

        res = publish(store, WriteRequest(image.config, [LayerInput(l) for l in image.layers], tag,
                                          manifest=image.manifest, compress=None))
    else:
        res = move_tag(store, image, tag)
    return UndoResult(store, tag, res.image, current.get("id") if current else None, restored)


# --- gc ------------------------------------------------------------------------------------


@dataclass
class GcResult:
    store: str
    removed_blobs: list[tuple[str, int]] = field(default_factory=list)
    removed_entries: list[str] = field(default_factory=list)
    removed_tmp: int = 0
    kept_blobs: int = 0
    cache: Any = None           # the download cache's PruneResult (gc of the embedded store only)

    @property
    def freed(self) -> int:
        return sum(n for _, n in self.removed_blobs) + self.removed_tmp


def _reachable(store: Any, digest: str, out: set[str]) -> None:
    """Blobs a manifest or index reaches (itself included)."""
    if digest in out or not store.has_blob(digest):
        return
    out.add(digest)
    try:
        with open(store.blob_file(digest), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    for d in data.get("manifests") or []:
        if isinstance(d, dict) and d.get("digest"):
            _reachable(store, d["digest"], out)
    cfg = data.get("config")
    if isinstance(cfg, dict) and cfg.get("digest"):
        out.add(cfg["digest"])
    for d in data.get("layers") or []:
        if isinstance(d, dict) and d.get("digest"):
            out.add(d["digest"])


def gc(session: Session, store_text: str | None, *, prune_days: float = 14, dry_run: bool = False) -> GcResult:
    from ..model import REF_NAME_ANNOTATION, dump_json
    from ..stores.ocilayout import OCILayout

    if store_text:
        spec = parse_store(store_text)
        store = session.store_of(spec)
    else:
        store = session.embedded()
    if not isinstance(store, OCILayout):
        raise UsageError(f"gc works on the embedded store and OCI layouts, not {store.describe()}",
                         hint="the engine has docker image prune; registries have their own garbage collection")
    res = GcResult(store.describe())
    max_age = prune_days * 86400
    key = _journal.store_key(store)
    roots: set[str] = set()
    j = _journal.open_journal()
    if j is not None:
        for oid in j.live_records(max_age):
            info = j._info(oid)
            if info and info.get("store") == key and info.get("digest"):
                roots.add(info["digest"])
    with store.lock():
        index_path = os.path.join(store.path, "index.json")
        with open(index_path, "rb") as f:
            index = json.loads(f.read())
        kept_items = []
        for it in index.get("manifests") or []:
            tagged = bool((it.get("annotations") or {}).get(REF_NAME_ANNOTATION))
            if tagged or it.get("digest") in roots:
                kept_items.append(it)
            else:
                res.removed_entries.append(it.get("digest", "?"))
        reachable: set[str] = set()
        for it in kept_items:
            _reachable(store, it["digest"], reachable)
        for d in roots:
            _reachable(store, d, reachable)
        blob_dir = os.path.join(store.path, "blobs", "sha256")
        for name in sorted(os.listdir(blob_dir)) if os.path.isdir(blob_dir) else []:
            digest = "sha256:" + name
            if digest in reachable:
                res.kept_blobs += 1
                continue
            path = os.path.join(blob_dir, name)
            with contextlib.suppress(OSError):
                res.removed_blobs.append((digest, os.path.getsize(path)))
        tmp = os.path.join(store.path, ".imggit-tmp")
        stale_tmp = []
        if os.path.isdir(tmp):
            for name in os.listdir(tmp):
                p = os.path.join(tmp, name)
                with contextlib.suppress(OSError):
                    if time.time() - os.path.getmtime(p) > 3600:
                        stale_tmp.append(p)
                        res.removed_tmp += os.path.getsize(p)
        if not dry_run:
            if res.removed_entries:
                index["manifests"] = kept_items
                store._atomic_write(index_path, dump_json(index))
            for digest, _ in res.removed_blobs:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(blob_dir, digest[7:]))
            for p in stale_tmp:
                with contextlib.suppress(OSError):
                    os.unlink(p)
    if store_text is None:
        _clean_home_tmp(res, dry_run)
        from ..registry.blobcache import BlobCache

        cache = BlobCache()
        if os.path.isdir(cache.root):
            res.cache = cache.prune(max_age, dry_run)
    return res


def _clean_home_tmp(res: GcResult, dry_run: bool) -> None:
    """Spool directories left by interrupted runs (older than a day) under $IMGGIT_HOME/tmp."""
    from ..stores.base import tmp_root

    root = tmp_root()
    for name in os.listdir(root):
        p = os.path.join(root, name)
        with contextlib.suppress(OSError):
            if time.time() - os.path.getmtime(p) > 86400:
                size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs) \
                    if os.path.isdir(p) else os.path.getsize(p)
                res.removed_tmp += size
                if not dry_run:
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)


__all__ = ["reflog", "undo", "gc", "UndoResult", "GcResult", "Manifest", "short", "WriteResult"]
