"""Surgery verbs (issue 6) judged by the real engine: filter, amend, rebase -i, cherry-pick.

Every rewritten image is read back by the engine: ``docker export`` of the
result is compared with what the operation promises (the original minus the
purged paths, the reordered Dockerfile's build, the base plus the picked
steps), ``docker save`` gives its layer tars (checked one by one: no purged
path left anywhere in the history), ``docker run`` runs it, and layers that
did not change keep their diff ids (engine) or blob digests (OCI layout).
Images come from classic Dockerfile builds (COPY sources with fixed mtimes,
so two builds of the same steps export the same filesystem) and from exact
synthetic layer tars on busybox's own layer, ``docker load``-ed, for what
the classic builder never writes (opaque directories, hardlinks to purged
files, whiteouts of purged paths).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import re
import sys

import pytest
from fsjudge import PATH_ENV, Docker, Fs, changes
from fsutil import tar_members
from oneline import ok, one_line

from imggit.layers import build as b
from imggit.session import Session
from imggit.stores.ocilayout import OCILayout
from imggit.validate import validate

engine = pytest.mark.engine

APP = """FROM busybox:base
RUN mkdir -p /root/.ssh /srv && echo PRIVATE-KEY > /root/.ssh/id_rsa && echo cert > /srv/server.pem \\
 && echo keep > /srv/keep.txt && echo old-data > /srv/data
