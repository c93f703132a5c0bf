"""``rebase --onto`` against the real engine (classic builds), plus the OCI-layout cases.

The engine scenario: ``rb/base:1`` and ``rb/base:2`` are two builds of one
base on busybox; base:2 patches the package database
(``/var/lib/dpkg/status``), ``/etc/passwd``, another base file
(``/etc/base/version``) and ENV PATH. ``rb/app:1`` is built on base:1 with
several steps, one of which edits the status file and /etc/passwd; it sets
its own ENV and CMD. Tests that move a tag work on a fresh tag of the app
(``docker tag``), so they do not depend on each other.
"""

from __future__ import annotations

import os
import re

import pytest
from fsutil import spy_opens
from oneline import one_line

from imggit.errors import RefError
from imggit.layers import build as b
from imggit.model import BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION
from imggit.session import Session
from imggit.stores import daemon as daemon_mod
from imggit.stores.ocilayout import OCILayout
from imggit.validate import validate

engine = pytest.mark.engine

BASE1 = """FROM busybox:base
RUN mkdir -p /var/lib/dpkg /etc/base \\
 && printf 'Package: libc\\nVersion: 1\\n\\n' > /var/lib/dpkg/status \\
 && echo 1 > /etc/base/version && echo same > /etc/base/untouched
ENV BASE_VERSION=1
"""

# a rebuild of the base: the status database, /etc/passwd, another base file and PATH are patched
BASE2 = """FROM busybox:base
RUN mkdir -p /var/lib/dpkg /etc/base \\
 && printf 'Package: libc\\nVersion: 2-patched\\n\\n' > /var/lib/dpkg/status \\
 && echo 2-patched > /etc/base/version && echo same > /etc/base/untouched \\
 && echo 'sys:x:3:3:sys:/dev:/bin/false' >> /etc/passwd
ENV BASE_VERSION=2 PATH=/opt/base/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""

# one more build of the base, used only by the thin-load test (its chain must be new to the engine)
BASE3 = BASE2.replace("2-patched", "3-patched").replace("BASE_VERSION=2", "BASE_VERSION=3")

APP = """FROM rb/base:1
COPY run.sh /app/run.sh
RUN printf 'Package: app\\nVersion: 1.0\\n\\n' >> /var/lib/dpkg/status \\
 && echo 'app:x:1000:1000::/app:/bin/sh' >> /etc/passwd
ENV APP_MODE=prod
RUN echo data > /app/data
WORKDIR /app
CMD ["/bin/sh", "/app/run.sh"]
"""

RUN_SH = """#!/bin/sh
echo "mode=$APP_MODE base=$BASE_VERSION version=$(cat /etc/base/version) path=$PATH"
"""

BASE2_PATH = "/opt/base/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OWN_LAYERS = 3     # COPY, RUN (status + passwd), RUN data
OWN_STEPS = 6


class Scenario:
    def __init__(self, engine):
        self.engine = engine
        self.base1 = engine.build("rb/base:1", BASE1)
        self.base2 = engine.build("rb/base:2", BASE2)
        self.base3 = engine.build("rb/base:3", BASE3)
        self.app = engine.build("rb/app:1", APP, {"run.sh": RUN_SH})
        self.arm = self._arm64_base()

    def _arm64_base(self) -> str:
        """A base for another architecture, loaded into the engine (it accepts foreign images)."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            archive = os.path.join(d, "arm.tar")
            st = Session().store("docker-archive", archive, for_write=True)
            b.write_image(st, "rb/base:arm64", [b.StepSpec("ADD rootfs", b.make_layer(
                [b.directory("etc"), b.file("etc/passwd", "root:x:0:0::/:/bin/sh\n")]))],
                {"Env": ["PATH=/bin"]}, architecture="arm64")
            self.engine.docker("load", "-i", archive)
        assert self.engine.inspect("rb/base:arm64")["Architecture"] == "arm64"
        return self.engine.image_id("rb/base:arm64")

    def fresh_app(self, name: str) -> str:
        """A new tag of the app image for a test to move."""
        tag = f"rb/app:{name}"
        self.engine.docker("tag", self.app, tag)
        return tag


