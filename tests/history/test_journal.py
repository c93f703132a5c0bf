"""The journal: every tag move recorded in a bare git repository; reflog, REF@{N}, undo, gc.

Most cases use OCI layouts and the embedded store (no engine); the journal is
checked with the real ``git`` CLI. Where the command line recorded in the
reflog matters, imggit runs as a subprocess (in-process runs see pytest's argv).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import Result
from oneline import one_line

from imggit.errors import RefError, StoreError
from imggit.layers import build as b
from imggit.model import human_size
from imggit.session import Session
from imggit.stores.ocilayout import OCILayout

engine = pytest.mark.engine


def imggit(*args: str) -> Result:
    """imggit as a separate process (the environment of the test: IMGGIT_HOME, DOCKER_HOST)."""
    p = subprocess.run([sys.executable, "-m", "imggit", *args], check=False, capture_output=True, text=True, timeout=300)
    return Result(p.returncode, p.stdout, p.stderr)


def git(home, *args: str) -> str:
    p = subprocess.run(["git", "--git-dir", str(home / "journal.git"), *args], check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def ref_of(home, tag: str) -> str:
    """The journal ref of a tag (refs/imggit/<store>/<escaped tag>)."""
    refs = git(home, "for-each-ref", "--format=%(refname)", "refs/imggit/").split()
    escaped = "".join(c if c.isalnum() or c in "-_." else "%" + c.encode().hex().upper() for c in tag)
    found = [r for r in refs if r.endswith("/" + escaped)]
    assert len(found) == 1, (tag, refs)
    return found[0]


def short(image_id: str) -> str:
    return image_id[7:19]


# --- a layout: a base and images built on it ------------------------------------------------------

BASE = [
    b.StepSpec("ADD rootfs", b.make_layer([b.directory("etc"), b.file("etc/passwd", "root\n")])),
    b.StepSpec("ENV B=1", None),
]


def steps(*names: str) -> list[b.StepSpec]:
    return BASE + [b.StepSpec(f"RUN {n}", b.make_layer([b.file(n, n * 200)])) for n in names]


@pytest.fixture
def L(tmp_path, home):
    """An OCI layout: base, and untagged images v1..v3 and two/three built on it (reached by id)."""
    path = tmp_path / "l"
    st = Session().store("oci", str(path), for_write=True)
    ids = {"base": b.write_image(st, "base", BASE, {"Env": ["B=1"]}).image.id}
    ids["base2"] = b.write_image(st, "base2", [BASE[0], b.StepSpec("ENV B=2", None)], {"Env": ["B=2"]}).image.id
    for name, ss in (("v1", steps("one")), ("v2", steps("two")), ("v3", steps("three", "four"))):
        ids[name] = b.write_image(st, name, ss, {"Env": ["B=1"], "Cmd": [name]}).image.id
    return Layout(path, ids)


class Layout:
    def __init__(self, path, ids):
        self.path = path
        self.ids = ids
        self.ref = f"oci:{path}"

    def __call__(self, name: str) -> str:
        return f"{self.ref}:{name}"

    @property
    def store(self) -> OCILayout:
        return OCILayout(str(self.path))

    def id(self, tag: str) -> str:
        return self.store.get(tag).id

    def untag(self, tag: str) -> None:
        self.store.delete_tag(tag)

    def index(self) -> dict:
        return json.loads((self.path / "index.json").read_text())

    def blobs(self) -> set[str]:
        return set(os.listdir(self.path / "blobs" / "sha256"))


# --- the journal as git sees it ---------------------------------------------------------------------


def test_each_step_is_one_commit_and_the_git_dag_is_the_layer_dag(L, home):
    st = L.store
    assert imggit("tag", L("v1"), L("a")).code == 0
    assert imggit("tag", L("v3"), L("b")).code == 0
    graph = git(home, "log", "--graph", "--all", "--oneline")
    lines = graph.splitlines()
    # every step once, the shared base steps too; one record commit per tag on top
    for title in ("ADD rootfs", "ENV B=1", "RUN one", "RUN three", "RUN four"):
        assert sum(1 for l in lines if l.rstrip().endswith(" " + title)) == 1, (title, graph)
    assert any(l.rstrip().endswith(f"a: {short(L.ids['v1'])}") for l in lines), graph
    assert any(l.rstrip().endswith(f"b: {short(L.ids['v3'])}") for l in lines), graph
    assert "|/" in graph                                      # the fork above the shared base
    ra, rb = ref_of(home, "a"), ref_of(home, "b")
    assert ra.startswith("refs/imggit/oci/") and rb.startswith("refs/imggit/oci/")
    assert git(home, "rev-list", "--count", ra).strip() == str(len(st.get("v1").steps) + 1)
    assert git(home, "rev-list", "--count", rb).strip() == str(len(st.get("v3").steps) + 1)
    mb = git(home, "merge-base", ra, rb).strip()
    assert git(home, "log", "-1", "--format=%s", mb).strip() == "ENV B=1"
    assert git(home, "rev-list", "--count", mb).strip() == "2"
    # the record: which image, its exact config (hashing to the image id), its manifest; steps carry chain ids
    info = json.loads(git(home, "show", f"{ra}:image.json"))
    assert (info["tag"], info["id"], info["digest"]) == ("a", L.ids["v1"], st.get("v1").digest)
    config = subprocess.run(["git", "--git-dir", str(home / "journal.git"), "cat-file", "blob", f"{ra}:config"],
                            capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(config).hexdigest() == L.ids["v1"]
    top = json.loads(git(home, "show", f"{ra}~1:step.json"))
    assert top["chain_id"] == st.get("v1").layers[-1].chain_id
    # the same step in two images is the same commit
    assert git(home, "rev-parse", f"{ra}~2").strip() == git(home, "rev-parse", f"{rb}~3").strip()


def test_git_reflog_records_each_move_with_the_command_line(L, home):
    assert imggit("tag", L("v1"), L("app")).code == 0
    assert imggit("tag", L("v2"), L("app")).code == 0
    assert imggit("reset", L("app~1")).code == 0
    assert imggit("undo", L("app")).code == 0
    ref = ref_of(home, "app")
    messages = git(home, "reflog", "show", "--format=%gs", ref).splitlines()
    assert messages[1:] == [f"imggit reset {L('app~1')}", f"imggit tag {L('v2')} {L('app')}",
                            f"imggit tag {L('v1')} {L('app')}"], messages
    assert messages[0].startswith("imggit undo")
    values = [json.loads(git(home, "show", f"{ref}@{{{n}}}:image.json"))["id"] for n in range(4)]
    assert values[0] == values[2] == L.ids["v2"] and values[3] == L.ids["v1"]
    # imggit's own view of it
    r = imggit("reflog", L("app"))
    assert r.code == 0, r
    rows = r.out.splitlines()
    assert len(rows) == 4
    for n, row in enumerate(rows):
        assert row.startswith(f"{L('app')}@{{{n}}}  {short(values[n])}  "), rows
    assert rows[3].endswith(f"imggit tag {L('v1')} {L('app')}")
    r = imggit("reflog", "-n", "1", L("app"))
    assert r.out.splitlines() == rows[:1]
    r = imggit("reflog")
    assert r.code == 0 and len(r.out.splitlines()) >= 4
    assert f"imggit reset {L('app~1')}" in r.out


def test_the_move_is_journalled_before_the_tag_moves(L, home, cli, monkeypatch):
    seen = {}

    def tag_fails(self, image, name):
        # by the time the store is asked to move the tag, the journal has the move
        seen["recorded"] = json.loads(git(home, "show", f"{ref_of(home, name)}:image.json"))["id"]
        raise StoreError("simulated failure while moving the tag")

    monkeypatch.setattr(OCILayout, "tag", tag_fails)
    r = cli("tag", L("v1"), L("app"))
    assert r.code == 4, r
    assert seen["recorded"] == L.ids["v1"]
    with pytest.raises(RefError):
        L.store.get("app")


# --- REF@{N} -----------------------------------------------------------------------------------------


def test_ref_at_n_in_every_revision_argument(L, home, cli, tmp_path):
    for src in ("v1", "v2"):
        assert cli("tag", L(src), L("app")).code == 0        # app@{1} = v1, app@{0} = v2
    for src in ("base", "base2"):
        assert cli("tag", L(src), L("b")).code == 0          # b@{1} = base, b@{0} = base2
    r = cli("log", "--oneline", L("app@{1}"))
    assert r.code == 0 and "RUN one" in r.out and "RUN two" not in r.out, r
    r = cli("log", "--oneline", L("app@{1}~1"))
    assert r.code == 0 and "RUN one" not in r.out and "ENV B=1" in r.out, r
    r = cli("log", "--oneline", f"{L('base')}..{L('app@{1}')}")
    assert r.code == 0 and r.out.count("\n") == 1 and "RUN one" in r.out, r
    assert cli("show", L("app@{0}")).code == 0
    r = cli("cp", L("app@{1}"), f"oci:{tmp_path}/other:x")
    assert r.code == 0, r
    assert OCILayout(str(tmp_path / "other")).get("x").id == L.ids["v1"]
    r = cli("tag", L("app@{1}"), L("back"))
    assert r.code == 0 and L.id("back") == L.ids["v1"], r
    r = cli("tag", "--config-from", L("app@{1}"), L("v3~1"), L("cf"))
    assert r.code == 0 and L.store.get("cf").config.runtime["Cmd"] == ["v1"], r
    r = cli("squash", "-n", f"{L('b@{1}')}..{L('app@{1}')}")
    assert r.code == 0, r
    # rebase: NEW, UPSTREAM and IMAGE all as REF@{N}
    r = cli("rebase", "--onto", L("b@{0}"), L("b@{1}"), L("app@{1}"), "-t", L("rebased"))
    assert r.code == 0, r
    img = L.store.get("rebased")
    assert [s.created_by for s in img.steps] == ["ADD rootfs", "ENV B=2", "RUN one"]
    r = cli("rebase", "-n", "--onto", L("b@{0}"), "--from", L("b@{1}"), "--all", L.ref)
    assert r.code == 0 and "v1" in r.out and "v3" in r.out, r
    # mistakes
    one_line(cli("log", L("app@{9}")), 2, "only 2 value(s)", "@{0}..@{1}")
    one_line(cli("tag", L("app@{2}"), L("x")), 2, "only 2 value(s)")
    one_line(cli("log", L("app~1@{1}")), 2, "@{N} goes right after the name")
    one_line(cli("log", L("v1@{1}")), 2, "no record of 'v1'")


# --- undo ---------------------------------------------------------------------------------------------


def test_undo_after_each_rewrite_restores_the_previous_image(L, home, cli):
    st = L.store
    assert cli("tag", L("v3"), L("app")).code == 0
    rewrites = [
        ("tag", L("v2"), L("app")),
        ("reset", L("app~1")),
        ("rebase", "--onto", L("base2"), L("base"), L("app")),
        ("squash", f"{L('base')}..{L('app')}"),
    ]
    for args in rewrites:
        before = st.get("app").id
        r = cli(*args)
        assert r.code == 0, (args, r)
        after = st.get("app").id
        assert after != before, args
        r = cli("undo", L("app"))
        assert r.code == 0, (args, r)
        assert f"app: {short(after)} -> {short(before)}" in r.err
        assert r.out.strip() == before
        assert st.get("app").id == before, args


def test_undo_without_a_name_takes_the_last_move(L, home, cli):
    assert cli("tag", L("v1"), L("a")).code == 0
    assert cli("tag", L("v2"), L("a")).code == 0
    assert cli("tag", L("v1"), L("b")).code == 0
    assert cli("tag", L("v3"), L("b")).code == 0
    r = cli("undo")
    assert r.code == 0, r
    assert L.id("b") == L.ids["v1"] and L.id("a") == L.ids["v2"]


def test_undo_of_a_tag_imggit_created_removes_it(L, home, cli):
    assert cli("tag", L("v1"), L("new")).code == 0
    r = cli("undo", L("new"))
    assert r.code == 0, r
    assert "removed new" in r.err
    with pytest.raises(RefError):
        L.store.get("new")
    assert L.id("v1") == L.ids["v1"]


def test_undo_that_removes_a_tag_is_in_the_journal(L, home, cli):
    """Removing a tag is a move too: ``imggit reflog`` (every move) shows it, newest first."""
    assert cli("tag", L("v1"), L("new")).code == 0
    assert cli("undo", L("new")).code == 0
    r = cli("reflog")
    assert r.code == 0, r
    assert "removed" in r.out.splitlines()[0], r.out


def _forget_image(L, image_id: str, *, layers: bool = False) -> None:
    """Make an image gone from the layout: its index entries, manifest and config (and unique layers)."""
    st = L.store
    img = st.get(image_id)
    data = L.index()
    data["manifests"] = [m for m in data["manifests"] if m["digest"] != img.digest]
    (L.path / "index.json").write_text(json.dumps(data))
    os.unlink(st.blob_file(img.digest))
    os.unlink(st.blob_file(img.manifest.config.digest))
    if layers:
        os.unlink(st.blob_file(img.layers[-1].digest))


def test_undo_recreates_an_image_gone_from_the_store(L, home, cli):
    st = L.store
    assert cli("tag", L("v1"), L("app")).code == 0
    assert cli("tag", L("v2"), L("app")).code == 0
    digest = st.get("v1").digest
    L.untag("v1")
    _forget_image(L, L.ids["v1"])
    with pytest.raises(RefError):
        st.get(L.ids["v1"])
    r = cli("undo", L("app"))
    assert r.code == 0, r
    assert "re-created from the journal" in r.err
    img = L.store.get("app")
    assert img.id == L.ids["v1"] and img.digest == digest      # the same config and manifest bytes
    from imggit.validate import validate

    assert validate(L.store, img).ok


def test_undo_says_what_is_missing(L, home, cli):
    assert cli("tag", L("v1"), L("app")).code == 0
    assert cli("tag", L("v2"), L("app")).code == 0
    layer = L.store.get("v1").layers[-1]
    L.untag("v1")
    _forget_image(L, L.ids["v1"], layers=True)
    one_line(cli("undo", L("app")), 2, short(L.ids["v1"]), "1 of its layer(s)", short(layer.diff_id))
    assert L.id("app") == L.ids["v2"]
    one_line(cli("log", L("app@{1}")), 2, "gone from")


def test_undo_and_reflog_of_a_tag_without_a_record(L, home, cli):
    one_line(cli("undo", L("v1")), 2, "no record of 'v1'")
    one_line(cli("reflog", L("v1")), 2, "no record of 'v1'")
    one_line(cli("undo", L("nothere")), 2, "no record of 'nothere'")
    one_line(cli("undo"), 2, "no tag move to undo")


def test_undo_after_the_tag_moved_outside_imggit(L, home, cli):
    """imggit moved app to v1; then something else (a build, docker tag, skopeo) moved it to v2; then
    imggit moved it to v3 (and said "was v2"). Undo puts back the value before imggit's last move: v2."""
    assert cli("tag", L("v1"), L("app")).code == 0
    b.write_image(Session().store("oci", str(L.path)), "app", steps("two"), {"Env": ["B=1"], "Cmd": ["v2"]})
    assert L.id("app") == L.ids["v2"]
    r = cli("tag", L("v3"), L("app"))
    assert r.code == 0 and f"was {short(L.ids['v2'])}" in r.err, r
    r = cli("undo", L("app"))
    assert r.code == 0, r
    assert L.id("app") == L.ids["v2"]


