"""``imggit extract`` on OCI layouts: malicious layers write nothing outside DEST, one layer vs merged, bad input."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest

from imggit.layers import build as b
from imggit.session import Session
from oneline import one_line

ROOT = os.geteuid() == 0


def snapshot(top, skip):
    """Every path under ``top`` (lstat: type, mode, size, mtime), except the ``skip`` subtrees."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink)
    return out


def warnings(err):
    return [line[len("warning: refused "):] for line in err.splitlines() if line.startswith("warning: refused ")]


@pytest.fixture
def evil(tmp_path, home):
    """An image whose top layer tries every way out of the target directory."""
    tag = uuid.uuid4().hex[:10]
    box = tmp_path / "box"
    box.mkdir()
    (box / "dest").mkdir()
    names = {"abs_etc": f"/etc/imggit-evil-{tag}", "abs_tmp": f"/tmp/imggit-evil-{tag}",
             "via_root": f"tmp/imggit-evil-via-root-{tag}"}
    lower = b.make_layer([b.directory("etc"), b.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                          b.directory("data"), b.file("data/keep", "keep")])
    top = b.make_layer([
        b.file("../x", "evil"),                                   # climbs out of DEST
        b.file("../../x", "evil"),
        b.file(names["abs_etc"], "evil"),                          # absolute names
        b.file(names["abs_tmp"], "evil"),
        b.symlink("a", "/"),                                       # a symlink to / ...
        b.file(f"a/{names['via_root']}", "inside"),                # ... then a name through it
        b.symlink("out", str(box)),                                # a symlink to a real directory outside
        b.file("out/escaped", "inside"),
        b.hardlink("h1", "/etc/shadow"),                           # hardlinks out
        b.hardlink("h2", "../../../etc/passwd"),
        b.hardlink("h3", "out/escaped-target"),                    # a link through a symlink
        b.chardev("mem", 1, 1),                                    # a device node (no --devices)
        b.whiteout("data/keep"),
        b.file("ok", "fine"),
    ])
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "evil", [b.StepSpec("ADD lower", lower), b.StepSpec("ADD evil", top),
                               b.StepSpec("CMD [\"sh\"]")])
    shadow = os.lstat("/etc/shadow").st_nlink if os.path.exists("/etc/shadow") else None
    before = snapshot(str(tmp_path), {str(tmp_path / "box" / "dest"), str(home)})
    yield {"layout": tmp_path / "l", "box": box, "dest": box / "dest", "names": names}
    after = snapshot(str(tmp_path), {str(tmp_path / "box" / "dest"), str(home)})
    assert before == after, sorted(set(after) ^ set(before))        # nothing appeared or changed outside DEST
    for n in ("abs_etc", "abs_tmp"):
        assert not os.path.lexists(names[n])
    assert not os.path.lexists(f"/{names['via_root']}")
    if shadow is not None:
        assert os.lstat("/etc/shadow").st_nlink == shadow


EXPECTED_REFUSED = {
    "../x": "'..' in the name", "../../x": "'..' in the name",
    "h1": "hardlink to an absolute path (/etc/shadow)",
    "h2": "hardlink target climbs out with '..' (../../../etc/passwd)",
    "mem": "device node (use --devices, as root): char 1:1",
}


def test_malicious_layer_merged_writes_nothing_outside(cli, evil):
    dest = evil["dest"]
    r = cli("extract", f"oci:{evil['layout']}:evil", str(dest))
    assert r.code == 0, r
    got = dict(w.split(": ", 1) for w in warnings(r.err))
    want = dict(EXPECTED_REFUSED)
    want[evil["names"]["abs_etc"]] = want[evil["names"]["abs_tmp"]] = "absolute name"
    want["h3"] = "hardlink target /out/escaped-target is not a file of the layers"
    assert got == want
    assert r.err.splitlines()[-1] == f"warning: {len(want)} entries refused (listed above); nothing was written " \
                                     "outside the target"
    assert r.out == ""
    # what a container of the image sees: names through a symlink land where the symlink points *inside* it
    assert (dest / evil["names"]["via_root"]).read_text() == "inside"
    assert (dest / str(evil["box"]).lstrip("/") / "escaped").read_text() == "inside"
    assert os.readlink(dest / "a") == "/" and os.readlink(dest / "out") == str(evil["box"])
    assert (dest / "ok").read_text() == "fine" and (dest / "etc/passwd").exists()
    assert not (dest / "data/keep").exists() and (dest / "data").is_dir()          # the whiteout applied
    assert not any(".wh." in n for _, ds, fs in os.walk(dest) for n in ds + fs)


