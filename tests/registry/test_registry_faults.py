"""Pulls through a loopback proxy that cuts connections, answers 500/429, corrupts blobs,
redirects to another host, or is slow enough to kill a pull half way and resume it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imggit.session import Session
from imggit.validate import validate
from proxy import Fault, FaultProxy
from registry_helpers import env_for_subprocess, push_random, unique
from test_registry_cli import one_line

pytestmark = pytest.mark.registry

BLOB = r"^GET /v2/.*/blobs/sha256:"


def blob_total(res) -> int:
    return sum(l.size for l in res.image.layers)


def pulled(path, tag):
    st = Session().store("oci", str(path))
    img = st.get(tag)
    assert validate(st, img).ok
    return img


def test_connection_cut_mid_blob_resumes_with_range(cli, home, registry, proxy, fast_retries, tmp_path, request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "cut", layers=3, size=300_000)
    layers = "|".join(l.digest for l in res.image.layers[:2])
    proxy.add(Fault(f"/blobs/({layers})", "cut", after=100_000, times=2))
    r = cli("pull", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'out'}:got")
    assert r.code == 0, r
    assert pulled(tmp_path / "out", "got").id == res.image.id
    ranged = [q for q in proxy.requests(BLOB) if "Range" in q["headers"]]
    assert len(ranged) == 2 and all(q["headers"]["Range"] == "bytes=100000-" for q in ranged), ranged
    assert proxy.blob_bytes <= blob_total(res) + 1000     # nothing fetched twice


def test_500_and_429_are_retried_honouring_retry_after(cli, home, registry, proxy, fast_retries, tmp_path,
                                                       request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "status", layers=2, size=50_000)
    proxy.add(Fault(r"^GET /v2/.*/manifests/1", "status", status=500, times=2))
    proxy.add(Fault(BLOB, "status", status=503, times=1))
    proxy.add(Fault(BLOB, "status", status=429, headers={"Retry-After": "1"}, times=1))
    t0 = time.monotonic()
    r = cli("pull", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'out'}:got")
    assert r.code == 0, r
    assert time.monotonic() - t0 >= 1.0                   # waited as the registry asked
    assert pulled(tmp_path / "out", "got").id == res.image.id
    statuses = [q["status"] for q in proxy.requests(r"/manifests/1")]
    assert statuses[:3] == [500, 500, 200], statuses


def test_wrong_bytes_are_retried_then_fail_naming_the_layer(cli, home, registry, proxy, fast_retries, tmp_path,
                                                            request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "corrupt", layers=3, size=100_000)
    bad = res.image.layers[1].digest
    proxy.add(Fault(f"/blobs/{bad}", "corrupt", after=5000, times=-1))
    r = cli("pull", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'out'}:got")
    one_line(r, 3, "layer 1", bad[:19], "digest mismatch")
    assert len(proxy.requests(f"GET .*/blobs/{bad}")) == 3            # retried, then given up
    out = tmp_path / "out"
    assert not out.exists() or Session().store("oci", str(out)).list_images() == []   # nothing tagged
    # once: retried from zero, and the pull succeeds
    proxy.faults.clear()
    proxy.add(Fault(f"/blobs/{bad}", "corrupt", after=5000, times=1))
    r = cli("pull", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'out'}:got")
    assert r.code == 0, r
    assert pulled(tmp_path / "out", "got").id == res.image.id


def test_redirect_to_another_host_gets_no_authorization(home, token_registry, registry, tmp_path, request):
    """Blob GETs answered 307 to another host (like a CDN): followed, without our credentials."""
    repo = unique(request)
    res = push_random(token_registry.addr, repo, "1", "redirect", creds="bob:hunter2")
    push_random(registry.addr, repo, "1", "redirect")               # the "CDN" serves the same blobs
    front = FaultProxy(token_registry.addr).start()
    cdn = FaultProxy(registry.addr).start()
    try:
        cdn_host = "localhost:" + cdn.addr.rsplit(":", 1)[1]          # another host name
        front.add(Fault(BLOB, "redirect", to=f"http://{cdn_host}", times=-1))
        s = Session()
        s.registry_options["creds"] = "bob:hunter2"
        st = s.store("docker", f"{front.addr}/{repo}")
        from imggit.ops.copy import write_image

        out, _ = write_image(s, st, st.get("1"), s.store("oci", str(tmp_path / "out"), for_write=True), "got")
        assert out.image.id == res.image.id
        at_front = front.requests(BLOB)
        at_cdn = cdn.requests(BLOB)
        assert len(at_front) == 4 and len(at_cdn) == 4       # the config and 3 layers
        assert all(q["headers"].get("Authorization", "").startswith("Bearer ") for q in at_front)
        assert not any("Authorization" in q["headers"] for q in at_cdn), at_cdn
    finally:
        front.stop()
        cdn.stop()


def test_killed_pull_resumes_and_fetches_only_the_rest(home, registry, tmp_path, request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "kill", layers=4, size=2_500_000)
    total = blob_total(res)
    slow = FaultProxy(registry.addr, rate=700_000).start()         # bytes/s per connection
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imggit", "pull", f"docker://{slow.addr}/{repo}:1", f"oci:{out}:got"]
    env = env_for_subprocess(home)
    try:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while slow.blob_bytes < total // 2 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.poll() is None, p.communicate()
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(0.3)
        first = slow.blob_bytes
        assert total // 2 <= first < total
        partial = home / "cache" / "blobs" / "partial"
        kept = [f for f in os.listdir(partial) if not f.endswith(".lock")]
        assert kept, "partial downloads should persist after SIGKILL"
        assert not out.exists() or Session().store("oci", str(out)).list_images() == []
        slow.rate = None
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        second = slow.blob_bytes - first
        remainder = total - first
        print("kill/resume bytes:", dict(total=total, first=first, second=second, remainder=remainder))
        assert second <= remainder * 1.1, (second, remainder, total)
        assert any("Range" in q["headers"] for q in slow.requests(BLOB))
        assert pulled(out, "got").id == res.image.id
        assert [f for f in os.listdir(partial) if not f.endswith(".lock")] == []
    finally:
        slow.stop()


def test_completed_blobs_are_reused_by_later_pulls(cli, home, registry, proxy, tmp_path, request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "reuse", layers=2, size=100_000)
    assert cli("pull", "-q", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'a'}").code == 0
    layers = "|".join(l.digest for l in res.image.layers)
    assert len(proxy.requests(f"GET .*/blobs/({layers})")) == 2
    assert cli("pull", "-q", f"docker://{proxy.addr}/{repo}:1", f"oci:{tmp_path / 'b'}").code == 0
    assert len(proxy.requests(f"GET .*/blobs/({layers})")) == 2       # layers from the blob cache, verified
    assert pulled(tmp_path / "b", f"{proxy.addr}/{repo}:1").id == res.image.id


def test_push_compresses_in_chunks_and_retries_a_failed_upload(cli, home, registry, proxy, fast_retries,
                                                               tmp_path, request, monkeypatch):
    """Uncompressed layers are gzip-compressed on the way, sent as Content-Range PATCHes to the
    newest Location; an upload answered 500 is started again."""
    from imggit.registry import upload
    from registry_helpers import random_steps
    from imggit.layers import build as b

    monkeypatch.setattr(upload, "CHUNK", 64 * 1024)
    repo = unique(request)
    st = Session().store("oci", str(tmp_path / "plain"), for_write=True)
    res = b.write_image(st, "app", random_steps("chunks", layers=2, size=300_000), compress=None)
    assert all(l.digest == l.diff_id for l in res.image.layers)           # stored uncompressed
    proxy.add(Fault(r"^PUT /v2/.*/blobs/uploads/", "status", status=500, times=1))
    r = cli("push", f"oci:{tmp_path / 'plain'}:app", f"docker://{proxy.addr}/{repo}:1")
    assert r.code == 0 and r.out.strip() == res.image.id, r
    patches = proxy.requests(r"^PATCH ")
    assert len(patches) >= 8, len(patches)
    by_upload: dict[str, list[str]] = {}
    for q in patches:
        by_upload.setdefault(q["line"].split("?")[0], []).append(q["headers"]["Content-Range"])
    for ranges in by_upload.values():
        ends = [tuple(map(int, cr.split("-"))) for cr in ranges]
        assert ends[0][0] == 0 and all(b[0] == a[1] + 1 for a, b in zip(ends, ends[1:])), ranges
    failed = [q for q in proxy.requests(r"^PUT ") if q["status"] == 500]
    assert len(failed) == 1
    img = Session().store("docker", f"{registry.addr}/{repo}").get("1")
    assert img.id == res.image.id
    assert all(l.media_type.endswith("+gzip") and l.digest != l.diff_id for l in img.layers)
    assert validate(Session().store("docker", f"{registry.addr}/{repo}"), img).ok