COPY app.sh /srv/app.sh
RUN echo more > /srv/other.pem && rm /root/.ssh/id_rsa
ENV MODE=prod
RUN echo data > /srv/data
CMD ["sh", "/srv/app.sh"]
"""
APP_SH = 'echo "app mode=$MODE $(cat /srv/keep.txt) $(cat /srv/data)"\n'
APP_STEPS = 7           # import + 6

# a key hardlinked elsewhere in the same step
HL = """FROM busybox:base
RUN mkdir /root/.ssh && echo PRIVATE-KEY > /root/.ssh/id_rsa && ln /root/.ssh/id_rsa /zz-keep
"""

# rebase -i: steps that commute (COPY keeps the context files' fixed mtimes)
RI = """FROM busybox:base
COPY a.txt /opt/a.txt
COPY b.txt /opt/b.txt
COPY c.txt /opt/c.txt
ENV MODE=x
COPY junk.bin /opt/junk.bin
COPY d.txt /opt/d.txt
RUN rm /opt/a.txt
"""
RI_FILES = {"a.txt": "a\n", "b.txt": "bb\n", "c.txt": "ccc\n", "d.txt": "dddd\n", "junk.bin": b"\x00J" * 5000}
# what the todo below makes of RI: S1, S3+S6, S2+S7, S4; S5 dropped
RI_REORDERED = """FROM busybox:base
COPY a.txt /opt/a.txt
COPY c.txt /opt/c.txt
COPY d.txt /opt/d.txt
COPY b.txt /opt/b.txt
RUN rm /opt/a.txt
ENV MODE=x
"""

TOOLS = """FROM busybox:base
COPY tool.sh /usr/local/bin/tool
RUN echo cfg > /etc/tool.conf
ENV TOOL=1
"""
CAPP = """FROM busybox:base
COPY app.sh /srv/app.sh
ENV APP=1
CMD ["sh", "/srv/app.sh"]
"""


def _syn_filter_layers() -> list[bytes]:
    return [
        b.make_layer([b.directory("etc"), b.directory("etc/secret"), b.file("etc/secret/key", "K1" * 50),
                      b.file("etc/ok.conf", "ok\n"), b.directory("app"), b.file("app/a.pem", "pem-a"),
                      b.file("app/b.txt", "b\n"), b.hardlink("app/hl", "app/b.txt")]),
        b.make_layer([b.directory("etc"), b.directory("etc/secret"), b.opaque("etc/secret"),
                      b.file("etc/secret/key2", "K2" * 40), b.directory("app"), b.file("app/c.pem", "pem-c"),
                      b.file("app/b.txt", "b2\n")]),
        b.make_layer([b.directory("etc"), b.whiteout("etc/secret"), b.directory("app"), b.file("app/d.txt", "d\n"),
                      b.whiteout("app/a.pem")]),
    ]


def _syn_rebase_layers() -> list[bytes]:
    return [
        b.make_layer([b.directory("opt"), b.directory("opt/d"), b.file("opt/d/a", "a"), b.file("opt/d/b", "b"),
                      b.directory("etc"), b.file("etc/f", "f\n")]),
        b.make_layer([b.directory("opt"), b.directory("opt/d"), b.opaque("opt/d"), b.file("opt/d/new", "new\n")]),
        b.make_layer([b.file("x", "x\n")]),
        b.make_layer([b.file("y", "y\n"), b.hardlink("y2", "y")]),
        b.make_layer([b.directory("etc"), b.whiteout("etc/f")]),
    ]


SYN_RB_ORDER = [0, 1, 3, 2, 4]    # pick L1, squash L2, pick L4, pick L3, fixup L5


class Scenario:
    def __init__(self, engine) -> None:
        d = self.docker = Docker(engine)
        self.app = d.build("sur/app:1", APP, {"app.sh": APP_SH})
        self.hl = d.build("sur/hl:1", HL)
        self.ri = d.build("sur/ri:1", RI, RI_FILES)
        self.ri_reordered = d.build("sur/ri-reordered:1", RI_REORDERED, RI_FILES)
        self.tools = d.build("sur/tools:1", TOOLS, {"tool.sh": "echo tool\n"})
        self.capp = d.build("sur/capp:1", CAPP, {"app.sh": 'echo "capp APP=$APP TOOL=$TOOL"\n'})
        self.bb = d.busybox_layer()
        rt = {"Env": [PATH_ENV], "Cmd": ["/bin/sh"]}
        self.syn_f = d.load_synthetic("sur/synf:1", self._steps(_syn_filter_layers()), rt)
        layers = _syn_rebase_layers()
        self.syn_rb = d.load_synthetic("sur/synrb:1", self._steps(layers), rt)
        self.syn_rb_expected = d.load_synthetic("sur/synrb-expected:1",
                                                self._steps([layers[i] for i in SYN_RB_ORDER]), rt)
        self.cache: dict[str, Fs] = {}

    def _steps(self, layers: list[bytes]) -> list[b.StepSpec]:
        return ([b.StepSpec("/bin/sh -c #(nop) ADD busybox (imported)", self.bb)]
                + [b.StepSpec(f"/bin/sh -c synthetic step {i + 1}", l) for i, l in enumerate(layers)])

    def fs(self, ref: str) -> Fs:
        i = self.docker.image_id(ref)
        if i not in self.cache:
            self.cache[i] = self.docker.fs(i)
        return self.cache[i]

    def fresh(self, image: str, name: str) -> str:
        tag = f"sur/{name}:1"
        self.docker("tag", image, tag)
        return tag


@pytest.fixture(scope="module")
def sur(engine):
    return Scenario(engine)


def new_id(r) -> str:
    i = r.out.strip().splitlines()[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", i), r.out
    return i


def step_ids(cli, ref: str) -> list[str]:
    """Short step ids (what a todo list names), oldest first."""
    data = json.loads(ok(cli("log", "--json", ref)).out)
    return [s["step_id"][7:19] for s in reversed(data["steps"])]


def daemon_validate(ref: str) -> None:
    st = Session().store("docker-daemon", None)
    rep = validate(st, st.get(ref))
    assert rep.ok, rep


def member_target(m) -> str:  # type: ignore[no-untyped-def]
    if m.is_whiteout:
        return m.whiteout_target
    if m.is_opaque:
        return m.parent
    return m.path


def matches(path: str, patterns: list[str]) -> bool:
    path = path.strip("/")
    for p in (q.strip("/") for q in patterns):
        parts = path.split("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:k]), p) for k in range(1, len(parts) + 1)):
            return True
    return False


def left_in_layers(docker: Docker, ref: str, patterns: list[str]) -> list[tuple[int, str]]:
    """Every member of every layer tar (``docker save``) that a pattern matches: its path, the path a
    whiteout hides, or the directory an opaque marker sits in."""
    out = []
    for i, tar in enumerate(docker.layer_tars(ref)):
        for m in tar_members(tar):
            if matches(member_target(m), patterns) or matches(m.path, patterns):
                out.append((i, m.path))
    return out


# --- filter --------------------------------------------------------------------------------------

PURGE = ["/root/.ssh", "*.pem"]


@engine
def test_filter_purges_paths_from_every_layer(sur, cli, with_engine):
    d = sur.docker
    assert left_in_layers(d, "sur/app:1", PURGE)          # the secret is in the history
    r = ok(cli("filter", "sur/app:1", *[a for p in PURGE for a in ("--remove", p)], "-t", "sur/app:filtered"))
    nid = new_id(r)
    assert d.image_id("sur/app:filtered") == nid and d.image_id("sur/app:1") == sur.app
    # the filesystem: the original's minus those paths, and nothing else changed
    before, after = sur.fs("sur/app:1"), sur.fs("sur/app:filtered")
    assert after.listing == before.without(lambda p: matches(p, PURGE))
    assert before.without(lambda p: matches(p, PURGE)) != before.listing
    # no layer tar still has them (files, directories, whiteouts)
    assert left_in_layers(d, "sur/app:filtered", PURGE) == []
    # only the layers that contained them are rewritten
    old_ids, new_ids = d.diff_ids("sur/app:1"), d.diff_ids("sur/app:filtered")
    assert len(new_ids) == len(old_ids) == 5
    touched = sorted({i for i, _ in left_in_layers(d, "sur/app:1", PURGE)})
    assert touched == [1, 3]
    assert [i for i in range(5) if new_ids[i] != old_ids[i]] == touched
    # the report, per layer: as many paths as the layer tar has matching members
    n = {i: sum(1 for j, _ in left_in_layers(d, "sur/app:1", PURGE) if j == i) for i in touched}
    assert re.search(rf"^layer 2 \(step 2: RUN mkdir .*\): removed {n[1]}$", r.err, re.MULTILINE), r.err
    assert re.search(rf"^layer 4 \(step 4: RUN echo more .*\): removed {n[3]}$", r.err, re.MULTILINE), r.err
    for p in ("/root/.ssh", "/root/.ssh/id_rsa", "/srv/server.pem", "/srv/other.pem", "/root/.ssh/id_rsa (whiteout)"):
        assert f"\n  {p}\n" in r.err, (p, r.err)
    assert "layer 1 " not in r.err and "layer 3 " not in r.err and "layer 5 " not in r.err
    # history and config as they were; it runs
    assert d.created_by("sur/app:filtered") == d.created_by("sur/app:1")
    assert d.inspect("sur/app:filtered")["Config"] == d.inspect("sur/app:1")["Config"]
    assert d.run("sur/app:filtered").strip() == "app mode=prod keep data"
    daemon_validate("sur/app:filtered")


@engine
def test_filter_moves_the_tag_through_the_journal(sur, cli, with_engine):
    d = sur.docker
    tag = sur.fresh(sur.app, "filter-moved")
    r = ok(cli("filter", tag, "--remove", "/srv/keep.txt"))
    nid = new_id(r)
    assert d.image_id(tag) == nid != sur.app
    assert f"(was {sur.app[7:19]})" in r.err
    log = ok(cli("reflog", tag)).out.splitlines()
    assert log[0].startswith(f"{tag}@{{0}}  {nid[7:19]}"), log
    assert log[1].startswith(f"{tag}@{{1}}  {sur.app[7:19]}"), log
    assert "srv/keep.txt" not in sur.fs(tag).listing
    ok(cli("undo", tag))
    assert d.image_id(tag) == sur.app


@engine
def test_filter_that_matches_nothing_warns_and_writes_nothing(sur, cli, with_engine):
    d = sur.docker
    tag = sur.fresh(sur.app, "filter-none")
    before = d.image_ids()
    r = cli("filter", tag, "--remove", "/no/such/path", "--remove", "*.nothing")
    assert r.code == 0, r
    assert r.out == ""
    lines = [l for l in r.err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: nothing in") and "no new image" in lines[0], r.err
    assert "/no/such/path" in lines[0]
    assert d.image_ids() == before and d.image_id(tag) == sur.app
    assert cli("reflog", tag).code == 2          # no move recorded


@engine
def test_filter_keeps_the_content_of_a_hardlink_to_a_removed_file(sur, cli, with_engine):
    """/zz-keep is a hardlink to /root/.ssh/id_rsa in the same layer (the link comes after its target in the
    tar). Purging /root/.ssh must leave /zz-keep a file with that content, as the command promises."""
    d = sur.docker
    before = sur.fs("sur/hl:1")
    assert before.sizes["zz-keep"] == len("PRIVATE-KEY\n")
    r = ok(cli("filter", "sur/hl:1", "--remove", "/root/.ssh", "-t", "sur/hl:filtered"))
    assert "/zz-keep: was a hardlink to a removed file" in r.err, r.err
    after = sur.fs("sur/hl:filtered")
    assert after.listing == before.without(lambda p: matches(p, ["/root/.ssh"]))
    assert d.run("sur/hl:filtered", "cat", "/zz-keep") == "PRIVATE-KEY\n"
    for m in tar_members(d.layer_tars("sur/hl:filtered")[-1]):
        assert not (m.is_link and m.linkname.strip("/").startswith("root/.ssh")), m.path


@engine
def test_filter_synthetic_whiteouts_opaque_dirs_and_hardlinks(sur, cli, with_engine):
    """Purged paths appear as files, directories, a whiteout (etc/secret, app/a.pem) and an opaque
    directory (etc/secret in layer 2); a hardlink among kept files stays a hardlink."""
    d = sur.docker
    patterns = ["/etc/secret", "*.pem"]
    r = ok(cli("filter", "sur/synf:1", "--remove", patterns[0], "--remove", patterns[1], "-t", "sur/synf:filtered"))
    before, after = sur.fs("sur/synf:1"), sur.fs("sur/synf:filtered")
    assert after.listing == before.without(lambda p: matches(p, patterns)), \
        sorted(set(after.listing) ^ set(before.without(lambda p: matches(p, patterns))))
    assert left_in_layers(d, "sur/synf:filtered", patterns) == []
    old_ids, new_ids = d.diff_ids("sur/synf:1"), d.diff_ids("sur/synf:filtered")
    assert new_ids[0] == old_ids[0] and all(new_ids[i] != old_ids[i] for i in (1, 2, 3))
    assert "layer 1 " not in r.err
    assert d.run("sur/synf:filtered", "cat", "/app/b.txt", "/app/hl", "/etc/ok.conf") == "b2\nb\nok\n"
    daemon_validate("sur/synf:filtered")


def test_filter_in_an_oci_layout_keeps_untouched_blobs(cli, tmp_path, home):
    L = f"oci:{tmp_path / 'l'}"
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    base = b.make_layer([b.directory("bin"), b.file("bin/sh", "#!", 0o755)])
    layers = [base] + _syn_filter_layers() + [b.make_layer([b.file("last", "z")])]
    b.write_image(st, "f:1", [b.StepSpec(f"step {i}", l) for i, l in enumerate(layers)], {"Env": [PATH_ENV]})
    old = OCILayout(str(tmp_path / "l")).get("f:1")
    r = ok(cli("filter", "-n", f"{L}:f:1", "--remove", "/etc/secret", "--remove", "*.pem"))
    assert "dry run: nothing written" in r.err and r.out == ""
    assert OCILayout(str(tmp_path / "l")).get("f:1").id == old.id
    r = ok(cli("filter", f"{L}:f:1", "--remove", "/etc/secret", "--remove", "*.pem"))
    new = OCILayout(str(tmp_path / "l")).get("f:1")
    assert new.id == new_id(r) != old.id
    # untouched layers: the same blobs (digest, size, media type); touched: new blobs
    for i in (0, 4):
        assert (new.layers[i].digest, new.layers[i].size) == (old.layers[i].digest, old.layers[i].size)
    assert all(new.layers[i].digest != old.layers[i].digest for i in (1, 2, 3))
    assert validate(OCILayout(str(tmp_path / "l")), new).ok
    lst = OCILayout(str(tmp_path / "l"))
    for i in range(len(new.layers)):
        raw = lst.open_blob(new, i).read()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        left = [m.path for m in tar_members(io.BytesIO(data))
                if matches(member_target(m), ["/etc/secret", "*.pem"]) or matches(m.path, ["/etc/secret", "*.pem"])]
        assert left == [], (i, left)


# --- amend ---------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "src"
    (d / "tree" / "sub").mkdir(parents=True)
    (d / "new.txt").write_text("new file\n")
    (d / "tree" / "sub" / "t").write_text("in a tree\n")
    (d / "app.sh").write_text('echo "amended app $(cat /opt/added.txt)"\n')
    (d / "added.txt").write_text("added\n")
    (d / "data").write_text("amended-data\n")
    return d


@engine
def test_amend_adds_a_new_top_step(sur, cli, with_engine, files):
    d = sur.docker
    r = ok(cli("amend", "sur/app:1", "--add", f"{files / 'new.txt'}:/srv/new.txt", "--add",
               f"{files / 'tree'}:/opt/tree", "-m", "hotfix", "-t", "sur/app:amended"))
    nid = new_id(r)
    assert d.image_id("sur/app:amended") == nid and d.image_id("sur/app:1") == sur.app
    assert "as a new top step" in r.err
    # the old layers keep their diff ids; one more layer and one more history entry
    assert d.diff_ids("sur/app:amended")[:-1] == d.diff_ids("sur/app:1")
    hist = d.history("sur/app:amended")
    assert len(hist) == APP_STEPS + 1 and hist[-1]["CreatedBy"].startswith("imggit amend --add ")
    assert hist[-1]["Comment"] == "hotfix"
    assert d.inspect("sur/app:amended")["Config"] == d.inspect("sur/app:1")["Config"]
    ch = changes(sur.fs("sur/app:1"), sur.fs("sur/app:amended"))
    assert {p: s for p, s in ch.items() if p != "srv"} == {
        "srv/new.txt": "A", "opt": "A", "opt/tree": "A", "opt/tree/sub": "A", "opt/tree/sub/t": "A"}, ch
    assert d.run("sur/app:amended", "cat", "/srv/new.txt", "/opt/tree/sub/t") == "new file\nin a tree\n"
    assert d.run("sur/app:amended").strip() == "app mode=prod keep data"
    daemon_validate("sur/app:amended")


@engine
def test_amend_chmod_and_chown(sur, cli, with_engine, files):
    d = sur.docker
    ok(cli("amend", "sur/app:1", "--add", f"{files / 'new.txt'}:/srv/new.txt", "--chmod", "0751",
           "--chown", "1000:1001", "-t", "sur/app:chmod"))
    assert d.run("sur/app:chmod", "stat", "-c", "%a %u %g", "/srv/new.txt").strip() == "751 1000 1001"


@engine
def test_amend_into_a_past_step_runs_and_shows_the_new_file(sur, cli, with_engine, files):
    """--into the COPY step (REF~4): /srv/app.sh replaced, /opt/added.txt added in that layer; the steps above
    are replayed unchanged (same diff ids), the steps below too."""
    d = sur.docker
    tag = sur.fresh(sur.app, "into")
    r = ok(cli("amend", tag, "--add", f"{files / 'app.sh'}:/srv/app.sh", "--add",
               f"{files / 'added.txt'}:/opt/added.txt", "--into", f"{tag}~4"))
    nid = new_id(r)
    assert d.image_id(tag) == nid
    assert "as step 3, replacing 1" in r.err, r.err
    old_ids, new_ids = d.diff_ids(sur.app), d.diff_ids(tag)
    assert len(new_ids) == len(old_ids)
    assert [i for i in range(len(old_ids)) if old_ids[i] != new_ids[i]] == [2]
    assert d.run(tag).strip() == "amended app added"
    assert d.run(tag, "cat", "/opt/added.txt") == "added\n"
    assert set(changes(sur.fs("sur/app:1"), sur.fs(tag))) <= {"srv/app.sh", "opt", "opt/added.txt", "srv"}
    assert {"srv/app.sh", "opt/added.txt"} <= set(changes(sur.fs("sur/app:1"), sur.fs(tag)))
    hist = d.history(tag)
    assert [h["CreatedBy"] for h in hist] == d.created_by(sur.app)
    assert "imggit amend" in hist[2]["Comment"]
    # the journal has the move
    assert ok(cli("reflog", tag)).out.splitlines()[0].startswith(f"{tag}@{{0}}  {nid[7:19]}")
    daemon_validate(tag)


@engine
def test_amend_into_a_step_whose_path_a_later_step_rewrites(sur, cli, with_engine, files):
    """/srv/data is written by step 2 and again by step 6: amending it into step 2 changes nothing visible
    (the later step is replayed unchanged and wins), while a new path added there shows."""
    d = sur.docker
    ok(cli("amend", "sur/app:1", "--add", f"{files / 'data'}:/srv/data", "--add", f"{files / 'new.txt'}:/srv/n",
           "--into", "sur/app:1~5", "-t", "sur/app:into2"))
    assert d.run("sur/app:into2", "cat", "/srv/data", "/srv/n") == "data\nnew file\n"
    assert d.diff_ids("sur/app:into2")[2:] == d.diff_ids("sur/app:1")[2:]


@engine
def test_amend_into_a_step_where_a_hardlink_points_at_the_replaced_file(sur, cli, with_engine, files):
    """Replacing /root/.ssh/id_rsa in the step where /zz-keep is a hardlink to it: the rewritten layer must
    still load (the link may keep the old content, as after ``cp`` over a linked file, or share the new)."""
    d = sur.docker
    r = ok(cli("amend", "sur/hl:1", "--add", f"{files / 'new.txt'}:/root/.ssh/id_rsa", "--into", "sur/hl:1",
               "-t", "sur/hl:amended"))
    new_id(r)
    assert d.run("sur/hl:amended", "cat", "/root/.ssh/id_rsa") == "new file\n"
    assert d.run("sur/hl:amended", "cat", "/zz-keep") in ("PRIVATE-KEY\n", "new file\n")


@engine
def test_amend_into_a_synthetic_step_with_an_opaque_directory(sur, cli, with_engine, files):
    """Layer 3 of sur/synrb:1 makes /opt/d opaque; a file amended into that layer shows next to the layer's
    own /opt/d/new, the lower layer's a and b stay hidden, the other layers keep their diff ids."""
    d = sur.docker
    ok(cli("amend", "sur/synrb:1", "--add", f"{files / 'added.txt'}:/opt/d/added", "--into", "sur/synrb:1~3",
           "-t", "sur/synrb:amended"))
    assert d.run("sur/synrb:amended", "ls", "/opt/d").split() == ["added", "new"]
    assert d.run("sur/synrb:amended", "cat", "/opt/d/added") == "added\n"
    old, new = d.diff_ids("sur/synrb:1"), d.diff_ids("sur/synrb:amended")
    assert [i for i in range(len(old)) if old[i] != new[i]] == [2]
    assert changes(sur.fs("sur/synrb:1"), sur.fs("sur/synrb:amended")) == {"opt/d/added": "A"}
    daemon_validate("sur/synrb:amended")


