"""Layer tars put back together from tar-split metadata and a layer directory (stores/tarsplit.py)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os

import pytest

from imggit.layers import build as b
from imggit.layers import tarfmt
from imggit.stores import tarsplit


def _tar_split(data: bytes) -> list[dict]:
    """What the engine records for a layer: raw segments between the file contents, and the files."""
    out, pos = [], 0
    for m in tarfmt.TarReader(io.BytesIO(data)):
        out.append({"type": 2, "payload": base64.b64encode(data[pos:m.data_offset]).decode()})
        name = m.name.encode("utf-8", "surrogateescape")
        try:
            entry = {"type": 1, "name": name.decode("utf-8"), "size": m.size}
        except UnicodeDecodeError:
            entry = {"type": 1, "name_raw": base64.b64encode(name).decode(), "size": m.size}
        out.append(entry)
        pos = m.data_offset + m.size
    out.append({"type": 2, "payload": base64.b64encode(data[pos:]).decode()})
    return out


def _layout(tmp_path, entries: list, files: dict[str, bytes], driver: str = "vfs") -> tuple[str, str]:
    root = tmp_path / "root"
    ldb = root / "image" / driver / "layerdb" / "sha256" / ("c" * 64)
    ldb.mkdir(parents=True)
    (ldb / "cache-id").write_text("abc123")
    with gzip.open(ldb / "tar-split.json.gz", "wb") as f:
        for e in entries:
            f.write(json.dumps(e).encode() + b"\n")
    top = tarsplit.layer_dir(str(root), driver, "abc123")
    for name, content in files.items():
        p = os.path.join(top.encode(), name.encode("utf-8", "surrogateescape"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)
    os.makedirs(top, exist_ok=True)
    return str(root), str(ldb)


LONG = "d/" + "x" * 120 + "/" + "y" * 150
ODD = "caf\udce9.txt"      # a Latin-1 name: not UTF-8


@pytest.mark.parametrize("driver", ["vfs", "overlay2"])
def test_reassembles_the_exact_bytes(tmp_path, driver):
    files = {"etc/passwd": b"root:x:0:0\n", LONG: b"long " * 300, ODD: b"odd", "big": os.urandom(3 << 20)}
    data = b.make_layer([b.directory("etc"), b.file("etc/passwd", files["etc/passwd"]),
                         b.hardlink("etc/passwd2", "etc/passwd"), b.file(LONG, files[LONG]),
                         b.file(ODD, files[ODD]), b.file("empty"), b.symlink("s", "/etc"),
                         b.whiteout("gone"), b.file("big", files["big"], xattrs={"user.k": "v"})])
    root, ldb = _layout(tmp_path, _tar_split(data), files, driver)
    got = b"".join(tarsplit.chunks(root, driver, ldb))
    assert got == data
    s = tarsplit.TarSplitStream(tarsplit.chunks(root, driver, ldb))
    assert s.read(7) + s.read(1 << 20) + s.read() == data and s.read(10) == b""


def test_what_cannot_be_read_is_unavailable(tmp_path):
    data = b.make_layer([b.file("a", b"12345")])
    root, ldb = _layout(tmp_path, _tar_split(data), {})             # the file's content is missing
    with pytest.raises(tarsplit.Unavailable, match="No such file"):
        b"".join(tarsplit.chunks(root, "vfs", ldb))
    root2, ldb2 = _layout(tmp_path / "2", _tar_split(data), {"a": b"123"})   # shorter than recorded
    with pytest.raises(tarsplit.Unavailable, match="shorter"):
        b"".join(tarsplit.chunks(root2, "vfs", ldb2))
    with pytest.raises(tarsplit.Unavailable, match="btrfs"):
        b"".join(tarsplit.chunks(root2, "btrfs", ldb2))
    with pytest.raises(tarsplit.Unavailable, match="no tar-split"):
        b"".join(tarsplit.chunks(root2, "vfs", str(tmp_path / "nowhere")))


def test_names_never_leave_the_layer_directory(tmp_path):
    secret = tmp_path / "root" / "vfs" / "dir" / "secret"
    entries = [{"type": 1, "name": "../secret", "size": 3}]
    root, ldb = _layout(tmp_path, entries, {"secret": b"in!"})
    secret.write_bytes(b"out")
    assert b"".join(tarsplit.chunks(root, "vfs", ldb)) == b"in!"
