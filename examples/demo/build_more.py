"""Build the extra example images that the pages on rewriting use, into imggit's embedded store.

Run it after build.py (it needs nothing from build.py's images, but the
pages use both sets). Like build.py it needs no engine: every layer is
made here, with fixed times, owners and contents, so the image ids are
the same on every machine.

    demo/base:2    a rebuilt demo/base:1: /etc/passwd and /etc/os-release patched,
                   a longer PATH and a version label (for rebase)
    demo/web:1     demo/base:1 + ENV PATH (its own), COPY, USER, CMD
                   (a config conflict when rebased onto demo/base:2)
    demo/pkg:1     demo/base:1 + two package installs, a clean-up, a replaced
                   directory, a moved file, CMD: hardlinks, whiteouts and an opaque
                   directory, a deleted secret (for squash, waste, blame, filter)
    demo/links:1   demo/base:1 + a hardlink to /bin/hello, then a new /bin/hello
                   (the one range squash refuses)

    python examples/demo/build.py && python examples/demo/build_more.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

from imggit.layers import build as b
from imggit.session import Session

HERE = os.path.dirname(os.path.abspath(__file__))
T = 1700000000  # every file's mtime, as in build.py


def blob(seed: str, size: int) -> bytes:
    """``size`` bytes that look random (so they do not compress away), the same on every run."""
    out = bytearray()
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def d(path: str) -> b.Entry:
    return b.directory(path, mtime=T)


def f(path: str, data: bytes | str, mode: int = 0o644) -> b.Entry:
    return b.file(path, data, mode, mtime=T)


def nop(instr: str, created: str) -> b.StepSpec:
    return b.StepSpec(f"/bin/sh -c #(nop)  {instr}", None, created)


def base1_steps() -> list[b.StepSpec]:
    """demo/base:1's steps, exactly as build.py makes them (so the images here share them)."""
    layer = b.make_layer(b.entries_from_dir(os.path.join(HERE, "base"), "", mtime=T, uid=0, gid=0))
    return [
        b.StepSpec("/bin/sh -c #(nop) ADD dir:demo-base in / ", layer, "2024-01-01T00:00:00Z"),
        nop("ENV PATH=/usr/local/bin:/usr/bin:/bin", "2024-01-01T00:00:01Z"),
        nop('CMD ["/bin/sh"]', "2024-01-01T00:00:02Z"),
    ]


BASE1_ENV = "PATH=/usr/local/bin:/usr/bin:/bin"


def base2() -> tuple[list[b.StepSpec], dict]:
    patched = {
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
                      b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "etc/os-release": b'NAME="Demo Linux"\nVERSION_ID="2"\nID=demo\n',
    }
    entries = b.entries_from_dir(os.path.join(HERE, "base"), "", mtime=T, uid=0, gid=0)
    entries = [dataclasses.replace(e, data=patched[e.path]) if e.path in patched else e for e in entries]
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    steps = [
        b.StepSpec("/bin/sh -c #(nop) ADD dir:demo-base-2 in / ", b.make_layer(entries), "2024-02-01T00:00:00Z"),
        nop(f"ENV {path}", "2024-02-01T00:00:01Z"),
        nop("LABEL org.opencontainers.image.version=2", "2024-02-01T00:00:02Z"),
        nop('CMD ["/bin/sh"]', "2024-02-01T00:00:03Z"),
    ]
    runtime = {"Env": [path], "Cmd": ["/bin/sh"], "Labels": {"org.opencontainers.image.version": "2"}}
    return steps, runtime


def web1() -> tuple[list[b.StepSpec], dict]:
    path = "PATH=/opt/web/bin:/usr/local/bin:/usr/bin:/bin"
    steps = base1_steps() + [
        nop(f"ENV {path}", "2024-01-05T00:00:00Z"),
        b.StepSpec("/bin/sh -c #(nop) COPY file:web in /opt/web/bin/ ",
                   b.make_layer([d("opt"), d("opt/web"), d("opt/web/bin"),
                                 f("opt/web/bin/web", '#!/bin/sh\necho "web: up"\n', 0o755)]),
                   "2024-01-05T00:00:01Z"),
        nop("USER nobody", "2024-01-05T00:00:02Z"),
        nop('CMD ["web"]', "2024-01-05T00:00:03Z"),
    ]
    return steps, {"Env": [path], "Cmd": ["web"], "User": "nobody"}