@pytest.fixture(scope="module")
def rb(engine):
    return Scenario(engine)


def env_of(engine, ref: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in engine.inspect(ref)["Config"]["Env"])


def diff_ids(engine, ref: str) -> list[str]:
    return engine.inspect(ref)["RootFS"]["Layers"]


CONFLICT_LINE = r"^M /{path}\s+base: \d+ B -> \d+ B, image layer \d+: \d+ B$"


# --- the engine -------------------------------------------------------------------------------


@engine
def test_rebase_onto_patched_base(rb, cli, with_engine):
    e = with_engine
    tag = rb.fresh_app("moved")
    r = cli("rebase", "--onto", "rb/base:2", tag)
    assert r.code == 0, r
    new_id = r.out.strip().splitlines()[-1]
    assert new_id.startswith("sha256:") and new_id != rb.app
    # IMAGE's tag moved; the input image is unchanged and still there
    assert e.image_id(tag) == new_id
    assert e.image_id(rb.app) == rb.app and e.image_id("rb/app:1") == rb.app
    # upstream auto-detected, and said so
    assert "upstream rb/base:1" in r.err, r.err
    assert f"replaying {OWN_STEPS} step(s), {OWN_LAYERS} layer(s)" in r.err
    # both overlapping paths are conflicts, with both sides' sizes; nothing else is
    conflicts = [l for l in r.out.splitlines() if not l.startswith("sha256:")]
    assert len(conflicts) == 2, r.out
    assert any(re.match(CONFLICT_LINE.format(path="var/lib/dpkg/status"), l) for l in conflicts), r.out
    assert any(re.match(CONFLICT_LINE.format(path="etc/passwd"), l) for l in conflicts), r.out
    assert "warning: 2 conflict(s)" in r.err
    # own layers: same diff ids on top of base:2's (chain ids follow from the new base)
    assert diff_ids(e, tag) == diff_ids(e, "rb/base:2") + diff_ids(e, "rb/app:1")[-OWN_LAYERS:]
    # it runs: base:2's patched file and PATH, the app's files, ENV and CMD
    out = e.run(tag).strip()
    assert out == f"mode=prod base=2 version=2-patched path={BASE2_PATH}", out
    files = e.run(tag, "sh", "-c", "cat /app/data /var/lib/dpkg/status; grep -c . /etc/passwd; tail -1 /etc/passwd")
    assert files.startswith("data\n")
    assert "Package: app" in files                      # the conflicting path keeps the image's version
    assert files.rstrip().endswith("app:x:1000:1000::/app:/bin/sh")
    # config: Env merged per key, the app's CMD and WORKDIR kept, the new base recorded
    cfg = e.inspect(tag)["Config"]
    assert env_of(e, tag) == {"PATH": BASE2_PATH, "BASE_VERSION": "2", "APP_MODE": "prod"}
    assert cfg["Cmd"] == ["/bin/sh", "/app/run.sh"]
    assert cfg["WorkingDir"] == "/app"
    assert (cfg.get("Labels") or {}).get(BASE_NAME_ANNOTATION) == "rb/base:2"
    info = e.inspect(tag)
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    # history: base:2's steps, then the app's own
    hist = e.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout.decode().splitlines()
    assert "APP_MODE=prod" in hist[3] and "BASE_VERSION=2" in hist[OWN_STEPS]
    # undo puts the tag back
    r = cli("undo", tag)
    assert r.code == 0, r
    assert e.image_id(tag) == rb.app


@engine
def test_rebase_to_a_new_tag_and_explicit_upstream(rb, cli, with_engine):
    e = with_engine
    r = cli("rebase", "--onto", "rb/base:2", "rb/base:1", "rb/app:1", "-t", "rb/app:explicit")
    assert r.code == 0, r
    new_id = r.out.strip().splitlines()[-1]
    assert e.image_id("rb/app:explicit") == new_id
    assert e.image_id("rb/app:1") == rb.app            # -t: IMAGE's tag stays
    assert "upstream rb/base:1: given" in r.err
    assert e.run("rb/app:explicit").startswith("mode=prod base=2 version=2-patched")
    # undo of a tag the rebase created removes it
    r = cli("undo", "rb/app:explicit")
    assert r.code == 0, r
    assert e.docker("image", "inspect", "rb/app:explicit", check=False).returncode != 0
    assert e.image_id("rb/app:1") == rb.app