def test_malicious_layer_alone_writes_nothing_outside(cli, evil):
    dest = evil["dest"]
    r = cli("extract", "--layer-only", f"oci:{evil['layout']}:evil", str(dest))
    assert r.code == 0, r
    got = dict(w.split(": ", 1) for w in warnings(r.err))
    want = dict(EXPECTED_REFUSED)
    want[evil["names"]["abs_etc"]] = want[evil["names"]["abs_tmp"]] = "absolute name"
    # the layer's own symlink is followed inside DEST (as the engine does), where the target is missing
    want["h3"] = f"hardlink target {evil['box']}/escaped-target does not exist"
    assert got == want
    assert r.out.splitlines() == ["deleted  /data/keep"]          # listed, not created
    assert not (dest / "data").exists()                            # the lower layer is not there
    assert (dest / "ok").read_text() == "fine"


def test_layer_by_layer_into_one_directory_never_follows_a_symlink_out(cli, home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "app", [
        b.StepSpec("ADD lnk", b.make_layer([b.symlink("lnk", str(outside)), b.file("secret", "s")])),
        b.StepSpec("ADD more", b.make_layer([b.file("lnk/y", "evil"), b.hardlink("lnk/z", "secret"),
                                             b.hardlink("h", "lnk/w")])),
    ])
    dest = tmp_path / "dest"
    assert cli("extract", "--layer", "~1", f"oci:{tmp_path / 'l'}:app", str(dest)).code == 0
    r = cli("extract", "--layer-only", "--force", f"oci:{tmp_path / 'l'}:app", str(dest))
    assert r.code == 0, r
    assert sorted(warnings(r.err)) == ["h: hardlink target /lnk/w: its parent /lnk is a symlink",
                                       "lnk/y: its parent /lnk is a symlink",
                                       "lnk/z: its parent /lnk is a symlink"]
    assert list(outside.iterdir()) == []


def test_devices_only_with_the_flag_as_root(cli, home, tmp_path):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "dev", [b.StepSpec("ADD", b.make_layer([b.chardev("null", 1, 3, mode=0o666)]))])
    r = cli("extract", f"oci:{tmp_path / 'l'}:dev", str(tmp_path / "a"))
    assert r.code == 0 and warnings(r.err) == ["null: device node (use --devices, as root): char 1:3"], r
    r = cli("extract", "--devices", f"oci:{tmp_path / 'l'}:dev", str(tmp_path / "b"))
    assert r.code == 0, r
    if ROOT:
        s = os.lstat(tmp_path / "b" / "null")
        assert stat.S_ISCHR(s.st_mode) and os.major(s.st_rdev) == 1 and os.minor(s.st_rdev) == 3
        assert stat.S_IMODE(s.st_mode) == 0o666
    else:
        assert warnings(r.err) == ["null: device node (needs root): char 1:3"]


@pytest.fixture
def app(tmp_path, home):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "app", [
        b.StepSpec("ADD base", b.make_layer([b.directory("etc"), b.file("etc/a", "1", 0o600, mtime=1000),
                                             b.directory("cache"), b.file("cache/old", "o")])),
        b.StepSpec("ENV A=1"),
        b.StepSpec("RUN change", b.make_layer([b.directory("etc"), b.whiteout("etc/a"), b.file("etc/b", "2"),
                                               b.directory("cache"), b.opaque("cache"), b.file("cache/new", "n")])),
        b.StepSpec("CMD [\"sh\"]"),
    ])
    return f"oci:{tmp_path / 'l'}:app"


def tree(d):
    return sorted(os.path.relpath(os.path.join(r, n), d) for r, ds, fs in os.walk(d) for n in ds + fs)