def test_amend_in_an_oci_layout_keeps_the_other_blobs(cli, tmp_path, home, files):
    path = tmp_path / "l"
    L = f"oci:{path}"
    st = Session().store("oci", str(path), for_write=True)
    b.write_image(st, "a:1", [b.StepSpec("base", b.make_layer([b.directory("etc"), b.file("etc/conf", "1\n")])),
                              b.StepSpec("ENV X=1"),
                              b.StepSpec("app", b.make_layer([b.directory("app"), b.file("app/run", "run\n", 0o755)])),
                              b.StepSpec("data", b.make_layer([b.file("data", "d" * 100)]))], {"Env": [PATH_ENV]})
    old = OCILayout(str(path)).get("a:1")
    ok(cli("amend", f"{L}:a:1", "--add", f"{files / 'new.txt'}:/app/run", "--into", f"{L}:a:1~1", "-t", f"{L}:into"))
    new = OCILayout(str(path)).get("into")
    assert [l.digest for l in new.layers][::2] == [l.digest for l in old.layers][::2]
    assert new.layers[1].digest != old.layers[1].digest
    assert [h.get("created_by") for h in new.config.history] == [h.get("created_by") for h in old.config.history]
    assert validate(OCILayout(str(path)), new).ok
    ok(cli("amend", f"{L}:a:1", "--add", f"{files / 'new.txt'}:/etc/new", "-t", f"{L}:top"))
    top = OCILayout(str(path)).get("top")
    assert [l.digest for l in top.layers[:-1]] == [l.digest for l in old.layers]
    assert len(top.config.history) == len(old.config.history) + 1
    assert validate(OCILayout(str(path)), top).ok
    # what each step changes, seen by imggit's own show: the amended file in step 3, the new one on top
    r = ok(cli("show", "--name-status", f"{L}:into~1"))
    assert r.out.splitlines()[1:] == ["A\t/app/run"]
    r = ok(cli("show", "--stat", "--json", f"{L}:into~1"))
    assert json.loads(r.out)["changes"][0]["new"]["size"] == len("new file\n")
    assert ok(cli("show", "--name-status", f"{L}:top")).out.splitlines()[1:] == ["A\t/etc/new"]