@engine
def test_strict_fails_and_moves_no_tag(rb, cli, with_engine):
    e = with_engine
    tag = rb.fresh_app("strict")
    before = set(e.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split())
    r = cli("rebase", "--strict", "--onto", "rb/base:2", tag)
    assert r.code == 5, r
    assert "Traceback" not in r.err and "conflict" in r.err
    assert e.image_id(tag) == rb.app
    assert set(e.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split()) == before
    # the journal recorded no move
    assert cli("reflog", tag).code == 2


@engine
def test_strict_names_the_conflicting_paths(rb, cli, with_engine):
    """Conflicts are printed with both sides whether or not --strict makes them fatal."""
    r = cli("rebase", "--strict", "--onto", "rb/base:2", "rb/app:1", "-t", "rb/app:strict2")
    assert r.code == 5, r
    text = r.out + r.err
    assert "/var/lib/dpkg/status" in text and "/etc/passwd" in text, r


@engine
def test_dry_run_prints_the_plan_and_writes_nothing(rb, cli, with_engine):
    e = with_engine
    tag = rb.fresh_app("dry")
    before = set(e.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split())
    r = cli("rebase", "-n", "--onto", "rb/base:2", tag)
    assert r.code == 0, r
    assert "/var/lib/dpkg/status" in r.out and "/etc/passwd" in r.out
    assert "upstream rb/base:1" in r.err and "nothing written" in r.err
    assert e.image_id(tag) == rb.app
    assert set(e.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split()) == before


@engine
def test_non_ancestor_upstream_is_refused(rb, cli, with_engine):
    one_line(cli("rebase", "--onto", "rb/base:2", "rb/base:3", "rb/app:1"), 2, "rb/base:3",
             "not an ancestor of rb/app:1")
    one_line(cli("rebase", "--onto", "rb/base:2", "rb/base:2", "rb/app:1", "-t", "rb/app:x"), 2,
             "not an ancestor")
    one_line(cli("rebase", "--onto", "rb/base:2", "rb/app:1~1"), 2, "past step")
    assert with_engine.image_id("rb/app:1") == rb.app


@engine
def test_new_base_of_another_architecture_is_refused(rb, cli, with_engine):
    one_line(cli("rebase", "--onto", "rb/base:arm64", "rb/app:1"), 2, "linux/arm64", "linux/amd64")
    one_line(cli("rebase", "--onto", "rb/base:arm64", "rb/base:1", "rb/app:1", "-t", "rb/app:arm"), 2,
             "linux/arm64", "linux/amd64")
    assert with_engine.docker("image", "inspect", "rb/app:arm", check=False).returncode != 0
    assert with_engine.image_id("rb/app:1") == rb.app


@engine
def test_upstream_of_a_rebased_image_is_the_recorded_base(rb, cli, with_engine):
    """A rebased image names its new base; rebasing it again finds that base as the upstream."""
    e = with_engine
    r = cli("rebase", "--no-check", "--onto", "rb/base:2", "rb/app:1", "-t", "rb/app:on2")
    assert r.code == 0, r
    e.docker("tag", "rb/base:3", "hardened/base:3")
    r = cli("rebase", "-n", "--onto", "hardened/base:3", "rb/app:on2")
    assert r.code == 0, r
    assert "upstream rb/base:2" in r.err, r.err
    assert f"replaying {OWN_STEPS} step(s)" in r.err


