import io
import tarfile

import pytest

from imggit.errors import FormatError
from imggit.layers import build as b
from imggit.layers import tarfmt


def read_all(data: bytes):
    return list(tarfmt.TarReader(io.BytesIO(data)))


def test_roundtrip_against_python_tarfile():
    long_dir = "d" * 120
    entries = [
        b.directory("a"),
        b.file("a/f", b"hello", 0o4755, uid=1000, gid=2000, mtime=1234567890),
        b.file(f"{long_dir}/{'x' * 150}", b"long"),           # > 255 bytes: pax path
        b.file("a/" + "y" * 99, b"ustar-split"),             # fits with a prefix
        b.file("ünïcødé/файл", b"utf8"),
        b.symlink("a/link", "../" + "t" * 120),               # long link target: pax linkpath
        b.hardlink("a/hard", "a/f"),
        b.fifo("a/fifo"),
        b.chardev("a/null", 1, 3),
        b.file("a/xattr", b"x", xattrs={"user.k": "v", "security.capability": "\x01\x02"}),
        b.file("big-uid", b"", uid=3_000_000, gid=4_000_000),
        b.directory("sticky", 0o1777),
    ]
    data = b.make_layer(entries)
    ours = read_all(data)
    theirs = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    assert [m.path for m in ours] == [tarfmt.normalize(t.name) for t in theirs]
    byname = {m.path: m for m in ours}
    f = byname["a/f"]
    assert (f.mode, f.uid, f.gid, f.mtime, f.size) == (0o4755, 1000, 2000, 1234567890, 5)
    assert byname[f"{long_dir}/{'x' * 150}"].size == 4
    assert byname["a/link"].linkname == "../" + "t" * 120
    assert byname["a/hard"].type == tarfmt.HARDLINK and byname["a/hard"].linkname == "a/f"
    assert byname["a/null"].devmajor == 1 and byname["a/null"].devminor == 3
    assert byname["a/xattr"].xattrs == {"user.k": "v", "security.capability": "\x01\x02"}
    assert byname["big-uid"].uid == 3_000_000 and byname["big-uid"].gid == 4_000_000
    assert byname["sticky"].mode == 0o1777 and byname["sticky"].is_dir
    assert "ünïcødé/файл" in byname
    t = {x.name: x for x in theirs}
    assert t["a/xattr"].pax_headers["SCHILY.xattr.user.k"] == "v"


def test_reads_gnu_longnames_and_data_offsets():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, content in (("n" * 300, b"abc"), ("short", b"12345")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    ms = read_all(data)
    assert [m.path for m in ms] == ["n" * 300, "short"]
    for m, content in zip(ms, (b"abc", b"12345")):
        assert data[m.data_offset:m.data_offset + m.size] == content
    # the header bytes of the first member include the GNU long-name block
    assert ms[0].header_offset == 0 and ms[0].data_offset >= 3 * 512


def test_read_data_and_skip():
    data = b.make_layer([b.file("a", b"A" * 1000), b.file("b", b"B" * 10)])
    r = tarfmt.TarReader(io.BytesIO(data))
    r.next()
    assert r.read_data(10) == b"A" * 10          # partial read, rest skipped on next()
    m2 = r.next()
    assert m2.path == "b" and r.read_data() == b"B" * 10
    assert r.next() is None


def test_seekable_scan_reads_headers_only():
    data = b.make_layer([b.file("a", b"A" * 100000), b.file("b", b"x")])

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n=-1):
            out = super().read(n)
            Counting.read_bytes += len(out)
            return out

    ms = tarfmt.scan(Counting(data))
    assert [m.path for m in ms] == ["a", "b"]
    assert Counting.read_bytes < 4096


@pytest.mark.parametrize("data,msg", [
    (b"", "empty"),
    (b"x" * 512, "checksum"),
    (b"not a tar at all" * 10, "truncated"),
])
def test_bad_input(data, msg):
    with pytest.raises(FormatError, match=msg):
        read_all(data)


def test_truncated_member_data():
    data = b.make_layer([b.file("a", b"A" * 5000)])[:1024]
    r = tarfmt.TarReader(io.BytesIO(data))
    r.next()
    with pytest.raises(FormatError, match="end of data"):
        r.next()


def test_normalize_and_whiteout_names():
    assert tarfmt.normalize("./a//b/") == "a/b"
    assert tarfmt.normalize("/") == "."
    m = read_all(b.make_layer([b.whiteout("d/x"), b.opaque("d"), b.file("d/foo.wh.bar"), b.file(".wh-x"),
                               b.file(".wh..wh.plnk/1")]))
    kinds = [(x.path, x.is_whiteout, x.is_opaque, x.is_meta) for x in m]
    assert kinds == [
        ("d/.wh.x", True, False, False),
        ("d/.wh..wh..opq", False, True, False),
        ("d/foo.wh.bar", False, False, False),
        (".wh-x", False, False, False),
        (".wh..wh.plnk/1", False, False, False),
    ]
    assert m[0].whiteout_target == "d/x"


def test_member_header_rewrite_keeps_pax_records():
    data = b.make_layer([b.file("a", b"hi", xattrs={"user.a": "1"}, pax={"mtime": "1700000000.123456"})])
    (m,) = read_all(data)
    assert m.mtime_exact == "1700000000.123456"
    rewritten = tarfmt.member_header(m, name="renamed/" + "z" * 200) + b"hi" + tarfmt.padding(2) + tarfmt.END_OF_ARCHIVE
    (m2,) = read_all(rewritten)
    assert m2.path == "renamed/" + "z" * 200
    assert m2.xattrs == {"user.a": "1"} and m2.mtime_exact == "1700000000.123456"


def test_global_pax_header_applies_and_disables_raw_copy():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global"}) as tf:
        info = tarfile.TarInfo("f")
        tf.addfile(info, io.BytesIO(b""))
    (m,) = read_all(buf.getvalue())
    assert m.pax.get("comment") == "global" and not m.raw_ok
