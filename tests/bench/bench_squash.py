"""squash of a ~1.4 GB application image, against docker-squash and against the floor.

Generates, in a private engine, an image like a real application's: a
Debian-like base (~12,000 files) and 11 layers above it: 30,000 small files,
several 100-200 MB random files, a large file overwritten later, a layer
that deletes thousands of files, a `chown -R` layer. Then, in one run:

(a) engine -> engine, everything above the base and the last 3 layers:
    imggit vs docker-squash (PyPI) vs the floor (docker save of the image +
    docker load of an archive holding only the new layer);
(b) OCI layout -> OCI layout (gzip layers), everything above the base:
    imggit vs reading the same layers and gzipping the merged layer once with
    the fastest gzip available (ISA-L, all cores).

Prints every time, ratio and peak RSS. Usage: python tests/bench/bench_squash.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from common import BIN, PY, report, rig, run

from imggit.layers import tarfmt
from imggit.model import Layer, chain_ids, DOCKER_LAYER
from imggit.stores.archive import DockerArchive
from imggit.stores.base import LayerInput, WriteRequest

MB = 1 << 20


class LayerFile:
    """Streams one layer tar to disk, hashing it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.f = open(path, "wb")
        self.h = hashlib.sha256()
        self.size = 0

    def _w(self, b: bytes) -> None:
        self.f.write(b)
        self.h.update(b)
        self.size += len(b)

    def add(self, name: str, data: bytes = b"", type: str = tarfmt.REGULAR, mode: int = 0o644, uid: int = 0,
            gid: int = 0, mtime: int = 1700000000, linkname: str = "") -> None:
        if type == tarfmt.DIRECTORY and not name.endswith("/"):
            name += "/"
        self._w(tarfmt.encode_header(name, type, mode=mode, uid=uid, gid=gid, size=len(data), mtime=mtime,
                                     linkname=linkname))
        if data:
            self._w(data)
            self._w(tarfmt.padding(len(data)))

    def add_big(self, name: str, size: int, seed: int) -> None:
        """A file of random (incompressible) content, generated in 4 MB chunks."""
        self._w(tarfmt.encode_header(name, tarfmt.REGULAR, mode=0o644, size=size, mtime=1700000000))
        rnd = random.Random(seed)
        left = size
        while left:
            n = min(left, 4 * MB)
            self._w(rnd.randbytes(n))
            left -= n
        self._w(tarfmt.padding(size))

    def close(self) -> tuple[str, int]:
        self._w(tarfmt.END_OF_ARCHIVE)
        self.f.close()
        return "sha256:" + self.h.hexdigest(), self.size