@engine
def test_rebase_again_after_the_base_was_rebuilt(rb, cli, with_engine):
    """The everyday loop: app is rebased onto rbx/base:2; then rbx/base:2 is rebuilt (the tag moves to a new
    build); then ``rebase --onto rbx/base:2 app`` again. The app's upstream is the *old* rbx/base:2 (its
    label names it). Taking busybox:base instead would replay the old base's steps on top of the new
    base (the old patched files would hide the new ones). Right upstream, or a one-line error: not that."""
    e = with_engine
    e.build("rbx/base:2", BASE2.replace("2-patched", "x1"))
    r = cli("rebase", "--no-check", "--onto", "rbx/base:2", "rb/base:1", "rb/app:1", "-t", "rbx/app:1")
    assert r.code == 0, r
    e.build("rbx/base:2", BASE2.replace("2-patched", "x2"))        # rebuilt: the tag moved
    r = cli("rebase", "-n", "--onto", "rbx/base:2", "rbx/app:1")
    if r.code == 0:
        assert f"replaying {OWN_STEPS} step(s)" in r.err, r.err
    else:
        one_line(r, 2, "UPSTREAM")


@engine
def test_no_check_into_the_engine_sends_only_the_images_own_layers(rb, cli, with_engine, monkeypatch):
    """With --no-check nothing is indexed; the load carries the app's own layers only, read from
    one save of the app (the new base's layers are already in the engine)."""
    from imggit.layers import index as lindex

    e = with_engine
    saves, loads = [], []
    orig_save, orig_load = daemon_mod.DockerDaemon._save_pass, daemon_mod.DockerDaemon._load

    def save(self, image, wanted, workdir, want_config, index_only=None):
        saves.append((image.id, sorted(wanted), sorted(index_only or {})))
        return orig_save(self, image, wanted, workdir, want_config, index_only)

    def load(self, req, tag, skip, codec):
        loads.append([li.layer.diff_id for i, li in enumerate(req.layers) if i not in skip])
        return orig_load(self, req, tag, skip, codec)

    def no_index(*a, **k):
        raise AssertionError("--no-check read layer headers")

    monkeypatch.setattr(daemon_mod.DockerDaemon, "_save_pass", save)
    monkeypatch.setattr(daemon_mod.DockerDaemon, "_load", load)
    monkeypatch.setattr(lindex, "index_layers", no_index)
    r = cli("rebase", "--no-check", "--onto", "rb/base:3", "rb/app:1", "-t", "rb/app:thin")
    assert r.code == 0, r
    own = diff_ids(e, "rb/app:1")[-OWN_LAYERS:]
    assert loads == [own], loads
    assert all(image == rb.app and idx == [] for image, _, idx in saves), saves
    assert sorted({d for _, wanted, _ in saves for d in wanted}) == sorted(own)
    assert "files not compared" in r.err
    assert e.run("rb/app:thin").startswith("mode=prod base=3 version=3-patched")


# --- fleet ------------------------------------------------------------------------------------

FL_BASE1 = BASE1.replace("Version: 1", "Version: f1").replace("echo 1 >", "echo f1 >")
FL_BASE2 = BASE2.replace("2-patched", "f2")
FL_APP = """FROM fl/base:1
RUN {run}
ENV APP={n}
CMD ["cat", "/etc/base/version"]
"""


@pytest.fixture(scope="module")
def fleet(engine):
    engine.build("fl/base:1", FL_BASE1)
    engine.build("fl/base:2", FL_BASE2)
    ids = {}
    for n in range(1, 6):
        # apps 1 and 2 add to the package database (a conflict with base:2); 3-5 only add their files
        run = (f"printf 'Package: a{n}\\n\\n' >> /var/lib/dpkg/status" if n <= 2 else f"echo a{n} > /a{n}")
        ids[f"fl/app{n}:1"] = engine.build(f"fl/app{n}:1", FL_APP.format(run=run, n=n))
    return ids


def _table(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "OLD"], out
    return {l.split()[0]: l.split()[1:] for l in lines[1:]}