@engine
def test_amend_errors_are_one_line(sur, cli, with_engine, files):
    d = sur.docker
    before = d.image_ids()
    one_line(cli("amend", "sur/app:1", "--add", f"{files / 'missing.txt'}:/srv/x"), 2, "missing.txt",
             "does not exist")
    one_line(cli("amend", "sur/app:1", "--add", f"{files / 'new.txt'}:srv/x"), 2, "absolute")
    one_line(cli("amend", "sur/app:1", "--add", f"{files / 'new.txt'}:/srv/x", "--into", "sur/app:1~2"), 2,
             "without a layer")
    one_line(cli("amend", "sur/app:1", "--add", f"{files / 'new.txt'}:/srv/x", "--into", "sur/ri:1~2"), 2,
             "not a step of")
    assert d.image_ids() == before and d.image_id("sur/app:1") == sur.app


# --- rebase -i -----------------------------------------------------------------------------------

# the todo, by the command each line names: S1, S3, squash S6, S2, fixup S7, S4; S5 dropped
RI_PLAN = [("pick", "in /opt/a.txt"), ("pick", "in /opt/c.txt"), ("squash", "in /opt/d.txt"), ("pick", "in /opt/b.txt"),
           ("fixup", "rm /opt/a.txt"), ("pick", "ENV MODE=x"), ("drop", "in /opt/junk.bin")]