def test_journal_off(L, home, cli, monkeypatch):
    monkeypatch.setenv("IMGGIT_JOURNAL", "0")
    assert cli("tag", L("v1"), L("app")).code == 0
    assert L.id("app") == L.ids["v1"]
    one_line(cli("reflog"), 2, "journal is off")
    one_line(cli("undo", L("app")), 2, "journal is off")
    assert not (home / "journal.git").exists()


# --- the embedded store ----------------------------------------------------------------------------------


def test_embedded_store_names_and_undo(L, home, cli):
    assert cli("tag", L("v1"), "embedded:app:1").code == 0
    assert cli("tag", L("v2"), "embedded:app:1").code == 0
    # no engine: unprefixed names are the embedded store's
    emb = OCILayout(str(home / "store"))
    assert emb.get("app:1").id == L.ids["v2"]
    r = cli("reflog", "app:1")
    assert r.code == 0 and len(r.out.splitlines()) == 2, r
    assert cli("log", "app:1@{1}").code == 0
    assert cli("undo", "app:1").code == 0
    assert emb.get("app:1").id == L.ids["v1"]
    assert "refs/imggit/embedded/" in git(home, "for-each-ref")


# --- gc ------------------------------------------------------------------------------------------------------


def _sizes(L, digests) -> int:
    return sum(os.path.getsize(L.path / "blobs" / "sha256" / d[7:]) for d in digests)