def pkg1() -> tuple[list[b.StepSpec], dict]:
    libfoo = [
        d("etc"), f("etc/foo.conf", "level = 1\n"),
        d("root"), f("root/.netrc", "machine pkg.example.com login ci password hunter2\n", 0o600),
        d("usr"), d("usr/lib"),
        f("usr/lib/libfoo.so.1", blob("libfoo.so.1", 4096), 0o755),
        b.hardlink("usr/lib/libfoo.so", "usr/lib/libfoo.so.1", mode=0o755, mtime=T),
        d("var"), d("var/cache"), d("var/cache/pkg"),
        f("var/cache/pkg/libfoo_1.0.pkg", blob("libfoo_1.0.pkg", 8192)),
    ]
    libbar = [
        d("etc"), f("etc/foo.conf", "level = 2\n"),
        d("usr"), d("usr/lib"),
        f("usr/lib/libbar.so.2", blob("libbar.so.2", 3072), 0o755),
        d("var"), d("var/cache"), d("var/cache/pkg"),
        f("var/cache/pkg/libbar_2.1.pkg", blob("libbar_2.1.pkg", 6144)),
    ]
    clean = [
        d("root"), b.whiteout("root/.netrc", mtime=T),
        d("var"), d("var/cache"), d("var/cache/pkg"),
        b.whiteout("var/cache/pkg/libbar_2.1.pkg", mtime=T),
        b.whiteout("var/cache/pkg/libfoo_1.0.pkg", mtime=T),
    ]
    docs = [
        d("usr"), d("usr/share"), d("usr/share/doc"), b.opaque("usr/share/doc", mtime=T),
        f("usr/share/doc/NOTICE", "libfoo and libbar: see https://example.com/licenses\n"),
    ]
    move = [
        d("bin"), b.whiteout("bin/hello", mtime=T),
        d("usr"), d("usr/local"), d("usr/local/bin"),
        f("usr/local/bin/hello", '#!/bin/sh\necho "hello from $(. /etc/os-release; echo "$NAME")"\n', 0o755),
    ]
    steps = base1_steps() + [
        b.StepSpec("/bin/sh -c pkg install libfoo", b.make_layer(libfoo), "2024-01-04T00:00:00Z"),
        b.StepSpec("/bin/sh -c pkg install libbar", b.make_layer(libbar), "2024-01-04T00:00:01Z"),
        b.StepSpec("/bin/sh -c rm -rf /var/cache/pkg/* /root/.netrc", b.make_layer(clean), "2024-01-04T00:00:02Z"),
        b.StepSpec("/bin/sh -c rm -rf /usr/share/doc && mkdir /usr/share/doc && cp NOTICE /usr/share/doc/",
                   b.make_layer(docs), "2024-01-04T00:00:03Z"),
        b.StepSpec("/bin/sh -c mv /bin/hello /usr/local/bin/", b.make_layer(move), "2024-01-04T00:00:04Z"),
        nop('CMD ["hello"]', "2024-01-04T00:00:05Z"),
    ]
    return steps, {"Env": [BASE1_ENV], "Cmd": ["hello"]}


def links1() -> tuple[list[b.StepSpec], dict]:
    steps = base1_steps() + [
        b.StepSpec("/bin/sh -c ln /bin/hello /usr/local/bin/hi",
                   b.make_layer([d("usr"), d("usr/local"), d("usr/local/bin"),
                                 b.hardlink("usr/local/bin/hi", "bin/hello", mode=0o755, mtime=T)]),
                   "2024-01-06T00:00:00Z"),
        b.StepSpec("/bin/sh -c echo 'echo bye' >> /bin/hello",
                   b.make_layer([d("bin"), f("bin/hello", '#!/bin/sh\necho "hello from $(. /etc/os-release; '
                                                          'echo "$NAME")"\necho bye\n', 0o755)]),
                   "2024-01-06T00:00:01Z"),
        nop('CMD ["hi"]', "2024-01-06T00:00:02Z"),
    ]
    return steps, {"Env": [BASE1_ENV], "Cmd": ["hi"]}


def main() -> int:
    store = Session().embedded()
    for tag, (steps, runtime) in (("demo/base:2", base2()), ("demo/web:1", web1()), ("demo/pkg:1", pkg1()),
                                  ("demo/links:1", links1())):
        res = b.write_image(store, tag, steps, runtime)
        print(f"built embedded:{tag}  {res.image.id[:19]}  ({len(steps)} steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