def _todo_from(seen: str, plan: list[tuple[str, str]]) -> str:
    picks = [l for l in seen.splitlines() if l.startswith("pick ")]
    out = []
    for action, needle in plan:
        line = next(l for l in picks if needle in l)
        out.append(action + line[len("pick"):])
    return "\n".join(out) + "\n"


def _ri_todo(cli, ref: str) -> str:
    steps = list(reversed(json.loads(ok(cli("log", "--json", ref)).out)["steps"]))[1:]
    return _todo_from("\n".join(f"pick {s['step_id'][7:19]} {s['command']}" for s in steps), RI_PLAN)


@engine
def test_rebase_todo_drop_reorder_squash_equals_the_reordered_build(sur, cli, with_engine, tmp_path):
    d = sur.docker
    tag = sur.fresh(sur.ri, "ri-todo")
    todo = tmp_path / "todo"
    todo.write_text(_ri_todo(cli, tag))
    r = ok(cli("rebase", "-i", "busybox:base", tag, "--todo", str(todo)))
    nid = new_id(r)
    assert d.image_id(tag) == nid
    assert "warning" not in r.err, r.err          # these steps commute
    # the same filesystem as building the reordered Dockerfile
    got, want = sur.fs(tag), sur.fs("sur/ri-reordered:1")
    assert got.listing == want.listing, sorted(set(got.listing.items()) ^ set(want.listing.items()))
    # layers: busybox, S1 (its own blob), S3+S6, S2+S7
    old = d.diff_ids(sur.ri)
    new = d.diff_ids(tag)
    assert len(new) == 4 and new[:2] == old[:2] and not set(new[2:]) & set(old)
    # history: squash keeps S6's entry (empty), fixup drops S7's, drop drops S5's; ENV config kept
    cmds = d.created_by(tag)
    assert len(cmds) == 6
    for want_cmd, got_cmd in zip(["in /opt/a.txt", "in /opt/c.txt", "in /opt/d.txt", "in /opt/b.txt", "ENV MODE=x"],
                                 cmds[1:]):
        assert want_cmd in got_cmd, (want_cmd, got_cmd)
    assert "MODE=x" in d.inspect(tag)["Config"]["Env"]
    assert d.run(tag, "ls", "/opt").split() == ["b.txt", "c.txt", "d.txt"]
    daemon_validate(tag)
    # every tag move goes through the journal
    assert ok(cli("reflog", tag)).out.splitlines()[0].startswith(f"{tag}@{{0}}  {nid[7:19]}")
    ok(cli("undo", tag))
    assert d.image_id(tag) == sur.ri