def _own_blobs(L, image_id: str) -> set[str]:
    img = L.store.get(image_id)
    shared = set()
    for tag in ("base", "base2"):
        shared |= {l.digest for l in L.store.get(tag).layers}
    return {img.digest, img.manifest.config.digest} | {l.digest for l in img.layers} - shared


def test_gc_keeps_what_a_tag_or_a_young_journal_entry_reaches(L, home, cli):
    st = Session().store("oci", str(L.path))
    # v5: an untagged image nothing refers to; v1: its tag removed (blobs only); both never journalled
    v5 = b.write_image(st, None, steps("five"), {"Cmd": ["v5"]}).image.id
    # app: written outside imggit as v2, then moved by imggit to v3 (v2 is journalled "as found")
    b.write_image(st, "app", steps("two"), {"Env": ["B=1"], "Cmd": ["v2"]})
    assert cli("tag", L("v3"), L("app")).code == 0
    v1_blobs, v2_blobs, v5_blobs = (_own_blobs(L, L.ids["v1"]), _own_blobs(L, L.ids["v2"]), _own_blobs(L, v5))
    assert len(v1_blobs) == len(v2_blobs) == len(v5_blobs) == 3
    for t in ("v1", "v2", "v3"):
        L.untag(t)
    blobs_before, index_before = L.blobs(), L.index()
    freed = human_size(_sizes(L, v1_blobs | v5_blobs))
    r = cli("gc", "--dry-run", L.ref)
    assert r.code == 0, r
    assert f"would remove 6 blob(s) and 1 untagged image(s), {freed} freed" in r.out, r.out
    assert L.blobs() == blobs_before and L.index() == index_before
    r = cli("gc", L.ref)
    assert r.code == 0, r
    assert f"removed 6 blob(s) and 1 untagged image(s), {freed} freed" in r.out, r.out
    assert L.blobs() == blobs_before - {d[7:] for d in v1_blobs | v5_blobs}
    assert all(m["digest"] != L.store.get("app").digest or m.get("annotations") for m in L.index()["manifests"])
    for gone in (L.ids["v1"], v5):
        with pytest.raises(RefError):
            L.store.get(gone)
    assert L.store.get(L.ids["v2"]).id == L.ids["v2"]         # the journal still reaches it
    assert cli("log", L("app@{1}")).code == 0
    # a tighter --prune: the journal entries are older than that, so v2 goes too
    freed = human_size(_sizes(L, v2_blobs))
    r = cli("gc", "--prune", "0", L.ref)
    assert r.code == 0, r
    assert f"removed 3 blob(s) and 1 untagged image(s), {freed} freed" in r.out, r.out
    assert not {d[7:] for d in v2_blobs} & L.blobs()
    # what a tag reaches always stays
    for t in ("app", "base", "base2"):
        img = L.store.get(t)
        assert all(L.store.has_blob(l.digest) for l in img.layers) and L.store.has_blob(img.digest)
    one_line(cli("undo", L("app")), 2, "gone from", short(L.ids["v2"]))
    r = cli("gc", L.ref)
    assert r.code == 0 and "removed 0 blob(s) and 0 untagged image(s), 0 B freed" in r.out, r


