"""The engine as the judge of inspection and surgery: exported filesystems, saved layers, step images.

Shared by ``test_inspect_engine.py`` and ``test_surgery_engine.py``. Everything
here asks the engine (``docker export``, ``docker save``, ``docker history``)
or reads plain tar bytes; nothing here uses imggit's own layer code except the
tar header reader.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any

from fsutil import IGNORE, _ignored, listing_from_tar, tar_members
from rig import write_context

from imggit.layers import build as b
from imggit.layers import tarfmt
from imggit.session import Session

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FIXED_MTIME = 1_600_000_000


class Docker:
    """``docker`` against the session engine with the environment fixed when made (module fixtures
    outlive the tests' monkeypatched environments)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.env = engine.env()

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run(["docker", *args], check=False, capture_output=True, env=self.env, input=input,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(a[:80] for a in args)} failed: "
                               f"{p.stderr.decode(errors='replace')[-2000:]}")
        return p

    def build(self, tag: str, dockerfile: str, files: dict[str, bytes | str] | None = None,
              mtime: int = FIXED_MTIME) -> str:
        """A classic build; the context's files get a fixed mtime (COPY keeps it), so two builds of
        the same files give the same exported filesystem."""
        with tempfile.TemporaryDirectory() as d:
            write_context(d, dockerfile, files, mtime)
            self("build", "-q", "-t", tag, d)
        return self.image_id(tag)

    def image_id(self, ref: str) -> str:
        return self("image", "inspect", "-f", "{{.Id}}", ref).stdout.decode().strip()

    def exists(self, ref: str) -> bool:
        return self("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def diff_ids(self, ref: str) -> list[str]:
        return list(self.inspect(ref)["RootFS"]["Layers"])

    def history(self, ref: str) -> list[dict[str, Any]]:
        """``docker history``, oldest first (Id is None for ``<missing>``)."""
        out = self("history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref).stdout.decode()
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        for r in rows:
            r["Id"] = r["ID"] if r["ID"].startswith("sha256:") else None
        return list(reversed(rows))

    def created_by(self, ref: str) -> list[str]:
        return [r["CreatedBy"] for r in self.history(ref)]

    def run(self, image: str, *cmd: str) -> str:
        return self("run", "--rm", "--network", "none", image, *cmd).stdout.decode()

    def export(self, image: str) -> bytes:
        cid = self("create", image, "/bin/true").stdout.decode().strip()
        try:
            return self("export", cid).stdout
        finally:
            self("rm", "-v", cid, check=False)

    def fs(self, image: str) -> Fs:
        return Fs.of_tar(self.export(image))

    def image_ids(self) -> set[str]:
        return set(self("images", "-a", "-q", "--no-trunc").stdout.decode().split())

    def layer_tars(self, image: str) -> list[bytes]:
        """The uncompressed layer tars of ``docker save``, in diff id order."""
        raw = self("save", image).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
            out = []
            for name in manifest[0]["Layers"]:
                f = t.extractfile(name)
                assert f is not None, name
                out.append(f.read())
        return out

    def load_synthetic(self, tag: str, steps: list[b.StepSpec], runtime: dict[str, Any] | None = None) -> str:
        """Write exact layer tars as a docker-archive (imggit's writer) and ``docker load`` it."""
        with tempfile.TemporaryDirectory() as d:
            archive = os.path.join(d, "img.tar")
            st = Session().store("docker-archive", archive, for_write=True)
            b.write_image(st, tag, steps, runtime or {"Env": [PATH_ENV], "Cmd": ["/bin/sh"]}, family="docker")
            self("load", "-i", archive)
        return self.image_id(tag)

    def busybox_layer(self) -> bytes:
        layers = self.layer_tars("busybox:base")
        assert len(layers) == 1
        return layers[0]


@dataclass
class Fs:
    """An exported filesystem: fsutil's listing plus the size of every file (hardlinks: their target's)."""

    listing: dict[str, tuple]
    sizes: dict[str, int]

    @classmethod
    def of_tar(cls, data: bytes) -> Fs:
        sizes: dict[str, int] = {}
        for m in tar_members(data):
            if m.is_file:
                sizes[m.path] = m.size
            elif m.is_link:
                sizes[m.path] = sizes.get(tarfmt.normalize(m.linkname), 0)
        return cls(listing_from_tar(data), sizes)

    def kind(self, p: str) -> str | None:
        e = self.listing.get(p)
        return e[0] if e is not None else None

    def without(self, match) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
        return {p: v for p, v in self.listing.items() if not match(p)}


EMPTY = Fs({}, {})


def changes(a: Fs, b_: Fs, *, dirs: bool = True, file_to_dir: bool = True) -> dict[str, str]:
    """What changes from filesystem ``a`` to ``b_``, judged from the export listings: path -> A/D/M/T.

    ``dirs=False`` leaves out paths that are directories on both sides (a directory's mtime is not
    compared anyway); ``file_to_dir=False`` leaves out a non-directory that became a directory.
    """
    out = {}
    for p in set(a.listing) | set(b_.listing):
        x, y = a.listing.get(p), b_.listing.get(p)
        if x == y:
            continue
        kinds = {e[0] for e in (x, y) if e is not None}
        if not dirs and kinds == {"directory"}:
            continue
        if not file_to_dir and x is not None and y is not None and x[0] != "directory" and y[0] == "directory":
            continue
        if x is None:
            out[p] = "A"
        elif y is None:
            out[p] = "D"
        elif x[0] != y[0]:
            out[p] = "T"
        else:
            out[p] = "M"
    return out


def file_bytes(layer_tar: bytes) -> int:
    """Bytes of file content a layer tar carries (regular files; whiteouts and markers are empty)."""
    return sum(m.size for m in tar_members(layer_tar) if m.is_file)


def ignored(path: str) -> bool:
    return _ignored(path.strip("/"), IGNORE)


def step_fs(docker: Docker, ref: str, cache: dict[str, Fs]) -> list[Fs | None]:
    """The exported filesystem of every step of ``ref`` (the classic builder keeps an image per step),
    oldest first; None where the engine has no image for the step."""
    out: list[Fs | None] = []
    for row in docker.history(ref):
        i = row["Id"]
        if i is None:
            out.append(None)
            continue
        if i not in cache:
            cache[i] = docker.fs(i)
        out.append(cache[i])
    return out