EDITOR = r'''
import json, os, shutil, sys
path = sys.argv[1]
seen = open(path).read()
open(os.environ["TEST_SEEN"], "w").write(seen)
picks = [l for l in seen.splitlines() if l.startswith("pick ")]
out = []
for action, needle in json.loads(os.environ["TEST_PLAN"]):
    line = next(l for l in picks if needle in l)
    out.append(action + line[len("pick"):])
open(path, "w").write("# edited\n" + "\n".join(out) + "\n")
'''


@engine
def test_rebase_interactive_through_editor(sur, cli, with_engine, tmp_path, monkeypatch):
    """$EDITOR gets the todo list (one ``pick <step id> <command>`` line per step above BASE, oldest first)
    and rewrites it; the result is the one --todo FILE gives for the same list (same image id)."""
    d = sur.docker
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    seen = tmp_path / "seen"
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.setenv("TEST_SEEN", str(seen))
    monkeypatch.setenv("TEST_PLAN", json.dumps(RI_PLAN))
    tag = sur.fresh(sur.ri, "ri-editor")
    r = ok(cli("rebase", "-i", f"{tag}~7"))
    nid = new_id(r)
    assert d.image_id(tag) == nid
    # the list the editor saw
    ids = step_ids(cli, sur.ri)
    picks = [l for l in seen.read_text().splitlines() if l and not l.startswith("#")]
    assert [l.split()[:2] for l in picks] == [["pick", i] for i in ids[1:]], picks
    assert "COPY" in picks[0] and picks[-1].endswith("RUN rm /opt/a.txt")
    # the same result as the same list from a file
    todo = tmp_path / "todo"
    todo.write_text(_todo_from(seen.read_text(), RI_PLAN))
    r2 = ok(cli("rebase", "-i", "busybox:base", sur.ri, "--todo", str(todo), "-t", "sur/ri-file:1"))
    assert new_id(r2) == nid
    assert sur.fs(tag).listing == sur.fs("sur/ri-reordered:1").listing


@engine
def test_rebase_reword(sur, cli, with_engine, tmp_path):
    d = sur.docker
    ids = step_ids(cli, sur.ri)
    todo = tmp_path / "todo"
    todo.write_text("".join(f"pick {i}\n" for i in ids[1:4]) + f"reword {ids[4]} ENV MODE=x  # now documented\n"
                    + "".join(f"p {i}\n" for i in ids[5:]))
    ok(cli("rebase", "-i", "busybox:base", sur.ri, "--todo", str(todo), "-t", "sur/ri-reword:1"))
    assert d.created_by("sur/ri-reword:1")[4] == "ENV MODE=x  # now documented"
    assert d.created_by("sur/ri-reword:1")[:4] == d.created_by(sur.ri)[:4]
    assert d.diff_ids("sur/ri-reword:1") == d.diff_ids(sur.ri)      # every layer kept as it was


@engine
def test_rebase_warns_where_a_dropped_or_moved_step_is_touched_later(sur, cli, with_engine, tmp_path):
    d = sur.docker
    ids = step_ids(cli, sur.ri)       # ids[1] = S1 (COPY a.txt), ids[7] = S7 (RUN rm /opt/a.txt)
    before = d.image_ids()
    todo = tmp_path / "drop"
    todo.write_text("\n".join(f"drop {i}" if k == 1 else f"pick {i}" for k, i in enumerate(ids) if k) + "\n")
    r = ok(cli("rebase", "-n", "-i", "busybox:base", sur.ri, "--todo", str(todo)))
    warns = [l for l in r.err.splitlines() if l.startswith("warning:")]
    assert len(warns) == 1 and "dropped step 2" in warns[0] and "/opt/a.txt" in warns[0] \
        and "step 8 also touches" in warns[0], r.err
    assert "dry run: nothing written" in r.err
    todo = tmp_path / "move"
    todo.write_text(f"pick {ids[7]}\n" + "".join(f"pick {i}\n" for i in ids[1:7]))
    r = ok(cli("rebase", "-n", "-i", "busybox:base", sur.ri, "--todo", str(todo)))
    warns = [l for l in r.err.splitlines() if l.startswith("warning:")]
    assert len(warns) == 1 and "step 2 now comes after step 8" in warns[0] and "/opt/a.txt" in warns[0], r.err
    assert d.image_ids() == before
    # warned before writing: the same list, written
    r = ok(cli("rebase", "-i", "busybox:base", sur.ri, "--todo", str(todo), "-t", "sur/ri-moved:1"))
    assert r.err.index("warning:") < r.err.index("sur/ri-moved:1")
    assert d.run("sur/ri-moved:1", "cat", "/opt/a.txt") == "a\n"       # the later step (S1 now) wins


