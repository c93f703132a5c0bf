"""The download cache: what gc removes from it, and what it must leave alone."""

from __future__ import annotations

import hashlib
import os
import time

from imggit.registry.blobcache import BlobCache

DAY = 86400


def _put(path: str, data: bytes, age_days: float) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))
    return path


def _blob(cache: BlobCache, data: bytes, age_days: float) -> tuple[str, str]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, _put(cache.complete(digest), data, age_days)


def _partial(cache: BlobCache, digest: str, data: bytes, age_days: float) -> str:
    return _put(cache.partial(digest), data, age_days)


def test_prune_removes_what_no_pull_used_for_max_age(tmp_path):
    c = BlobCache(str(tmp_path / "blobs"))
    _, old = _blob(c, b"old" * 100, 20)
    _, young = _blob(c, b"young", 1)
    stale = _partial(c, "sha256:" + "a" * 64, b"x" * 1000, 30)
    fresh = _partial(c, "sha256:" + "b" * 64, b"y" * 10, 0)
    r = c.prune(14 * DAY, dry_run=True)
    assert (r.removed, r.freed, r.kept) == (2, 1300, 2)
    assert all(os.path.exists(p) for p in (old, young, stale, fresh))
    assert not any(n.endswith(".lock") for n in os.listdir(os.path.dirname(stale)))   # a dry run makes nothing
    r = c.prune(14 * DAY)
    assert (r.removed, r.freed, r.kept) == (2, 1300, 2)
    assert not os.path.exists(old) and not os.path.exists(stale)
    assert os.path.exists(young) and os.path.exists(fresh)
    assert not os.path.exists(stale + ".lock")           # its lock file went with it
    r = c.prune(0)
    assert (r.removed, r.kept) == (2, 0)
    assert os.listdir(os.path.join(c.root, "partial")) == []


def test_prune_never_touches_a_download_in_progress(tmp_path):
    c = BlobCache(str(tmp_path / "blobs"))
    digest = "sha256:" + "c" * 64
    p = _partial(c, digest, b"z" * 50, 30)
    with c.lock(digest):                                  # a pull is downloading it
        r = c.prune(0)
        assert (r.removed, r.kept) == (0, 1)
        assert os.path.exists(p) and os.path.exists(p + ".lock")
    assert c.prune(0).removed == 1 and not os.path.exists(p)


def test_a_cache_hit_counts_as_a_use(tmp_path):
    c = BlobCache(str(tmp_path / "blobs"))
    digest, p = _blob(c, b"layer bytes", 20)
    assert c.verify(digest, len(b"layer bytes")) == p
    assert time.time() - os.path.getmtime(p) < 60
    assert c.prune(14 * DAY).removed == 0 and os.path.exists(p)


def test_prune_of_no_cache(tmp_path):
    r = BlobCache(str(tmp_path / "none")).prune(0)
    assert (r.removed, r.freed, r.kept) == (0, 0, 0)


def test_prune_removes_lock_files_left_without_a_download(tmp_path):
    c = BlobCache(str(tmp_path / "blobs"))
    left = _put(c.partial("sha256:" + "d" * 64) + ".lock", b"", 0)
    with c.lock("sha256:" + "e" * 64):                     # held by a pull that has not written yet
        c.prune(0)
        assert not os.path.exists(left)
        assert os.path.exists(c.partial("sha256:" + "e" * 64) + ".lock")