def test_gc_keeps_images_of_an_index(L, home, cli):
    """A tagged multi-platform index keeps every manifest it lists, their configs and layers."""
    from imggit.model import dump_json

    st = Session().store("oci", str(L.path))
    amd = b.write_image(st, None, [b.StepSpec("ADD a", b.make_layer([b.file("a", "amd")]))]).image
    arm = b.write_image(st, None, [b.StepSpec("ADD a", b.make_layer([b.file("a", "arm")]))],
                        architecture="arm64").image
    idx = dump_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": i.digest, "size": len(i.manifest.raw),
         "platform": {"os": "linux", "architecture": a}} for i, a in ((amd, "amd64"), (arm, "arm64"))]})
    d = L.store.put_bytes(idx)
    data = L.index()
    data["manifests"] = [m for m in data["manifests"] if m["digest"] not in (amd.digest, arm.digest)]
    data["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d,
                              "size": len(idx), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (L.path / "index.json").write_text(json.dumps(data))
    r = cli("gc", "--prune", "0", L.ref)
    assert r.code == 0 and "removed 0 blob(s)" in r.out, r
    for img in (amd, arm):
        assert L.store.has_blob(img.digest) and L.store.has_blob(img.manifest.config.digest)
        assert L.store.has_blob(img.layers[0].digest)
    assert cli("--platform", "linux/arm64", "log", L("multi")).code == 0


def test_gc_of_the_embedded_store(L, home, cli):
    assert cli("tag", L("v1"), "embedded:app").code == 0
    assert cli("tag", L("v2"), "embedded:app").code == 0
    emb = OCILayout(str(home / "store"))
    layer = emb.get(L.ids["v1"]).layers[-1].digest
    r = cli("gc")
    assert r.code == 0 and r.out.startswith("the embedded store") and "removed 0 blob(s)" in r.out, r
    r = cli("gc", "--prune", "0")
    assert r.code == 0 and "removed 3 blob(s) and 1 untagged image(s)" in r.out, r
    assert not emb.has_blob(layer)
    assert emb.get("app").id == L.ids["v2"]


def test_gc_of_the_embedded_store_cleans_the_download_cache(L, home, cli):
    """Cache blobs no pull used for --prune days go; young ones stay; gc of an OCI layout leaves the cache."""
    cache = home / "cache" / "blobs"
    old, young = cache / "sha256" / ("1" * 64), cache / "sha256" / ("2" * 64)
    part = cache / "partial" / ("sha256:" + "3" * 64)
    for p, n in ((old, 3000), (young, 5), (part, 700)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * n)
    t = time.time() - 30 * 86400
    os.utime(old, (t, t))
    os.utime(part, (t, t))
    r = cli("gc", L.ref)
    assert r.code == 0 and "download cache" not in r.out and old.exists(), r
    r = cli("gc", "-n")
    assert r.code == 0 and "the download cache: would remove 2 file(s), 3.7 kB freed; 1 kept" in r.out, r
    assert old.exists() and part.exists()
    r = cli("gc")
    assert r.code == 0 and "the download cache: removed 2 file(s), 3.7 kB freed; 1 kept" in r.out, r
    assert not old.exists() and not part.exists() and young.exists()


def test_gc_keeps_an_image_the_journal_still_names_after_its_tag_was_undone(L, home, cli):
    """rebase -t new, then undo (the tag imggit created is removed). The journal entry of that rebase is
    younger than --prune and reaches the image, so gc keeps its blobs."""
    r = cli("rebase", "--onto", L("base2"), L("base"), L("v1"), "-t", L("new"))
    assert r.code == 0, r
    img = L.store.get("new")
    assert img.id == r.out.strip().splitlines()[-1]
    own = {img.digest, img.manifest.config.digest}
    assert cli("undo", L("new")).code == 0
    assert all(L.store.has_blob(d) for d in own)
    r = cli("reflog")
    assert r.code == 0 and short(img.id) in r.out, r          # the journal names it
    r = cli("gc", L.ref)
    assert r.code == 0, r
    assert all(L.store.has_blob(d) for d in own), r.out


def test_gc_refuses_other_stores(L, home, cli, tmp_path):
    one_line(cli("gc", "docker-daemon:"), 2, "gc works on the embedded store and OCI layouts")
    assert cli("cp", L("v1"), f"docker-archive:{tmp_path}/a.tar:app:1").code == 0
    one_line(cli("gc", f"docker-archive:{tmp_path}/a.tar"), 2, "gc works on", "docker archive")
    assert cli("cp", L("v1"), f"oci-archive:{tmp_path}/o.tar:app").code == 0
    one_line(cli("gc", f"oci-archive:{tmp_path}/o.tar"), 2, "gc works on")
    one_line(cli("gc", f"oci:{tmp_path}/missing"), 2, "does not exist")


# --- the engine --------------------------------------------------------------------------------------------

JR_APP = """FROM busybox:base
RUN echo {v} > /v
CMD ["cat", "/v"]
"""


@pytest.fixture(scope="module")
def jr(engine):
    ids = {
        "app1": engine.build("jr/app:1", JR_APP.format(v=1)),
        "app2": engine.build("jr/app:2", JR_APP.format(v=2)),
    }
    # metadata only on top of app:1: removing it leaves every layer in the engine
    ids["labelled"] = engine.build("jr/labelled:1", "FROM jr/app:1\nLABEL extra=yes\n")
    ids["other"] = engine.build("jr/other:1", "FROM jr/app:1\nLABEL other=yes\n")
    return ids


@engine
def test_engine_moves_are_journalled(jr, cli, with_engine, home):
    e = with_engine
    e.docker("tag", jr["app1"], "jr/app:cur")
    r = imggit("tag", "jr/app:2", "jr/app:cur")
    assert r.code == 0, r
    assert e.image_id("jr/app:cur") == jr["app2"]
    r = cli("reflog", "jr/app:cur")
    assert r.code == 0, r
    rows = r.out.splitlines()
    assert len(rows) == 2
    assert rows[0].startswith(f"jr/app:cur@{{0}}  {short(jr['app2'])}") and rows[0].endswith(
        "imggit tag jr/app:2 jr/app:cur")
    assert rows[1].startswith(f"jr/app:cur@{{1}}  {short(jr['app1'])}") and rows[1].endswith("as found")
    ref = ref_of(home, "jr/app:cur")
    assert ref.startswith("refs/imggit/engine")
    assert git(home, "reflog", "show", "--format=%gs", ref).splitlines() == ["imggit tag jr/app:2 jr/app:cur",
                                                                             "as found"]
    graph = git(home, "log", "--graph", "--all", "--oneline")
    assert graph.count("Imported from -") == 1 and "RUN echo 2 > /v" in graph
    # REF@{N} in the engine
    r = cli("cp", "jr/app:cur@{1}", "docker-daemon:jr/app:prev")
    assert r.code == 0, r
    assert e.image_id("jr/app:prev") == jr["app1"]
    assert cli("log", "docker-daemon:jr/app:cur@{1}~1").code == 0
    one_line(cli("log", "jr/app:cur@{5}"), 2, "only 2 value(s)")
    r = cli("undo", "jr/app:cur")
    assert r.code == 0, r
    assert e.image_id("jr/app:cur") == jr["app1"]
    assert e.run("jr/app:cur").strip() == "1"


@engine
def test_engine_undo_recreates_an_image_gone_from_the_engine(jr, cli, with_engine):
    e = with_engine
    e.docker("tag", jr["labelled"], "jr/t:1")
    assert cli("tag", "jr/app:1", "jr/t:1").code == 0
    e.docker("rmi", "jr/labelled:1")                         # the image is now only known to the journal
    assert e.docker("image", "inspect", jr["labelled"], check=False).returncode != 0
    r = cli("undo", "jr/t:1")
    assert r.code == 0, r
    assert "re-created from the journal" in r.err
    assert e.image_id("jr/t:1") == jr["labelled"]             # the exact config: the same id
    assert e.inspect("jr/t:1")["Config"]["Labels"] == {"extra": "yes"}
    assert e.run("jr/t:1").strip() == "1"


@engine
def test_engine_undo_after_the_tag_moved_outside_imggit(jr, cli, with_engine):
    """imggit moves a tag; a rebuild (docker build -t / docker tag) moves it again; imggit moves it
    once more. Undo must bring back the rebuild, which is what the tag named before imggit's last move."""
    e = with_engine
    e.docker("tag", jr["app1"], "jr/o:1")
    assert cli("tag", "jr/app:2", "jr/o:1").code == 0
    e.docker("tag", jr["other"], "jr/o:1")                    # outside imggit
    r = cli("tag", "jr/app:1", "jr/o:1")
    assert r.code == 0 and f"was {short(jr['other'])}" in r.err, r
    assert cli("undo", "jr/o:1").code == 0
    assert e.image_id("jr/o:1") == jr["other"]