def test_rebase_warns_before_writing(cli, tmp_path, home, monkeypatch):
    """"Before writing, warn": the warning about a dropped step whose path a later step touches must come out
    before the new image is written (so a user can stop it), not after."""
    import imggit.commands.rebase as rebase_cmd
    import imggit.ops.publish as publish_mod

    path = tmp_path / "l"
    st = Session().store("oci", str(path), for_write=True)
    b.write_image(st, "w:1", [b.StepSpec("base", b.make_layer([b.file("etc/conf", "1\n")])),
                              b.StepSpec("write x", b.make_layer([b.file("x", "x\n")])),
                              b.StepSpec("append x", b.make_layer([b.file("x", "x\ny\n")]))])
    L = f"oci:{path}"
    ids = step_ids(cli, f"{L}:w:1")
    todo = tmp_path / "todo"
    todo.write_text(f"drop {ids[1]}\npick {ids[2]}\n")
    events = []
    real_warn, real_publish = rebase_cmd.warn, publish_mod.publish

    def warn(msg, *a, **k):
        events.append("warn")
        return real_warn(msg, *a, **k)

    def publish(*a, **k):
        events.append("write")
        return real_publish(*a, **k)

    monkeypatch.setattr(rebase_cmd, "warn", warn)
    monkeypatch.setattr(publish_mod, "publish", publish)
    r = ok(cli("rebase", "-i", f"{L}:w:1~2", f"{L}:w:1", "--todo", str(todo)))
    assert "dropped step 2" in r.err and "/x" in r.err, r.err
    assert events.count("write") == 1 and "warn" in events
    assert events.index("warn") < events.index("write"), events


@engine
def test_rebase_todo_errors_are_one_line(sur, cli, with_engine, tmp_path):
    d = sur.docker
    ids = step_ids(cli, sur.ri)
    tag = sur.fresh(sur.ri, "ri-errors")
    before = d.image_ids()
    cases = [
        (f"pick {ids[1]}\npick deadbeef0123\n", "todo line 2", "no step deadbeef0123"),
        (f"pick {ids[1]}\nfrobnicate {ids[2]}\n", "todo line 2", "unknown action 'frobnicate'"),
        (f"squash {ids[1]}\npick {ids[2]}\n", "todo line 1", "cannot squash the first step"),
        (f"# comment\ndrop {ids[1]}\nfixup {ids[2]}\n", "todo line 3", "cannot fixup the first step"),
        (f"pick {ids[1]}\npick {ids[1]}\n", "todo line 2", "listed twice"),
        (f"pick {ids[0]}\n", "todo line 1", "above the base"),
        (f"reword {ids[1]}\n", "todo line 1", "reword needs"),
    ]
    for n, (text, *needles) in enumerate(cases):
        todo = tmp_path / f"todo{n}"
        todo.write_text(text)
        one_line(cli("rebase", "-i", "busybox:base", tag, "--todo", str(todo)), 2, *needles)
    assert d.image_ids() == before and d.image_id(tag) == sur.ri
    assert cli("reflog", tag).code == 2


def _syn_todo(cli, ref: str) -> str:
    ids = step_ids(cli, ref)     # ids[1..5] = L1..L5
    return (f"pick {ids[1]}\nsquash {ids[2]}\npick {ids[4]}\npick {ids[3]}\nfixup {ids[5]}\n")


@engine
def test_rebase_synthetic_opaque_whiteout_hardlink(sur, cli, with_engine, tmp_path):
    """Squash an opaque directory into the layer below it, reorder, fix up a whiteout of a base file: the
    result equals the synthetic image with the layers in the new order."""
    d = sur.docker
    todo = tmp_path / "todo"
    todo.write_text(_syn_todo(cli, "sur/synrb:1"))
    ok(cli("rebase", "-i", "busybox:base", "sur/synrb:1", "--todo", str(todo), "-t", "sur/synrb:rebased"))
    got, want = sur.fs("sur/synrb:rebased"), sur.fs("sur/synrb-expected:1")
    assert got.listing == want.listing, sorted(set(got.listing.items()) ^ set(want.listing.items()))
    new, old = d.diff_ids("sur/synrb:rebased"), d.diff_ids("sur/synrb:1")
    assert len(new) == 4 and new[0] == old[0] and new[2] == old[4]
    assert d.run("sur/synrb:rebased", "ls", "/opt/d").split() == ["new"]
    daemon_validate("sur/synrb:rebased")


