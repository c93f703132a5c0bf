"""Interop with the real engine and independent readers (skopeo, umoci)."""

from __future__ import annotations

import json
import subprocess

import pytest

from fsutil import diff_listings, listing_from_dir, listing_from_tar
from imggit.stores import daemon as daemon_mod

pytestmark = pytest.mark.engine

DOCKERFILE = """FROM busybox:base
ENV A=1 B=two
RUN mkdir -p /d/sub && echo hi > /d/f && echo {seed} > /seed && ln /d/f /d/hard && ln -s ../seed /d/sym
RUN rm /d/f && chmod 4755 /d/hard && mkfifo /d/fifo && touch /d/sub/empty
LABEL org.example.k=v
WORKDIR /d
CMD ["/bin/sh", "-c", "cat /seed"]
"""


@pytest.fixture
def app(with_engine, request):
    seed = request.node.name.replace("[", "_").replace("]", "")
    tag = f"interop/{seed.lower()[:40]}:1"
    with_engine.build(tag, DOCKERFILE.format(seed=seed))
    return tag


def no_save(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("docker save was called")

    monkeypatch.setattr(daemon_mod.DockerDaemon, "_save_pass", boom)


def test_log_matches_docker_history_and_never_saves(app, cli, with_engine, monkeypatch):
    no_save(monkeypatch)
    r = cli("log", "--json", app)
    assert r.code == 0, r
    steps = json.loads(r.out)["steps"]
    hist = json.loads(with_engine.docker("history", "--no-trunc", "--format", "{{json .}}", app).stdout.decode()
                      .replace("}\n{", "},{").join(["[", "]"]))
    assert [s["created_by"] for s in steps] == [h["CreatedBy"] for h in hist]
    sizes = [s["layer"]["uncompressed_size"] if s["layer"] else 0 for s in steps]
    raw = [int(e.get("Size", 0)) for e in json.loads(
        with_engine.docker("image", "history", "--format", "{{json .}}", "--human=false", app).stdout.decode()
        .strip().replace("\n", ",").join(["[", "]"]))]
    assert sizes == raw
    assert cli("show", app).code == 0
    assert cli("show", app + "~3").code == 0
    assert cli("ls", "docker-daemon:").code == 0
    assert cli("log", "--oneline", "--layers", app).code == 0


def test_log_without_local_data_root_rebuilds_config(app, cli, with_engine, monkeypatch):
    """An engine whose files are not readable here: metadata from inspect + history only."""
    no_save(monkeypatch)
    monkeypatch.setattr(daemon_mod.DockerDaemon, "_imagedb", lambda self: None)
    r = cli("log", "--json", app)
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["image"]["id"] == with_engine.image_id(app)
    assert not data["image"]["exact_config"]
    layer_flags = [s["layer"] is not None for s in reversed(data["steps"])]
    assert layer_flags == [True, False, True, True, False, False, False]


def test_oci_output_passes_skopeo_and_umoci(app, cli, with_engine, tmp_path):
    out = tmp_path / "layout"
    r = cli("cp", app, f"oci:{out}:app")
    assert r.code == 0, r
    p = subprocess.run(["skopeo", "inspect", f"oci:{out}:app"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert len(info["Layers"]) == 3
    p = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{out}:app", str(tmp_path / "bundle")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ours = listing_from_dir(str(tmp_path / "bundle" / "rootfs"), xattrs=False)
    theirs = listing_from_tar(with_engine.export_fs(app))
    # umoci --rootless cannot chown, and docker export owns everything as its files say; compare the rest
    strip = lambda l: {k: (v[0], v[1], v[4], v[5], v[6]) for k, v in l.items()}  # noqa: E731
    assert diff_listings(strip(ours), strip(theirs)) == []


def test_docker_archive_loads_and_runs(app, cli, with_engine, tmp_path):
    archive = tmp_path / "app.tar"
    image_id = with_engine.image_id(app)
    assert cli("cp", app, f"docker-archive:{archive}:{app}").code == 0
    with_engine.docker("rmi", app)
    assert with_engine.docker("image", "inspect", image_id, check=False).returncode != 0
    with_engine.docker("load", "-i", str(archive))
    assert with_engine.image_id(app) == image_id
    assert with_engine.run(app).strip().startswith("test_docker_archive")


def test_daemon_to_oci_and_back_keeps_the_image_id(app, cli, with_engine, tmp_path):
    image_id = with_engine.image_id(app)
    layout = tmp_path / "d"
    assert cli("cp", f"docker-daemon:{app}", f"oci:{layout}:x").code == 0
    with_engine.docker("rmi", app)
    r = cli("cp", f"oci:{layout}:x", f"docker-daemon:{app}")
    assert r.code == 0, r
    assert r.out.strip() == image_id
    assert with_engine.image_id(app) == image_id
    assert with_engine.run(app).strip().startswith("test_daemon_to_oci")
    # a second copy sends no layer at all
    r = cli("cp", f"oci:{layout}:x", f"docker-daemon:{app}-again")
    assert r.code == 0 and "0 layer(s) written" in r.err


def test_docker_save_archive_is_read(app, cli, with_engine, tmp_path):
    """The engine's own save format (legacy here) read as docker-archive."""
    archive = tmp_path / "saved.tar"
    with_engine.docker("save", "-o", str(archive), app)
    r = cli("log", "--json", f"docker-archive:{archive}")
    assert r.code == 0, r
    assert json.loads(r.out)["image"]["id"] == with_engine.image_id(app)
    r = cli("cp", f"docker-archive:{archive}", f"oci:{tmp_path / 'o'}:x")
    assert r.code == 0, r


def test_log_of_a_100_step_image_reads_no_layer(cli, with_engine, monkeypatch):
    lines = ["FROM busybox:base"]
    for i in range(99):
        lines.append(f"RUN echo {i} > /step{i}" if i % 20 == 0 else f"ENV STEP{i}={i}")
    with_engine.build("interop/hundred:1", "\n".join(lines) + "\n")
    no_save(monkeypatch)
    r = cli("log", "--json", "interop/hundred:1")
    assert r.code == 0, r
    steps = json.loads(r.out)["steps"]
    assert len(steps) == 100          # busybox:base's one step + 99
    assert sum(1 for s in steps if s["layer"]) == 1 + 5


def test_legacy_save_layer_names_are_predicted(app, with_engine, tmp_path):
    """On a legacy engine (<= 24) the save stream names every layer but the top one by a v1 id
    imggit can compute, so unwanted layers are neither hashed nor written (the fallback, hashing,
    is what a newer or different engine gets)."""
    import tarfile

    from imggit.stores.daemon import legacy_v1_ids

    archive = tmp_path / "s.tar"
    with_engine.docker("save", "-o", str(archive), app)
    dirs = {m.name.split("/")[0] for m in tarfile.open(archive).getmembers() if m.name.endswith("/layer.tar")}
    diff_ids = with_engine.inspect(app)["RootFS"]["Layers"]
    predicted = legacy_v1_ids(diff_ids)
    if not any(n.startswith("blobs/") for n in tarfile.open(archive).getnames()):   # the legacy shape
        assert set(predicted) <= dirs and len(dirs - set(predicted)) == 1
        assert sorted(predicted.values()) == list(range(len(diff_ids) - 1))


def test_layers_come_from_the_data_root_else_from_save(app, with_engine, monkeypatch, tmp_path):
    """Run as root next to the engine, layer bytes are put back together from the data root (tar-split):
    no docker save. When that cannot be done, or is turned off, they come from save, identical."""
    from imggit.layers.fetch import hash_file
    from imggit.session import Session
    from imggit.stores import tarsplit

    def spool(name: str) -> tuple[object, dict[int, str]]:
        st = Session().engine()
        image = st.get(app)
        wd = tmp_path / name
        wd.mkdir()
        files = st.spool_layers(image, range(len(image.layers)), str(wd))
        return st, {i: hash_file(lf.path) for i, lf in files.items()}

    st, direct = spool("direct")
    n = len(direct)
    assert (st.save_calls, st.direct_reads, st.direct_failures) == (0, n, [])
    monkeypatch.setenv("IMGGIT_ENGINE_DIRECT", "0")
    st, saved = spool("off")
    assert (st.save_calls, st.direct_reads, st.direct_failures) == (1, 0, [])
    assert saved == direct
    monkeypatch.delenv("IMGGIT_ENGINE_DIRECT")

    real_chunks = tarsplit.chunks

    def breaks_midway(*a, **k):
        # the first bytes are spooled, then the data root fails: save must give the whole layer again
        yield next(real_chunks(*a, **k))
        raise tarsplit.Unavailable("not this time")

    monkeypatch.setattr(tarsplit, "chunks", breaks_midway)
    st, fallback = spool("fallback")
    assert (st.save_calls, st.direct_reads, len(st.direct_failures)) == (1, 0, n)
    assert "not this time" in st.direct_failures[0]
    assert fallback == direct
