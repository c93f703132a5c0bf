"""The path-safety helpers of ``layers.extract`` and the fd-based writer, on synthetic layers (no store)."""

from __future__ import annotations

import io
import os
import stat

import pytest

from imggit.layers import build as b
from imggit.layers import extract as x
from imggit.layers import merge, tarfmt


# --- pure checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,path", [
    ("etc/passwd", "etc/passwd"), ("./etc/passwd", "etc/passwd"), ("etc//x/", "etc/x"), ("./", "."),
    ("a/.../b", "a/.../b"), ("..a/b..", "..a/b.."),
])
def test_check_name_accepts_relative_names(name, path):
    assert x.check_name(name) == path


@pytest.mark.parametrize("name,reason", [
    ("/etc/x", "absolute"), ("//etc/x", "absolute"), ("../x", "'..'"), ("a/../../x", "'..'"), ("a/..", "'..'"),
    ("..", "'..'"), ("a\0b", "NUL"),
])
def test_check_name_refuses_escapes(name, reason):
    with pytest.raises(x.Refused) as e:
        x.check_name(name)
    assert reason in e.value.reason


@pytest.mark.parametrize("target,reason", [
    ("/etc/shadow", "absolute"), ("../../etc/shadow", "'..'"), ("", "without a target"), ("./", "without a target"),
])
def test_check_link_target_refuses_outside(target, reason):
    with pytest.raises(x.Refused) as e:
        x.check_link_target(target)
    assert reason in e.value.reason
    assert x.check_link_target("./usr/bin/a") == "usr/bin/a"


def members(entries):
    return list(tarfmt.TarReader(io.BytesIO(b.make_layer(entries))))


def test_screen_refuses_each_bad_entry_once_and_keeps_the_rest():
    ms = members([
        b.directory("etc"), b.file("etc/ok", "1"), b.file("../x", "evil"), b.file("/etc/x", "evil"),
        b.hardlink("h1", "/etc/shadow"), b.hardlink("h2", "../../etc/shadow"), b.hardlink("h3", "etc/ok"),
        b.chardev("null", 1, 3), b.fifo("fifo"), b.symlink("a", "/"), b.file("a/x", "fine: planned inside"),
    ])
    kept, refused = x.screen(ms, devices=False)
    assert [m.path for m in kept] == ["etc", "etc/ok", "h3", "fifo", "a", "a/x"]
    assert [(r.name, r.reason.split(" (")[0]) for r in refused] == [
        ("../x", "'..' in the name"), ("/etc/x", "absolute name"), ("h1", "hardlink to an absolute path"),
        ("h2", "hardlink target climbs out with '..'"), ("null", "device node"),
    ]
    kept, refused = x.screen(ms, devices=True)
    assert "null" in [m.path for m in kept] and len(refused) == 4


def test_screen_with_seen_refuses_links_to_nothing_or_through_symlinks():
    seen: set[str] = set()
    x.screen(members([b.file("f", "1"), b.symlink("lnk", "/etc")]), devices=False, seen=seen)
    kept, refused = x.screen(members([b.hardlink("ok", "f"), b.hardlink("bad", "lnk/shadow"),
                                      b.hardlink("none", "nowhere")]), devices=False, seen=seen)
    assert [m.path for m in kept] == ["ok"]
    assert [r.name for r in refused] == ["bad", "none"] and "not a file of the layers" in refused[0].reason
    assert seen == {"f", "ok"}


def test_mtime_ns_keeps_pax_fractions():
    m = members([b.file("f", "", mtime=1700000000, pax={"mtime": "1700000000.25", "atime": "1.5"})])[0]
    assert x.mtime_ns(m) == 1700000000_250000000
    assert x.mtime_ns(m, "atime") == 1_500000000
    assert x.mtime_ns(members([b.file("g", "", mtime=5)])[0]) == 5_000000000


# --- the writer --------------------------------------------------------------------------


def write(tmp_path, layers, dest="dest", base=merge.EMPTY_BASE, **kw):
    files = []
    for i, entries in enumerate(layers):
        p = tmp_path / f"layer{i}.tar"
        p.write_bytes(b.make_layer(entries))
        files.append(str(p))
    ms = [list(tarfmt.TarReader(open(f, "rb"))) for f in files]
    plan = merge.plan_merge(ms, base)
    d = tmp_path / dest
    d.mkdir(exist_ok=True)
    return x.write_plan(plan, files, str(d), **kw), d


