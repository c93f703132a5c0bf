"""Bad input: each is a one-line error (plus an optional hint), a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from imggit.layers import build as b
from oneline import one_line
from imggit.session import Session



@pytest.fixture
def layout(tmp_path, home):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    base = [b.StepSpec("base", b.make_layer([b.file("a", "1")]))]
    b.write_image(st, "base", base)
    b.write_image(st, "app", base + [b.StepSpec("app", b.make_layer([b.file("b", "2")]))])
    b.write_image(st, "other", base + [b.StepSpec("other", b.make_layer([b.file("c", "3")]))])
    return tmp_path / "l"


def test_unknown_ref(cli, layout):
    one_line(cli("log", f"oci:{layout}:nope"), 2, "no image 'nope'")
    one_line(cli("log", "embedded:nope:1"), 2, "no image 'nope:1'", "embedded store")


def test_ambiguous_short_id(cli, tmp_path, home):
    st = Session().store("oci", str(tmp_path / "many"), for_write=True)
    ids = []
    for i in range(20):
        ids.append(b.write_image(st, f"i{i}", [b.StepSpec(f"s{i}", b.make_layer([b.file("f", str(i))]))]).image.id)
    first = {}
    for i in ids:
        first.setdefault(i[7], []).append(i)
    prefix, cands = next((k, v) for k, v in first.items() if len(v) > 1)
    r = cli("log", f"oci:{tmp_path / 'many'}:{prefix}")
    one_line(r, 2, "ambiguous", *[c[7:19] for c in cands])


def test_range_left_not_an_ancestor(cli, layout):
    r = cli("log", f"oci:{layout}:other..oci:{layout}:app")
    one_line(r, 2, "not an ancestor", "merge-base", "~1")


def test_range_works(cli, layout):
    r = cli("log", "--oneline", f"oci:{layout}:base..oci:{layout}:app")
    assert r.code == 0 and r.out.count("\n") == 1 and "app" in r.out


def test_past_the_first_step(cli, layout):
    one_line(cli("log", f"oci:{layout}:app~2"), 2, "past the first step")
    one_line(cli("show", f"oci:{layout}:app~9"), 2, "past the first step")


def test_unknown_transport(cli, home):
    one_line(cli("log", "ftp://x/y"), 2, "unknown transport")
    one_line(cli("log", "dir:/tmp/x"), 2, "not supported")


def test_truncated_and_non_tar_archives(cli, layout, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all\n" * 40)
    one_line(cli("log", f"docker-archive:{junk}"), 3, "not a valid tar")
    good = tmp_path / "good.tar"
    assert cli("cp", f"oci:{layout}:app", f"docker-archive:{good}:app:1").code == 0
    data = good.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) - 2000 - 700])
    r = cli("log", f"docker-archive:{cut}")
    assert r.code == 3, r
    one_line(r, 3)
    one_line(cli("log", f"docker-archive:{tmp_path / 'missing.tar'}"), 2, "does not exist")


def _rewrite_index(layout, fn):
    path = os.path.join(layout, "index.json")
    data = json.load(open(path))
    fn(data)
    open(path, "w").write(json.dumps(data))


def test_invalid_json(cli, layout, tmp_path):
    idx = layout / "index.json"
    good = idx.read_bytes()
    idx.write_bytes(b"{not json")
    one_line(cli("log", f"oci:{layout}:app"), 3, "index.json", "not valid JSON")
    idx.write_bytes(good)
    # a config blob that is not JSON, stored under its own (valid) digest
    st = Session().store("oci", str(layout))
    img = st.get("app")
    bad = b"{broken"
    d = st.put_bytes(bad)
    manifest = json.loads(img.manifest.raw)
    manifest["config"] = {"mediaType": manifest["config"]["mediaType"], "digest": d, "size": len(bad)}
    raw = json.dumps(manifest).encode()
    md = st.put_bytes(raw)

    def point(data):
        data["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                                  "size": len(raw), "annotations": {"org.opencontainers.image.ref.name": "badcfg"}})
    _rewrite_index(layout, point)
    one_line(cli("log", f"oci:{layout}:badcfg"), 3, "config", "not valid JSON")


def test_blob_digest_mismatch(cli, layout):
    st = Session().store("oci", str(layout))
    img = st.get("app")
    path = st.blob_file(img.manifest.config.digest)
    data = open(path, "rb").read()
    os.chmod(path, 0o644)
    open(path, "wb").write(data.replace(b'"app"', b'"apq"'))
    one_line(cli("log", f"oci:{layout}:app"), 3, "digest mismatch")


def test_layer_digest_mismatch_on_copy(cli, layout, tmp_path):
    st = Session().store("oci", str(layout))
    img = st.get("app")
    lpath = st.blob_file(img.layers[1].digest)
    d = bytearray(open(lpath, "rb").read())
    d[len(d) // 2] ^= 1
    open(lpath, "wb").write(bytes(d))
    out = tmp_path / "out.tar"
    r = cli("cp", f"oci:{layout}:app", f"docker-archive:{out}")
    one_line(r, 3, "layer 1")
    assert not out.exists()  # nothing half-written is left


def test_locked_layout(cli, layout, monkeypatch):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from imggit.stores.ocilayout import OCILayout\n"
         f"st = OCILayout({str(layout)!r})\n"
         "with st.lock():\n    print('locked', flush=True); time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("IMGGIT_LOCK_TIMEOUT", "0.5")
        t0 = time.monotonic()
        r = cli("cp", f"oci:{layout}:app", f"oci:{layout}:app2")
        one_line(r, 4, "locked by another process", f"pid {holder.pid}")
        assert time.monotonic() - t0 < 10
    finally:
        holder.kill()
        holder.wait()
    assert cli("cp", f"oci:{layout}:app", f"oci:{layout}:app2").code == 0


def test_no_engine(cli, home):
    one_line(cli("log", "docker-daemon:app:1"), 4, "no Docker engine answers", "DOCKER_HOST")


def test_usage_errors_are_exit_2(cli, home):
    r = cli("log")
    assert r.code == 2
    r = cli("cp", "a")
    assert r.code == 2


def test_destination_of_the_wrong_kind(cli, layout, tmp_path):
    afile = tmp_path / "a.tar"
    afile.write_bytes(b"")
    one_line(cli("cp", f"oci:{layout}:app", f"oci:{afile}:x"), 2, "is a file, not an OCI layout")
    one_line(cli("squash", f"oci:{layout}:app", "-t", f"oci:{afile}:x"), 2, "is a file")
    one_line(cli("cp", f"oci:{layout}:app", f"docker-archive:{layout}:x"), 2, "is a directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    one_line(cli("cp", f"oci:{layout}:app", f"oci:{other}:x"), 2, "other files in it")
    assert sorted(os.listdir(other)) == ["notes.txt"]