@engine
def test_fleet_rebase(fleet, cli, with_engine):
    e = with_engine
    olds = {t: i for t, i in fleet.items()}
    # --dry-run: the plan with each image's conflicts; nothing written
    r = cli("rebase", "--onto", "fl/base:2", "--from", "fl/base:1", "--all", "--dry-run")
    assert r.code == 0, r
    rows = _table(r.out)
    assert sorted(rows) == sorted(fleet)
    for t, row in rows.items():
        assert row[0] == olds[t][7:19]
        assert row[-1] == ("1" if t in ("fl/app1:1", "fl/app2:1") else "0"), (t, row)
    assert {t: e.image_id(t) for t in fleet} == olds
    # --strict: the two with conflicts fail, the other three move; one failure does not stop the others
    r = cli("rebase", "--onto", "fl/base:2", "--from", "fl/base:1", "--all", "--strict", "docker-daemon:")
    assert r.code == 1, r
    rows = _table(r.out)
    assert sorted(rows) == sorted(fleet)
    for t in ("fl/app1:1", "fl/app2:1"):
        assert "failed:" in " ".join(rows[t]) and "conflict" in " ".join(rows[t])
        assert e.image_id(t) == olds[t]
    for t in ("fl/app3:1", "fl/app4:1", "fl/app5:1"):
        assert e.image_id(t)[7:19] == rows[t][1] != olds[t][7:19]
        assert e.run(t).strip() == "f2"
        assert e.run(t, "cat", f"/a{t[6]}").strip() == f"a{t[6]}"
    assert "2 of 5 image(s) failed" in r.err
    # without --strict the remaining two move (exit 0), with their conflict counted
    r = cli("rebase", "--onto", "fl/base:2", "--from", "fl/base:1", "--all")
    assert r.code == 0, r
    rows = _table(r.out)
    assert sorted(rows) == ["fl/app1:1", "fl/app2:1"]
    for t, row in rows.items():
        assert row[-1] == "1"
        assert e.image_id(t)[7:19] == row[1]
        assert e.run(t).strip() == "f2"
        assert f"Package: a{t[6]}" in e.run(t, "cat", "/var/lib/dpkg/status")
        assert env_of(e, t)["APP"] == t[6]
    # nothing is left on the old base
    r = cli("rebase", "--onto", "fl/base:2", "--from", "fl/base:1", "--all")
    assert r.code == 0 and "no tagged image is built on" in r.err
    # every moved tag can be undone
    for t in fleet:
        assert cli("undo", t).code == 0
        assert e.image_id(t) == olds[t]


# --- OCI layouts (no engine) --------------------------------------------------------------------


def _base_steps(v: str, *, passwd: str = "root:x:0:0::/:/bin/sh\n") -> list[b.StepSpec]:
    return [
        b.StepSpec("ADD rootfs", b.make_layer([b.directory("etc"), b.file("etc/passwd", passwd),
                                               b.file("etc/hostname", "box\n")])),
        b.StepSpec(f"RUN install libc {v}", b.make_layer([
            b.directory("var"), b.directory("var/lib"), b.directory("var/lib/dpkg"),
            b.file("var/lib/dpkg/status", f"Package: libc\nVersion: {v}\n\n"),
            b.directory("etc"), b.file("etc/version", f"{v}\n")])),
        b.StepSpec(f"ENV BASE={v}", None),
    ]


def _app_steps(base: list[b.StepSpec]) -> list[b.StepSpec]:
    return base + [
        b.StepSpec("COPY app /app", b.make_layer([b.directory("app"), b.file("app/bin", b"\x7fELF" * 100, 0o755)])),
        b.StepSpec("RUN dpkg -i app.deb", b.make_layer([
            b.directory("var"), b.directory("var/lib"), b.directory("var/lib/dpkg"),
            b.file("var/lib/dpkg/status", "Package: libc\nVersion: 1\n\nPackage: app\n\n")])),
        b.StepSpec("ENV MODE=prod", None),
        b.StepSpec('CMD ["/app/bin"]', None),
    ]


BASE_RT = {"Env": ["PATH=/bin", "BASE=1"], "Cmd": ["/bin/sh"], "Labels": {"vendor": "x"}}
APP_RT = {"Env": ["PATH=/bin", "BASE=1", "MODE=prod"], "Cmd": ["/app/bin"],
          "Labels": {"vendor": "x", "app": "yes"}}