def test_writes_types_modes_times_and_hardlinks(tmp_path):
    stats, d = write(tmp_path, [[
        b.directory("app", 0o750, mtime=111), b.file("app/run", "#!/bin/sh\n", 0o4755, mtime=222),
        b.hardlink("app/run2", "app/run", mode=0o4755, mtime=222), b.symlink("app/cfg", "/etc/app.conf", mtime=333),
        b.fifo("app/pipe", 0o640, mtime=444), b.directory("ro", 0o555), b.file("ro/f", "x", 0o400),
        b.file("app/x", "v", xattrs={"user.imggit": "yes"}),
    ]])
    st = os.lstat(d / "app/run")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 222 and st.st_nlink == 2
    assert os.lstat(d / "app/run2").st_ino == st.st_ino
    assert os.readlink(d / "app/cfg") == "/etc/app.conf" and os.lstat(d / "app/cfg").st_mtime == 333
    assert stat.S_ISFIFO(os.lstat(d / "app/pipe").st_mode) and stat.S_IMODE(os.lstat(d / "app/pipe").st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(d / "app").st_mode) == 0o750 and os.lstat(d / "app").st_mtime == 111
    assert stat.S_IMODE(os.lstat(d / "ro").st_mode) == 0o555 and (d / "ro/f").read_bytes() == b"x"
    try:
        assert os.getxattr(d / "app/x", "user.imggit") == b"yes"
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    assert stats.counts == {"directories": 2, "files": 3, "hardlinks": 1, "symlinks": 1, "fifos": 1}
    assert stats.bytes == len("#!/bin/sh\n") + 2 and not stats.refused


def test_owners_restored_as_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _, d = write(tmp_path, [[b.file("f", "x", 0o2755, uid=1234, gid=5678), b.symlink("s", "f", uid=7, gid=8),
                             b.directory("d", uid=42, gid=43)]])
    assert (os.lstat(d / "f").st_uid, os.lstat(d / "f").st_gid) == (1234, 5678)
    assert stat.S_IMODE(os.lstat(d / "f").st_mode) == 0o2755          # chown before chmod keeps setgid
    assert (os.lstat(d / "s").st_uid, os.lstat(d / "d").st_gid) == (7, 43)


def test_not_root_reports_owners_not_restored(tmp_path):
    stats, d = write(tmp_path, [[b.file("f", "x", uid=os.geteuid() + 1)]], root=False)
    assert stats.not_restored["owner"] == 1 and (d / "f").read_bytes() == b"x"


def test_symlinked_parent_in_the_target_is_refused_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "dest"
    d.mkdir()
    os.symlink(str(outside), d / "lnk")            # e.g. left by an earlier extraction into the same place
    os.symlink("lnk", d / "lnk2")
    (d / "file").write_text("not a dir")
    stats, _ = write(tmp_path, [[b.file("lnk/x", "evil"), b.file("lnk2/deep/y", "evil"), b.file("file/z", "evil"),
                                 b.hardlink("h", "lnk/secret")]], base=merge.BaseView(None))
    assert list(outside.iterdir()) == []
    reasons = {r.name: r.reason for r in stats.refused}
    assert reasons["lnk/x"] == "its parent /lnk is a symlink"
    assert reasons["lnk2/deep/y"] == "its parent /lnk2 is a symlink"
    assert reasons["file/z"] == "its parent /file is not a directory"
    assert reasons["h"] == "hardlink target /lnk/secret: its parent /lnk is a symlink"


def test_an_existing_symlink_at_a_name_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("keep")
    d = tmp_path / "dest"
    d.mkdir()
    os.symlink(str(outside), d / "f")
    os.symlink(str(tmp_path), d / "dir")
    stats, _ = write(tmp_path, [[b.file("f", "new"), b.directory("dir"), b.file("dir/secret", "new")]])
    assert outside.read_text() == "keep"
    assert not os.path.islink(d / "f") and (d / "f").read_text() == "new"
    assert not os.path.islink(d / "dir") and (d / "dir/secret").read_text() == "new"


def test_hardlink_to_a_missing_target_is_refused_by_the_writer(tmp_path):
    stats, d = write(tmp_path, [[b.directory("dir"), b.hardlink("h1", "nowhere")]], base=merge.BaseView(None))
    assert [(r.name, r.reason) for r in stats.refused] == [("h1", "hardlink target /nowhere does not exist")]
    assert sorted(os.listdir(d)) == ["dir"]


def test_hardlink_to_a_directory_or_symlink_of_the_layer_is_refused_by_screen():
    kept, refused = x.screen(members([b.directory("dir"), b.symlink("s", "/etc/shadow"), b.hardlink("h2", "dir"),
                                      b.hardlink("h3", "s"), b.hardlink("h4", "h4")]), devices=False)
    assert [(r.name, r.reason) for r in refused] == [("h2", "hardlink to a directory (/dir)"),
                                                     ("h3", "hardlink to a symlink (/s)"), ("h4", "hardlink to itself")]


def test_whiteouts_are_listed_not_created_for_a_single_layer(tmp_path):
    stats, d = write(tmp_path, [[b.directory("etc"), b.whiteout("etc/old"), b.directory("cache"), b.opaque("cache"),
                                 b.file("cache/new", "n"), b.whiteout("gone")]], base=merge.BaseView(None))
    assert sorted(stats.whiteouts) == [("deleted", "/etc/old"), ("deleted", "/gone"), ("opaque", "/cache/")]
    names = [os.path.join(r, f) for r, ds, fs in os.walk(d) for f in ds + fs]
    assert not any(".wh." in n for n in names)


def test_devices_need_root_even_when_planned(tmp_path):
    stats, d = write(tmp_path, [[b.chardev("null", 1, 3)]], root=False)
    assert [r.reason for r in stats.refused] == ["device nodes need root"] and os.listdir(d) == []
