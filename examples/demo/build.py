"""Build the demo images into imggit's embedded store, from the files beside this script.

No engine is needed: layers are made from the directories here, with fixed
times and owners, so the images (and their ids) are the same on every
machine.

    demo/base:1   ADD base/ /, ENV, CMD
    demo/app:1    demo/base:1 + WORKDIR, COPY app/, RUN (edits /etc/passwd), RUN rm build.log, CMD
    demo/tool:1   demo/base:1 + COPY tool/, ENTRYPOINT
"""

from __future__ import annotations

import os
import sys

from imggit.layers import build as b
from imggit.session import Session

HERE = os.path.dirname(os.path.abspath(__file__))
T = 1700000000  # every file's mtime


def files(sub: str, dest: str) -> bytes:
    entries = b.entries_from_dir(os.path.join(HERE, sub), dest, mtime=T, uid=0, gid=0)
    return b.make_layer(entries)


def main() -> int:
    store = Session().embedded()
    base_steps = [
        b.StepSpec("/bin/sh -c #(nop) ADD dir:demo-base in / ", files("base", ""), "2024-01-01T00:00:00Z"),
        b.StepSpec("/bin/sh -c #(nop)  ENV PATH=/usr/local/bin:/usr/bin:/bin", None, "2024-01-01T00:00:01Z"),
        b.StepSpec('/bin/sh -c #(nop)  CMD ["/bin/sh"]', None, "2024-01-01T00:00:02Z"),
    ]
    base_rt = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]}
    with open(os.path.join(HERE, "base", "etc", "passwd"), "rb") as f:
        passwd = f.read() + b"app:x:1000:1000::/app:/bin/sh\n"
    app_steps = base_steps + [
        b.StepSpec("/bin/sh -c #(nop) WORKDIR /app", None, "2024-01-02T00:00:00Z"),
        b.StepSpec("/bin/sh -c #(nop) COPY dir:demo-app in /app/ ", files("app", "app"), "2024-01-02T00:00:01Z"),
        b.StepSpec("/bin/sh -c echo 'app:x:1000:1000::/app:/bin/sh' >> /etc/passwd",
                   b.make_layer([b.directory("etc", mtime=T), b.file("etc/passwd", passwd, 0o644, mtime=T)]),
                   "2024-01-02T00:00:02Z"),
        b.StepSpec("/bin/sh -c rm /app/build.log",
                   b.make_layer([b.directory("app", mtime=T), b.whiteout("app/build.log", mtime=T)]),
                   "2024-01-02T00:00:03Z"),
        b.StepSpec('/bin/sh -c #(nop)  CMD ["/app/server.sh"]', None, "2024-01-02T00:00:04Z"),
    ]
    app_rt = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/app/server.sh"], "WorkingDir": "/app"}
    tool_steps = base_steps + [
        b.StepSpec("/bin/sh -c #(nop) COPY file:lint in /usr/local/bin/ ",
                   b.make_layer(b.entries_from_dir(os.path.join(HERE, "tool"), "usr/local/bin", mtime=T, uid=0,
                                                   gid=0)),
                   "2024-01-03T00:00:00Z"),
        b.StepSpec('/bin/sh -c #(nop)  ENTRYPOINT ["lint"]', None, "2024-01-03T00:00:01Z"),
    ]
    tool_rt = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Entrypoint": ["lint"]}
    for tag, steps, rt in (("demo/base:1", base_steps, base_rt), ("demo/app:1", app_steps, app_rt),
                           ("demo/tool:1", tool_steps, tool_rt)):
        res = b.write_image(store, tag, steps, rt)
        print(f"built embedded:{tag}  {res.image.id[:19]}  ({len(steps)} steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