@pytest.fixture
def layout(tmp_path, home):
    path = tmp_path / "l"
    st = Session().store("oci", str(path), for_write=True)
    b.write_image(st, "base:1", _base_steps("1"), BASE_RT)
    b.write_image(st, "base:2", _base_steps("2-patched"), {**BASE_RT, "Env": ["PATH=/usr/bin:/bin", "BASE=2"],
                                                   "Labels": {"vendor": "x", "patched": "yes"}})
    b.write_image(st, "app:1", _app_steps(_base_steps("1")), APP_RT)
    return path


def _st(path) -> OCILayout:
    return OCILayout(str(path))


def test_oci_rebase_keeps_blobs_and_records_the_base(cli, layout):
    st = _st(layout)
    app, base2 = st.get("app:1"), st.get("base:2")
    L = f"oci:{layout}"
    r = cli("rebase", "--onto", f"{L}:base:2", f"{L}:app:1")
    assert r.code == 0, r
    assert "upstream base:1" in r.err
    assert re.search(CONFLICT_LINE.format(path="var/lib/dpkg/status"), r.out, re.MULTILINE), r.out
    assert "etc/version" not in r.out and "app/bin" not in r.out
    new = st.get("app:1")
    assert new.id == r.out.strip().splitlines()[-1] != app.id
    assert st.get(app.id).id == app.id                               # the input is still there
    # blobs untouched: base:2's descriptors, then the app's own (same digests, same diff ids)
    assert [l.digest for l in new.layers] == [l.digest for l in base2.layers] + [l.digest for l in app.layers[2:]]
    assert new.config.diff_ids[2:] == app.config.diff_ids[2:]
    assert [l.chain_id for l in new.layers][2:] != [l.chain_id for l in app.layers][2:]
    # the new base is recorded as annotations
    ann = dict(new.manifest.annotations)
    assert ann[BASE_NAME_ANNOTATION].endswith("base:2")
    assert ann[BASE_DIGEST_ANNOTATION] == base2.digest
    # config merged
    rt = new.config.runtime
    assert rt["Env"] == ["PATH=/usr/bin:/bin", "BASE=2", "MODE=prod"]
    assert rt["Cmd"] == ["/app/bin"]
    assert rt["Labels"] == {"vendor": "x", "patched": "yes", "app": "yes"}
    # and undo puts the tag back
    r = cli("undo", f"{L}:app:1")
    assert r.code == 0, r
    assert st.get("app:1").id == app.id


def test_oci_config_conflicts(cli, layout):
    st = Session().store("oci", str(layout))
    # base:3 changes what the app also changed: Cmd, one Env key and one label
    b.write_image(st, "base:3", _base_steps("3-patched"), {"Env": ["PATH=/bin", "BASE=3", "MODE=debug"],
                                                   "Cmd": ["/sbin/init"], "Labels": {"vendor": "x", "app": "no"},
                                                   "User": "1000"})
    L = f"oci:{layout}"
    r = cli("rebase", "-n", "--onto", f"{L}:base:3", f"{L}:app:1")
    assert r.code == 0, r
    lines = [l for l in r.out.splitlines() if l.startswith("C config")]
    fields = sorted(l.split()[2] for l in lines)
    assert fields == ["Cmd", "Env[MODE]", "Labels[app]"], r.out
    cmd = next(l for l in lines if l.split()[2] == "Cmd")
    assert '["/sbin/init"]' in cmd and '["/app/bin"]' in cmd and '["/bin/sh"]' in cmd
    r = cli("rebase", "--onto", f"{L}:base:3", f"{L}:app:1", "-t", f"{L}:merged")
    assert r.code == 0 and "warning:" in r.err, r
    rt = _st(layout).get("merged").config.runtime
    assert rt["Cmd"] == ["/app/bin"]                   # the image's value is kept on a conflict
    assert rt["User"] == "1000"                        # only the new base changed it
    assert dict(e.split("=", 1) for e in rt["Env"]) == {"PATH": "/bin", "BASE": "3", "MODE": "prod"}
    r = cli("rebase", "--strict", "--onto", f"{L}:base:3", f"{L}:app:1", "-t", f"{L}:strict")
    assert r.code == 5, r
    with pytest.raises(RefError):
        _st(layout).get("strict")