def test_rebase_interactive_in_an_oci_layout(cli, tmp_path, home):
    """The same list in an OCI layout: unchanged layers keep their blobs (same digests); the result is valid;
    the history has the squashed step as an empty entry and no entry for the fixup."""
    path = tmp_path / "l"
    L = f"oci:{path}"
    st = Session().store("oci", str(path), for_write=True)
    bb = b.make_layer([b.directory("bin"), b.file("bin/sh", "#!", 0o755)])
    layers = _syn_rebase_layers()
    steps = [b.StepSpec("base", bb)] + [b.StepSpec(f"synthetic step {i + 1}", l) for i, l in enumerate(layers)]
    b.write_image(st, "base", steps[:1], {"Env": [PATH_ENV]})
    b.write_image(st, "rb:1", steps, {"Env": [PATH_ENV]})
    old = OCILayout(str(path)).get("rb:1")
    todo = tmp_path / "todo"
    todo.write_text(_syn_todo(cli, f"{L}:rb:1"))
    r = ok(cli("rebase", "-i", f"{L}:base", f"{L}:rb:1", "--todo", str(todo)))
    new = OCILayout(str(path)).get("rb:1")
    assert new.id == new_id(r)
    assert len(new.layers) == 4
    assert new.layers[0].digest == old.layers[0].digest and new.layers[2].digest == old.layers[4].digest
    assert validate(OCILayout(str(path)), new).ok
    hist = [h.get("created_by") for h in new.config.history]
    assert hist == ["base", "synthetic step 1", "synthetic step 2", "synthetic step 4", "synthetic step 3"]
    assert [bool(h.get("empty_layer")) for h in new.config.history] == [False, False, True, False, False]
    ok(cli("undo", f"{L}:rb:1"))
    assert OCILayout(str(path)).get("rb:1").id == old.id


# --- cherry-pick ---------------------------------------------------------------------------------


@engine
def test_cherry_pick_appends_steps_of_another_image(sur, cli, with_engine):
    d = sur.docker
    tag = sur.fresh(sur.capp, "picked")
    r = ok(cli("cherry-pick", "sur/tools:1~2..", tag))
    nid = new_id(r)
    assert d.image_id(tag) == nid and d.image_id("sur/tools:1") == sur.tools
    # their layers (same diff ids) and history entries, on top of ONTO's
    assert d.diff_ids(tag) == d.diff_ids(sur.capp) + d.diff_ids(sur.tools)[-1:]
    assert d.created_by(tag) == d.created_by(sur.capp) + d.created_by(sur.tools)[-2:]
    # the filesystem: ONTO's plus what the picked steps changed
    want = dict(sur.fs(sur.capp).listing)
    want["etc/tool.conf"] = sur.fs(sur.tools).listing["etc/tool.conf"]
    got = sur.fs(tag).listing
    assert {p: v for p, v in got.items() if p != "etc"} == {p: v for p, v in want.items() if p != "etc"}
    assert "usr/local/bin/tool" not in got               # a step below the range
    # the config: ONTO's CMD, both images' Env
    cfg = d.inspect(tag)["Config"]
    assert cfg["Cmd"] == ["sh", "/srv/app.sh"]
    assert {"APP=1", "TOOL=1"} <= set(cfg["Env"])
    assert d.run(tag).strip() == "capp APP=1 TOOL=1"
    assert d.run(tag, "cat", "/etc/tool.conf") == "cfg\n"
    daemon_validate(tag)
    assert ok(cli("reflog", tag)).out.splitlines()[0].startswith(f"{tag}@{{0}}  {nid[7:19]}")
    ok(cli("undo", tag))
    assert d.image_id(tag) == sur.capp


@engine
def test_cherry_pick_to_a_new_tag(sur, cli, with_engine):
    d = sur.docker
    ok(cli("cherry-pick", "sur/tools:1~1..sur/tools:1", "sur/capp:1", "-t", "sur/capp:env-only"))
    assert d.image_id("sur/capp:1") == sur.capp
    assert d.diff_ids("sur/capp:env-only") == d.diff_ids(sur.capp)          # an ENV step: no layer
    assert "TOOL=1" in d.inspect("sur/capp:env-only")["Config"]["Env"]


def test_rebase_interactive_squash_keeps_a_hardlink_into_the_layers_below(cli, tmp_path, home):
    """A step links a file of the layers below, the next step replaces that file; squashing the two
    gives the link the old bytes, read from the layer below. Judged by the reference applier."""
    from refapply import apply_all

    from imggit.layers.compress import open_decompressed

    path = tmp_path / "l"
    L = f"oci:{path}"
    st = Session().store("oci", str(path), for_write=True)
    layers = [b.make_layer([b.directory("bin"), b.file("bin/sh", "#!", 0o755), b.file("t", "old bytes\n")]),
              b.make_layer([b.hardlink("l", "t")]),
              b.make_layer([b.file("t", "new bytes\n", mtime=1700000001)]),
              b.make_layer([b.file("top", "top\n")])]
    b.write_image(st, "base", [b.StepSpec("base", layers[0])], {"Env": [PATH_ENV]})
    b.write_image(st, "hl:1", [b.StepSpec(f"step {i}", x) for i, x in enumerate(layers)], {"Env": [PATH_ENV]})
    ids = step_ids(cli, f"{L}:hl:1")
    todo = tmp_path / "todo"
    todo.write_text(f"pick {ids[1]}\nsquash {ids[2]}\npick {ids[3]}\n")
    ok(cli("rebase", "-i", f"{L}:base", f"{L}:hl:1", "--todo", str(todo)))
    lay = OCILayout(str(path))
    new = lay.get("hl:1")
    assert len(new.layers) == 3
    got = []
    for i in range(len(new.layers)):
        stream, _ = open_decompressed(lay.open_blob(new, i), f"layer {i}")
        got.append(stream.read())
    assert apply_all(got).listing() == apply_all(layers).listing()
    assert validate(lay, new).ok
