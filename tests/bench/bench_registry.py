"""Registry benchmark: imggit against skopeo, pull and push, in the same run.

    python tests/bench/bench_registry.py [--size-mb 1000] [--layers 10] [--rounds 2]

Starts local registries (tests/rig.py), makes an OCI layout holding one image
of ``--layers`` layers of random bytes (gzip, ~``--size-mb`` MB in all), then
times, each as a child process with its peak RSS:

- push: ``imggit push oci:SRC docker://R/...`` and ``skopeo copy oci:SRC docker://R/...``,
  each into a fresh, empty registry R;
- pull: ``imggit pull docker://A/... oci:DST`` and ``skopeo copy docker://A/... oci:DST``
  from the first registry, each into a fresh layout with a cold imggit blob cache;

each ``--rounds`` times, taking turns (the best time is kept: other load on the machine only adds).

Prints the times, rates, ratios (skopeo / imggit: above 1 means imggit is faster)
and peak RSS. The goal: imggit at least as fast as skopeo on both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import rig  # noqa: E402
from imggit.layers import tarfmt  # noqa: E402
from imggit.model import chain_ids, Layer, OCI_LAYER  # noqa: E402
from imggit.layers.build import StepSpec, image_config  # noqa: E402


def make_source(path: str, layers: int, size: int, work: str) -> str:
    """An OCI layout with one image of random layers, gzip-compressed; returns its tag."""
    from imggit.stores.base import LayerInput, WriteRequest
    from imggit.stores.ocilayout import OCILayout

    import hashlib

    tars, diff_ids = [], []
    per = size // layers
    for i in range(layers):
        p = os.path.join(work, f"layer{i}.tar")
        h = hashlib.sha256()
        with open(p, "wb") as f:
            def w(b: bytes) -> None:
                h.update(b)
                f.write(b)
            w(tarfmt.encode_header(f"data/part{i}.bin", tarfmt.REGULAR, mode=0o644, uid=0, gid=0, size=per,
                                   mtime=1700000000, linkname="", uname="", gname="", devmajor=0, devminor=0,
                                   pax={}))
            left = per
            while left:
                n = min(left, 8 << 20)
                w(os.urandom(n))
                left -= n
            w(tarfmt.padding(per))
            w(tarfmt.END_OF_ARCHIVE)
        tars.append(p)
        diff_ids.append("sha256:" + h.hexdigest())
    steps = [StepSpec(f"RUN make part{i}", b"") for i in range(layers)]
    config = image_config(steps)
    config = config.replace(rootfs={"type": "layers", "diff_ids": diff_ids})
    inputs = [LayerInput(Layer(d, c, d, OCI_LAYER, os.path.getsize(p)), (lambda p=p: open(p, "rb")))
              for d, c, p in zip(diff_ids, chain_ids(diff_ids), tars)]
    st = OCILayout(path, create=True)
    st.write(WriteRequest(config, inputs, "bench", compress="gzip"))
    for p in tars:
        os.unlink(p)
    return "bench"


# A child forked from this (large) Python would report our RSS as its peak: ru_maxrss survives
# exec. So children are started by a tiny ``python3 -S`` that forks, execs, and reports wait4's numbers.
_SPAWN = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("\\n@@ %f %d\\n" % (time.perf_counter() - t, ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one child process."""
    p = subprocess.run(["python3", "-S", "-c", _SPAWN, *cmd], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    elapsed, rss = err.rsplit("@@ ", 1)[1].split()
    return float(elapsed), int(rss)


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    if not shutil.which("skopeo"):
        raise SystemExit("skopeo is not installed")
    work = tempfile.mkdtemp(prefix="imggit-bench-")
    regs: list[rig.Registry] = []
    try:
        def registry() -> rig.Registry:
            r = rig.Registry().start()
            regs.append(r)
            return r

        src = os.path.join(work, "src")
        t0 = time.perf_counter()
        tag = make_source(src, args.layers, args.size_mb * 1000 * 1000, work)
        size = du(os.path.join(src, "blobs"))
        print(f"source: {args.layers} layers, {size / 1e6:.0f} MB stored (gzip of random bytes), "
              f"made in {time.perf_counter() - t0:.1f}s; cpus: {os.cpu_count()}", flush=True)
        env = dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock")
        imggit = [sys.executable, "-m", "imggit"]

        def fresh_home() -> dict[str, str]:
            home = tempfile.mkdtemp(prefix="home-", dir=work)
            return dict(env, IMGGIT_HOME=home)

        results: dict[str, list[tuple[float, int]]] = {k: [] for k in
                                                        ("push imggit", "push skopeo", "pull imggit", "pull skopeo")}
        for r in range(args.rounds):
            for tool in ("imggit", "skopeo") if r % 2 == 0 else ("skopeo", "imggit"):
                fresh = registry()          # an empty registry for every push: nothing to mount or skip
                if tool == "imggit":
                    cmd = imggit + ["push", "-q", "-j", str(args.jobs), f"oci:{src}:{tag}",
                                    f"docker://{fresh.addr}/bench/app:1"]
                    results["push imggit"].append(run(cmd, fresh_home()))
                else:
                    cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{src}:{tag}",
                           f"docker://{fresh.addr}/bench/app:1"]
                    results["push skopeo"].append(run(cmd, env))
                if len(regs) > 1:           # keep the first (it serves the pulls); drop the others
                    regs.pop().stop()
        a = regs[0]
        for r in range(args.rounds):
            for tool in ("skopeo", "imggit") if r % 2 == 0 else ("imggit", "skopeo"):
                dst = os.path.join(work, f"pull-{tool}-{r}")
                if tool == "imggit":
                    cmd = imggit + ["pull", "-q", "-j", str(args.jobs), f"docker://{a.addr}/bench/app:1",
                                    f"oci:{dst}:{tag}"]
                    results["pull imggit"].append(run(cmd, fresh_home()))
                else:
                    cmd = ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{a.addr}/bench/app:1",
                           f"oci:{dst}:{tag}"]
                    results["pull skopeo"].append(run(cmd, env))
                shutil.rmtree(dst, ignore_errors=True)
            for d in os.listdir(work):
                if d.startswith("home-"):
                    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        print(f"\n{'':14}{'best s':>8}{'MB/s':>8}{'peak RSS MB':>13}   all runs (s)")
        for name, runs in results.items():
            best = min(t for t, _ in runs)
            rss = max(m for _, m in runs) / 1024
            print(f"{name:14}{best:8.2f}{size / 1e6 / best:8.0f}{rss:13.0f}   "
                  + " ".join(f"{t:.2f}" for t, _ in runs))
        for verb in ("push", "pull"):
            ratio = min(t for t, _ in results[f"{verb} skopeo"]) / min(t for t, _ in results[f"{verb} imggit"])
            print(f"{verb}: skopeo/imggit time ratio = {ratio:.2f} ({'imggit faster' if ratio >= 1 else 'skopeo faster'})")
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