def test_oci_no_check_reads_no_layer_bytes(cli, layout, monkeypatch):
    from imggit.layers import fetch
    from imggit.layers import index as lindex

    st = _st(layout)
    layer_files = {st.blob_file(l.digest) for tag in ("app:1", "base:1", "base:2") for l in st.get(tag).layers}
    def boom(*a, **k):
        raise AssertionError("a layer was read")

    L = f"oci:{layout}"
    with monkeypatch.context() as m:
        opened = spy_opens(m, layer_files)
        m.setattr(OCILayout, "open_blob", boom)
        m.setattr(lindex, "index_layers", boom)
        m.setattr(fetch, "materialize", boom)
        r = cli("rebase", "--no-check", "--onto", f"{L}:base:2", f"{L}:app:1", "-t", f"{L}:fast")
    assert r.code == 0, r
    assert opened == []
    new = _st(layout).get("fast")
    assert [l.digest for l in new.layers][2:] == [l.digest for l in st.get("app:1").layers][2:]
    assert validate(_st(layout), new).ok
    # the spy does see layer reads: the same rebase with the file comparison reads the headers
    with monkeypatch.context() as m:
        seen = spy_opens(m, layer_files)
        r = cli("rebase", "-n", "--onto", f"{L}:base:2", f"{L}:app:1")
    assert r.code == 0 and "/var/lib/dpkg/status" in r.out, r
    assert seen


def test_upstream_is_the_deepest_tagged_ancestor(cli, layout):
    st = Session().store("oci", str(layout))
    mid = _base_steps("1") + [b.StepSpec("RUN add tools", b.make_layer([b.file("tools", "t")]))]
    mid2 = _base_steps("1") + [b.StepSpec("RUN add tools v2", b.make_layer([b.file("tools", "t2")]))]
    b.write_image(st, "mid:1", mid, BASE_RT)
    b.write_image(st, "mid:2", mid2, BASE_RT)
    b.write_image(st, "svc:1", mid + [b.StepSpec("RUN svc", b.make_layer([b.file("svc", "s")]))], BASE_RT)
    L = f"oci:{layout}"
    r = cli("rebase", "-n", "--onto", f"{L}:mid:2", f"{L}:svc:1")
    assert r.code == 0, r
    assert "upstream mid:1" in r.err and "replaying 1 step(s)" in r.err, r.err


def test_no_findable_upstream(cli, layout):
    st = Session().store("oci", str(layout))
    b.write_image(st, "lonely:1", [b.StepSpec("ADD other", b.make_layer([b.file("x", "x")])),
                                   b.StepSpec("RUN y", b.make_layer([b.file("y", "y")]))])
    one_line(cli("rebase", "--onto", f"oci:{layout}:base:2", f"oci:{layout}:lonely:1"), 2,
             "cannot tell which base", "UPSTREAM")


def test_upstream_from_the_base_digest_after_the_base_tag_moved(cli, layout):
    """The common case: the image was rebased onto base:2 (recorded in its annotations), then base:2 was
    rebuilt (the tag moved). No tagged image is an ancestor any more, and base.name names the new build;
    base.digest still names the old base:2, which the layout keeps (untagged)."""
    st = Session().store("oci", str(layout))
    L = f"oci:{layout}"
    assert cli("rebase", "--onto", f"{L}:base:2", f"{L}:app:1").code == 0
    old_base2 = _st(layout).get("base:2")
    b.write_image(st, "base:2", _base_steps("2.1-rebuilt"), BASE_RT)  # base:2 rebuilt
    r = cli("rebase", "-n", "--onto", f"{L}:base:2", f"{L}:app:1")
    assert r.code == 0, r
    assert "replaying 4 step(s)" in r.err, r.err          # the app's own steps above the old base:2
    assert old_base2.id != _st(layout).get("base:2").id