def text_blob(rng: random.Random, n: int) -> bytes:
    words = [b"lib", b"usr", b"share", b"config", b"value", b"debian", b"package", b"version", b"\n", b"=", b" "]
    return b"".join(rng.choice(words) for _ in range(n // 5))[:n]


def generate(workdir: str, scale: float) -> list[tuple[str, str, str, int]]:
    """The layers of the bench image: (created_by, path, diff_id, size), base first."""
    rng = random.Random(42)
    layers = []

    def layer(cmd: str, fill) -> None:
        lf = LayerFile(os.path.join(workdir, f"layer{len(layers)}.tar"))
        fill(lf)
        d, size = lf.close()
        layers.append((cmd, lf.path, d, size))

    n = lambda x: max(1, int(x * scale))  # noqa: E731

    def base(lf: LayerFile) -> None:
        for d in ("bin", "etc", "lib", "usr", "usr/bin", "usr/lib", "usr/share", "usr/share/doc", "var",
                  "var/lib", "var/lib/dpkg", "tmp"):
            lf.add(d, type=tarfmt.DIRECTORY, mode=0o1777 if d == "tmp" else 0o755)
        for i in range(n(12000)):
            sub = ("usr/lib", "usr/share/doc", "usr/bin", "etc")[i % 4]
            lf.add(f"{sub}/pkg{i // 40}-file{i}", text_blob(rng, rng.randint(200, 20000)),
                   mode=0o755 if sub == "usr/bin" else 0o644)
        lf.add("var/lib/dpkg/status", text_blob(rng, 400000))

    def small_files(lf: LayerFile) -> None:
        lf.add("app", type=tarfmt.DIRECTORY)
        for i in range(n(30000)):
            if i % 1000 == 0:
                lf.add(f"app/mod{i // 1000}", type=tarfmt.DIRECTORY)
            lf.add(f"app/mod{i // 1000}/f{i}.py", text_blob(rng, rng.randint(500, 7000)))

    def big(name: str, mb: int, seed: int):
        def fill(lf: LayerFile) -> None:
            lf.add("opt", type=tarfmt.DIRECTORY)
            lf.add("opt/data", type=tarfmt.DIRECTORY)
            lf.add_big(name, n(mb) * MB, seed)
        return fill

    def deletes(lf: LayerFile) -> None:
        lf.add("app", type=tarfmt.DIRECTORY)
        for i in range(0, n(30000), 6):
            if i % 1000 == 0:
                lf.add(f"app/mod{i // 1000}", type=tarfmt.DIRECTORY)
            lf.add(f"app/mod{i // 1000}/.wh.f{i}.py")
        lf.add("usr", type=tarfmt.DIRECTORY)
        lf.add("usr/share", type=tarfmt.DIRECTORY)
        lf.add("usr/share/.wh.doc")

    def chown(lf: LayerFile) -> None:
        rng2 = random.Random(7)
        lf.add("app", type=tarfmt.DIRECTORY, uid=1000, gid=1000)
        for i in range(n(30000)):
            if i % 1000 == 0:
                lf.add(f"app/mod{i // 1000}", type=tarfmt.DIRECTORY, uid=1000, gid=1000)
            if i % 6 == 0:
                continue
            # same content as the small-files layer (regenerated the same way), new owner
            lf.add(f"app/mod{i // 1000}/f{i}.py", text_blob(rng2, rng2.randint(500, 7000)), uid=1000, gid=1000)

    def config(lf: LayerFile) -> None:
        lf.add("etc", type=tarfmt.DIRECTORY)
        for i in range(50):
            lf.add(f"etc/app{i}.conf", text_blob(rng, 2000))

    layer("ADD debian-like-rootfs /", base)
    layer("COPY app/ /app/", small_files)
    layer("RUN fetch blob1", big("opt/data/blob1", 200, 1))
    layer("RUN fetch blob2", big("opt/data/blob2", 150, 2))
    layer("RUN fetch big", big("opt/big", 150, 3))
    layer("RUN rebuild big", big("opt/big", 150, 4))
    layer("RUN rm -rf app/*/f*[06].py /usr/share/doc", deletes)
    layer("RUN chown -R app /app", chown)
    layer("RUN fetch blob3", big("opt/data/blob3", 150, 5))
    layer("COPY etc/ /etc/", config)
    layer("RUN fetch model", big("opt/data/model", 120, 6))
    layer("COPY version /etc/", lambda lf: lf.add("etc/version", b"1.2.3\n"))
    return layers


def write_archive(path: str, layers, tag: str) -> None:
    diff_ids = [d for _, _, d, _ in layers]
    hist = [{"created": f"2024-01-01T00:{i:02d}:00Z", "created_by": cmd} for i, (cmd, _, _, _) in enumerate(layers)]
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
           "created": hist[-1]["created"], "history": hist, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    from imggit.model import Config

    config = Config.from_data(cfg)
    inputs = [LayerInput(Layer(d, c, d, DOCKER_LAYER, size), (lambda p=p: open(p, "rb")))
              for (_, p, d, size), c in zip(layers, chain_ids(diff_ids))]
    DockerArchive(path).write(WriteRequest(config, inputs, tag))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="size factor (1.0 = ~1.4 GB)")
    ap.add_argument("--skip-docker-squash", action="store_true")
    args = ap.parse_args()
    results: dict = {}
    work = tempfile.mkdtemp(prefix="imggit-bench-", dir=os.environ.get("IMGGIT_BENCH_DIR", "/var/tmp"))
    engine = rig.Engine().start()
    try:
        env = engine.env()
        env["IMGGIT_HOME"] = os.path.join(work, "home")
        print(f"generating the bench image (scale {args.scale}) ...", flush=True)
        t0 = time.monotonic()
        layers = generate(work, args.scale)
        total = sum(s for _, _, _, s in layers)
        write_archive(os.path.join(work, "base.tar"), layers[:1], "bench/base:1")
        write_archive(os.path.join(work, "app.tar"), layers, "bench/app:1")
        for f in ("base.tar", "app.tar"):
            engine.docker("load", "-i", os.path.join(work, f))
            os.unlink(os.path.join(work, f))
        for _, p, _, _ in layers:
            os.unlink(p)
        print(f"  {len(layers)} layers, {total / 1e9:.2f} GB uncompressed, generated and loaded in "
              f"{time.monotonic() - t0:.0f} s", flush=True)

        # --- the floor: docker save of the image, and a load of only a new layer -------------
        t_save, _, _ = run(["docker", "save", "-o", os.path.join(work, "save.tar"), "bench/app:1"], env=env)
        os.unlink(os.path.join(work, "save.tar"))

        # imggit as root reads layers from the engine's data root (tar-split) and never calls docker save;
        # the same runs with IMGGIT_ENGINE_DIRECT=0 (a fresh cache) show it through save, as for other users
        env_save = dict(env, IMGGIT_ENGINE_DIRECT="0", IMGGIT_HOME=os.path.join(work, "home-save"))

        def imggit_squash(rng: str, tag: str, e: dict | None = None) -> tuple[float, int]:
            dt, rss, _ = run([PY, "-m", "imggit", "squash", rng, "-t", tag, "--timestamp", "0"], env=e or env)
            return dt, rss

        def thin_load_time(tag: str) -> float:
            """Time to load an archive holding only what the squashed image adds (the floor's load)."""
            from imggit.session import Session
            from imggit.stores import daemon as dmod
            from imggit.stores.archive import ArchiveWriter, docker_archive_members

            os.environ["DOCKER_HOST"] = engine.host
            dmod._engine_cache.clear()
            dmod._clients.clear()
            s = Session()
            st = s.engine()
            img = st.get(tag)
            path = os.path.join(work, "thin.tar")
            with st.layer_inputs(img, [len(img.layers) - 1]) as inputs:
                engine.docker("rmi", tag)
                out = ArchiveWriter(path)
                req = WriteRequest(img.config, inputs, tag)
                # the floor: an archive with only the new (top) layer; the engine has every layer below it
                docker_archive_members(req, tag, out, skip_layers=set(range(len(img.layers) - 1)))
                out.finish()
            dt, _, _ = run(["docker", "load", "-i", path], env=env)
            os.unlink(path)
            return dt

        print("(a) engine -> engine", flush=True)
        rows = []
        t_all, rss_all = imggit_squash("bench/base:1..bench/app:1", "bench/sq-all:imggit")
        t_last3, rss_last3 = imggit_squash("bench/app:1~3..bench/app:1", "bench/sq-last3:imggit")
        load_all = thin_load_time("bench/sq-all:imggit")
        load_last3 = thin_load_time("bench/sq-last3:imggit")
        # the same squashes through docker save; the engine must not have their layers already (a load
        # of a layer it has costs nothing), so the images made above go first
        sq_size = engine.inspect("bench/sq-all:imggit")["Size"]
        roots = {t: engine.inspect(f"bench/{t}:imggit")["RootFS"] for t in ("sq-all", "sq-last3")}
        engine.docker("rmi", "bench/sq-all:imggit", "bench/sq-last3:imggit")
        s_all, s_rss_all = imggit_squash("bench/base:1..bench/app:1", "bench/sq-all:save", env_save)
        assert engine.inspect("bench/sq-all:save")["RootFS"] == roots["sq-all"]
        engine.docker("rmi", "bench/sq-all:save")
        s_last3, s_rss_last3 = imggit_squash("bench/app:1~3..bench/app:1", "bench/sq-last3:save", env_save)
        assert engine.inspect("bench/sq-last3:save")["RootFS"] == roots["sq-last3"]
        engine.docker("rmi", "bench/sq-last3:save")
        floor_all, floor_last3 = t_save + load_all, t_save + load_last3
        results.update(imggit_all=t_all, imggit_last3=t_last3, floor_all=floor_all, floor_last3=floor_last3,
                       docker_save=t_save, rss_all=rss_all, rss_last3=rss_last3, imggit_save_all=s_all,
                       imggit_save_last3=s_last3, rss_save_all=s_rss_all, rss_save_last3=s_rss_last3)
        rows += [("docker save of the image", f"{t_save:.1f} s"),
                 ("floor, all above base (save + load new layer)", f"{floor_all:.1f} s"),
                 ("floor, last 3 layers", f"{floor_last3:.1f} s"),
                 ("imggit, all above base", f"{t_all:.1f} s  = {t_all / floor_all:.2f}x floor, peak RSS {rss_all} MB"),
                 ("imggit, last 3 layers", f"{t_last3:.1f} s  = {t_last3 / floor_last3:.2f}x floor, peak RSS {rss_last3} MB"),
                 ("imggit through docker save, all above base",
                  f"{s_all:.1f} s  = {s_all / floor_all:.2f}x floor, peak RSS {s_rss_all} MB"),
                 ("imggit through docker save, last 3 layers",
                  f"{s_last3:.1f} s  = {s_last3 / floor_last3:.2f}x floor, peak RSS {s_rss_last3} MB")]
        report(rows)
        rows = []
        if not args.skip_docker_squash:
            ds = os.path.join(BIN, "docker-squash")
            if not os.path.exists(ds):
                subprocess.run([PY, "-m", "pip", "install", "-q", "docker-squash"], check=True)
            ds_env = dict(env, TMPDIR=work)
            # docker-squash finds a base by the engine's parent ids, which a loaded image lacks: give counts
            d_all, d_rss_all, _ = run([ds, "-f", str(len(layers) - 1), "-t", "bench/sq-all:ds", "bench/app:1"],
                                      env=ds_env)
            d_last3, d_rss_last3, _ = run([ds, "-f", "3", "-t", "bench/sq-last3:ds", "bench/app:1"], env=ds_env)
            results.update(docker_squash_all=d_all, docker_squash_last3=d_last3)
            size = lambda t: engine.inspect(t)["Size"]  # noqa: E731
            rows += [("docker-squash, all above base", f"{d_all:.1f} s  (imggit {d_all / t_all:.2f}x faster, "
                      f"{d_all / s_all:.2f}x through save; peak RSS {d_rss_all} MB)"),
                     ("docker-squash, last 3 layers", f"{d_last3:.1f} s  (imggit {d_last3 / t_last3:.2f}x faster, "
                      f"{d_last3 / s_last3:.2f}x through save)"),
                     ("image size imggit / docker-squash (all)", f"{sq_size / 1e6:.0f} MB / "
                      f"{size('bench/sq-all:ds') / 1e6:.0f} MB")]
        report(rows)

        print("(b) OCI layout -> OCI layout (gzip layers)", flush=True)
        layout = os.path.join(work, "layout")
        run([PY, "-m", "imggit", "cp", "bench/app:1", f"oci:{layout}:app"], env=env)
        run([PY, "-m", "imggit", "cp", "bench/base:1", f"oci:{layout}:base"], env=env)
        t_oci, rss_oci, _ = run([PY, "-m", "imggit", "squash", f"oci:{layout}:base..oci:{layout}:app",
                                 "-t", f"oci:{layout}:sq", "--timestamp", "0"], env=env)
        # the floor for (b): inflate the range's layers once and gzip the merged layer once (ISA-L, all cores)
        from imggit.layers.compress import compressor, open_decompressed
        from imggit.layers.streams import HashingWriter
        from imggit.stores.ocilayout import OCILayout

        lay = OCILayout(layout)
        app, sq = lay.get("app"), lay.get("sq")
        t0 = time.monotonic()
        for i in range(1, len(app.layers)):
            with open(lay.blob_file(app.layers[i].digest), "rb") as f:
                s, _ = open_decompressed(f)
                while s.read(4 * MB):
                    pass
        merged = sq.layers[1]
        with open(lay.blob_file(merged.digest), "rb") as f:
            s, _ = open_decompressed(f)
            sink = HashingWriter()
            w = compressor(sink, "gzip")
            while True:
                b = s.read(4 * MB)
                if not b:
                    break
                w.write(b)
            w.close()
        floor_b = time.monotonic() - t0
        results.update(imggit_oci=t_oci, floor_oci=floor_b, rss_oci=rss_oci)
        rows = [("floor (inflate the range once + gzip the result once)", f"{floor_b:.1f} s"),
                ("imggit OCI -> OCI, all above base", f"{t_oci:.1f} s = {t_oci / floor_b:.2f}x floor, peak RSS "
                 f"{rss_oci} MB")]
        if "docker_squash_all" in results:
            rows.append(("vs docker-squash's engine squash of the same image",
                         f"imggit {results['docker_squash_all'] / t_oci:.1f}x faster"))
        rows.append(("merged layer, gzip", f"{merged.size / 1e6:.0f} MB"))
        report(rows)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}))
        return results
    finally:
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