def test_merged_single_layer_and_past_steps(cli, app, tmp_path):
    r = cli("extract", app, str(tmp_path / "m"))
    assert r.code == 0 and r.out == "", r
    assert tree(tmp_path / "m") == ["cache", "cache/new", "etc", "etc/b"]
    assert r.err == f"extracted {app} (2 layers merged) into {tmp_path / 'm'}: 2 files, 2 directories, 2 B\n"
    r = cli("extract", "--layer-only", app, str(tmp_path / "top"))
    assert r.code == 0, r
    assert r.out.splitlines() == ["opaque   /cache/", "deleted  /etc/a"]
    assert tree(tmp_path / "top") == ["cache", "cache/new", "etc", "etc/b"]
    assert r.err == f"extracted layer 2/2 of {app} (step 3: RUN change) into {tmp_path / 'top'}: 2 files, " \
                    "2 directories, 2 B; 2 whiteouts listed, not applied\n"
    r = cli("extract", "--layer", "~1", app, str(tmp_path / "low"))
    assert r.code == 0 and r.out == "", r
    assert tree(tmp_path / "low") == ["cache", "cache/old", "etc", "etc/a"]
    s = os.lstat(tmp_path / "low" / "etc/a")
    assert stat.S_IMODE(s.st_mode) == 0o600 and s.st_mtime == 1000
    # a revision: app~2 is the first two steps, one layer
    r = cli("extract", app + "~2", str(tmp_path / "past"))
    assert r.code == 0, r
    assert tree(tmp_path / "past") == tree(tmp_path / "low")
    # --layer counts layers, not steps: ~1 of app~1 (three steps, two layers) is the first layer
    r = cli("extract", "--layer", "1", app + "~1", str(tmp_path / "past2"))
    assert r.code == 0 and tree(tmp_path / "past2") == tree(tmp_path / "low"), r


def test_json_summary(cli, app, tmp_path):
    r = cli("extract", "--json", "--layer-only", app, str(tmp_path / "j"))
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["mode"] == "layer" and [x["index"] for x in data["layers"]] == [1]
    assert data["entries"] == {"directories": 2, "files": 2}
    assert data["whiteouts"] == [{"kind": "opaque", "path": "/cache/"}, {"kind": "deleted", "path": "/etc/a"}]
    assert data["refused"] == [] and data["bytes"] == 2


def test_dest_must_be_empty_unless_force(cli, app, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "mine").write_text("keep")
    one_line(cli("extract", app, str(d)), 2, "is not empty", "--force")
    assert cli("extract", "--force", app, str(d)).code == 0
    assert (d / "mine").read_text() == "keep" and (d / "etc/b").exists()
    (tmp_path / "file").write_text("")
    one_line(cli("extract", app, str(tmp_path / "file")), 2, "is not a directory")


@pytest.mark.parametrize("args,code,needles", [
    (["--layer", "~2"], 2, ["goes past the first layer", "~0 to ~1"]),
    (["--layer", "x"], 2, ["--layer takes ~N"]),
    (["--layer", "/root"], 2, ["--layer takes ~N", "quote it"]),
    (["--layer", "~0", "--layer-only"], 2, ["not both"]),
])
def test_bad_layer_arguments_are_one_line(cli, app, tmp_path, args, code, needles):
    one_line(cli("extract", *args, app, str(tmp_path / "o")), code, *needles)
    assert not (tmp_path / "o").exists()


def test_unknown_image_is_one_line(cli, app, tmp_path):
    one_line(cli("extract", app + "nope", str(tmp_path / "o")), 2, "no image")


def test_a_layer_that_cannot_be_applied_is_one_line_and_leaves_no_directory(cli, home, tmp_path):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "bad", [b.StepSpec("ADD", b.make_layer([b.file("f", "1")])),
                              b.StepSpec("RUN", b.make_layer([b.whiteout("f"), b.hardlink("h", "f")]))])
    one_line(cli("extract", f"oci:{tmp_path / 'l'}:bad", str(tmp_path / "o")), 3, "hardlink 'h' names 'f'")
    assert not (tmp_path / "o").exists()