def test_oci_conflict_when_only_the_content_changed(cli, layout):
    """Reproducible bases (fixed mtimes, e.g. SOURCE_DATE_EPOCH or apko/Bazel images): the new base
    changes the status database without changing its size, mode or mtime. The path still differs
    between UPSTREAM and NEW, so it is a conflict."""
    st = Session().store("oci", str(layout))
    b.write_image(st, "base:1.1", _base_steps("7"), BASE_RT)         # "Version: 7" vs "Version: 1"
    L = f"oci:{layout}"
    r = cli("rebase", "-n", "--onto", f"{L}:base:1.1", f"{L}:app:1")
    assert r.code == 0, r
    assert re.search(CONFLICT_LINE.format(path="var/lib/dpkg/status"), r.out, re.MULTILINE), r


def test_oci_platform_comes_from_the_new_base(cli, tmp_path, home):
    """linux/arm64 and linux/arm64/v8 are one platform (v8 is arm64's only variant): the result takes NEW's
    os/architecture/variant. linux/arm/v6 is not linux/arm/v7: refused in one line."""
    st = Session().store("oci", str(tmp_path / "p"), for_write=True)
    L = f"oci:{tmp_path / 'p'}"

    def write(tag, stepspecs, arch, variant=None):
        b.write_image(st, tag, stepspecs, {"Env": ["PATH=/bin"]}, architecture=arch,
                      extra={"variant": variant} if variant else None)

    write("old:1", _base_steps("1"), "arm", "v7")
    write("old:2", _base_steps("2-patched"), "arm", "v6")
    write("svc:1", _app_steps(_base_steps("1")), "arm", "v7")
    one_line(cli("rebase", "--onto", f"{L}:old:2", f"{L}:old:1", f"{L}:svc:1"), 2, "linux/arm/v6", "linux/arm/v7")
    write("base:1", _base_steps("1"), "arm64")
    write("base:2", _base_steps("2-patched"), "arm64", "v8")
    write("app:1", _app_steps(_base_steps("1")), "arm64")
    r = cli("rebase", "--no-check", "--onto", f"{L}:base:2", f"{L}:base:1", f"{L}:app:1")
    assert r.code == 0, r
    cfg = OCILayout(str(tmp_path / "p")).get("app:1").config
    assert (cfg.os, cfg.architecture, cfg.variant) == ("linux", "arm64", "v8")


def test_oci_conflicts_for_paths_the_image_adds_or_deletes(cli, layout):
    """A path the image deletes (whiteout) that the new base changed, and a path the image adds that the
    new base adds too, are conflicts; a path only the new base changed is not."""
    st = Session().store("oci", str(layout))
    base = _base_steps("1")
    b.write_image(st, "slim:1", base + [
        b.StepSpec("RUN rm /etc/hostname", b.make_layer([b.directory("etc"), b.whiteout("etc/hostname")])),
        b.StepSpec("COPY tool /usr/bin/tool", b.make_layer([b.directory("usr"), b.directory("usr/bin"),
                                                            b.file("usr/bin/tool", "mine", 0o755)])),
    ], BASE_RT)
    newbase = [b.StepSpec("ADD rootfs", b.make_layer([b.directory("etc"), b.file("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
                                                      b.file("etc/hostname", "box-2\n")])),
               base[1], b.StepSpec("RUN add tool", b.make_layer([b.directory("usr"), b.directory("usr/bin"),
                                                                 b.file("usr/bin/tool", "theirs", 0o755),
                                                                 b.file("usr/bin/other", "o", 0o755)])),
               base[2]]
    b.write_image(st, "base:2b", newbase, BASE_RT)
    L = f"oci:{layout}"
    r = cli("rebase", "-n", "--onto", f"{L}:base:2b", f"{L}:base:1", f"{L}:slim:1")
    assert r.code == 0, r
    lines = sorted(l for l in r.out.splitlines() if l[:2] in ("M ", "A ", "D ", "T "))
    assert len(lines) == 2, r.out
    assert re.match(r"^A /usr/bin/tool\s+base: absent -> 6 B, image layer 4: 4 B$", lines[0]), lines
    assert re.match(r"^M /etc/hostname\s+base: 4 B -> 6 B, image layer 3: deleted$", lines[1]), lines
