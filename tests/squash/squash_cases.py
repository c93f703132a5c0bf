"""The corner cases of squash, each written twice: as a Dockerfile and as exact layer tars.

A ``Case`` describes the steps of a range (and, optionally, of a tagged base
under it) in two forms:

- ``real``: Dockerfile instructions, built by the engine's classic builder on
  ``FROM busybox:base`` (or on the case's own base image, itself built from
  ``real_base``);
- ``syn``: the same story as layer tars written entry by entry with
  ``imggit.layers.build`` (a list of entries is a layer, a string is a step
  without a layer), for what the builder never writes: opaque markers,
  cross-layer hardlinks, ``./`` names, devices with exact numbers, xattrs.

Both forms get the trailer ``LABEL imggit.case=NAME`` and a ``CMD`` that
prints ``ok-NAME``, so every range ends with two steps without a layer and
``docker run`` of the result says whether it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from imggit.layers import build as b
from imggit.layers import tarfmt

f, d, sl, hl, wh, opq, fifo, chardev = (b.file, b.directory, b.symlink, b.hardlink, b.whiteout, b.opaque,
                                        b.fifo, b.chardev)

# security.capability, VFS_CAP_REVISION_2 with the effective bit: cap_net_raw permitted
CAP = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12
T0 = 1700000000


def blockdev(path: str, major: int, minor: int, mode: int = 0o660, **kw: Any) -> b.Entry:
    return b.Entry(path, tarfmt.BLOCKDEV, b"", mode, devmajor=major, devminor=minor, **kw)


@dataclass
class Case:
    name: str
    real: str | None                       # Dockerfile instructions of the range; None: no builder makes it
    syn: list                              # range steps: list of entries (a layer) or str (a step with no layer)
    real_base: str = ""                    # instructions of the case's base image (empty: busybox:base)
    syn_base: list = field(default_factory=list)   # base layers above the busybox layer
    why_no_real: str = ""
    oci: bool = False                      # also squash into an OCI layout, compared with umoci unpack
    middle: bool = False                   # also squash image~N..image~3 (the top layer step is replayed)
    slow: bool = False
    runtime: dict[str, Any] | None = None  # synthetic runtime config, over the default
    cmd: list[str] | None = None           # CMD of the trailer (default: sh -c "echo ok-NAME")
    layer_check: Callable[[list[str], str], None] | None = None   # (merged layer names, kind)
    note: str = ""
    may_refuse: str = ""                   # squash may refuse this (exit 3, message containing this), writing nothing

    @property
    def expect_out(self) -> str:
        return f"ok-{self.name}\n"

    def trailer_cmd(self) -> list[str]:
        return self.cmd or ["/bin/sh", "-c", f"echo ok-{self.name}"]


def _names_include(*want: str, absent: tuple[str, ...] = ()) -> Callable[[list[str], str], None]:
    def check(names: list[str], kind: str) -> None:
        missing = [w for w in want if w not in names]
        assert not missing, f"the merged layer lacks {missing}; it holds {names}"
        present = [a for a in absent if a in names or any(n.startswith(a + "/") for n in names)]
        assert not present, f"the merged layer should not hold {present}; it holds {names}"
    return check


# --- long and non-ASCII names ----------------------------------------------------------

A255 = "a" * 255                              # the longest name a directory entry can have
B200, C200 = "b" * 200, "c" * 200
D100 = "d" * 100 + ".txt"
DEEP = f"ln/{B200}/{C200}/{D100}"             # > 500 bytes
E150 = "e" * 150
UNI_DIR = "ln/ünïcödé/日本語"
UNI_FILE = f"{UNI_DIR}/файл 😀.txt"


def _data(i: int) -> str:
    return f"content {i}\n"


CASES: list[Case] = [
    Case(
        "delete_later",
        real="""RUN mkdir -p /app/sub && echo one > /app/a && echo two > /app/sub/b && echo tmp > /app/tmp
RUN rm /app/tmp /app/sub/b
RUN echo three > /app/c""",
        syn=[
            [d("app"), f("app/a", "one\n"), d("app/sub"), f("app/sub/b", "two\n"), f("app/tmp", "tmp\n")],
            [d("app", mtime=T0 + 1), wh("app/tmp"), d("app/sub", mtime=T0 + 1), wh("app/sub/b")],
            [d("app", mtime=T0 + 2), f("app/c", "three\n", mtime=T0 + 2)],
        ],
        middle=True,
        layer_check=_names_include("app/a", absent=("app/.wh.tmp", "app/tmp", "app/sub/.wh.b", "app/sub/b")),
    ),
    Case(
        "dir_recreated",
        real_base="RUN mkdir -p /data/sub && echo 1 > /data/a && echo 2 > /data/sub/b && chmod 700 /data",
        real="""RUN rm -rf /data && mkdir /data && echo 3 > /data/c
RUN mkdir -p /r/s && echo x > /r/x && echo y > /r/s/y
RUN rm -rf /r && mkdir -m 750 /r && echo z > /r/z""",
        syn_base=[[d("data", 0o700), f("data/a", "1\n"), d("data/sub"), f("data/sub/b", "2\n")]],
        syn=[
            [wh("data")],
            [d("data", 0o755, mtime=T0 + 2), f("data/c", "3\n")],
            [d("r"), f("r/x", "x\n"), d("r/s"), f("r/s/y", "y\n")],
            # opaque over content that only the range wrote: nothing of it may survive, no marker needed
            [d("r", 0o750, mtime=T0 + 4), opq("r"), f("r/z", "z\n")],
        ],
        middle=True,
        layer_check=_names_include("data/c", "r/z", absent=("r/x", "r/s")),
    ),
    Case(
        "file_dir_swap",
        real_base="RUN echo f > /bf && mkdir -p /bd/sub && echo x > /bd/sub/x",
        real="""RUN echo f > /rf && mkdir -p /rd/sub && echo y > /rd/sub/y
RUN rm /bf /rf && mkdir /bf /rf && echo in > /bf/in && echo in > /rf/in && rm -rf /bd /rd \\
    && echo now-file > /bd && echo now-file > /rd""",
        syn_base=[[f("bf", "f\n"), d("bd"), d("bd/sub"), f("bd/sub/x", "x\n")]],
        syn=[
            [f("rf", "f\n"), d("rd"), d("rd/sub"), f("rd/sub/y", "y\n")],
            # as the engine's differ writes a type change (no whiteout) and as other writers do (whiteout first)
            [d("bf", 0o711, mtime=T0 + 2), f("bf/in", "in\n"), wh("rf"), d("rf", 0o701), f("rf/in", "in\n"),
             wh("bd"), f("bd", "now-file\n", 0o600), wh("rd"), f("rd", "now-file\n", 0o640)],
        ],
    ),
    Case(
        "symlink_file_swap",
        real_base="RUN ln -s /etc/passwd /bs && echo f > /bfile && mkdir /bdir && ln -s bdir /bdl",
        real="""RUN ln -s bfile /rs && echo f > /rfile && ln -s /nonexistent /dangling
RUN rm /bs /rs /bfile /rfile /bdl && echo now-file > /bs && echo now-file > /rs && ln -s /etc/group /bfile \\
    && ln -s bs /rfile && mkdir /bdl && echo in > /bdl/in""",
        syn_base=[[sl("bs", "/etc/passwd"), f("bfile", "f\n"), d("bdir"), sl("bdl", "bdir")]],
        syn=[
            [sl("rs", "bfile"), f("rfile", "f\n"), sl("dangling", "/nonexistent")],
            [f("bs", "now-file\n", mtime=T0 + 2), f("rs", "now-file\n"), sl("bfile", "/etc/group", mtime=T0 + 2),
             sl("rfile", "bs"), d("bdl"), f("bdl/in", "in\n")],
        ],
    ),
    Case(
        "through_symlink_base",
        note="a symlinked directory of the kept base: a later layer writes and deletes through it",
        real_base="RUN mkdir /real && echo old > /real/old && echo keep > /real/keep && ln -s real /link",
        real="""RUN echo f > /link/f && rm /link/old
RUN echo g > /link/g""",
        syn_base=[[d("real"), f("real/old", "old\n"), f("real/keep", "keep\n"), sl("link", "real")]],
        syn=[
            # tar paths through the symlink: the engine follows it (moby UnpackLayer joins, then Lstat)
            [f("link/f", "f\n"), wh("link/old")],
            [f("link/g", "g\n")],
        ],
    ),
    Case(
        "through_symlink_range",
        note="a symlinked directory made inside the range; a later layer of the range writes through it",
        real="""RUN mkdir /r2 && echo old > /r2/old && ln -s r2 /l2
RUN mkdir -p /l2/sub && echo h > /l2/sub/h && rm /l2/old
RUN echo top > /top""",
        syn=[
            [d("r2"), f("r2/old", "old\n"), sl("l2", "r2")],
            [d("l2/sub"), f("l2/sub/h", "h\n"), wh("l2/old")],
            [f("top", "top\n")],
        ],
    ),
    Case(
        "hardlink_in_layer",
        real="""RUN mkdir /h && echo a > /h/a && ln /h/a /h/b && ln /h/a /h/c && chmod 750 /h/a
RUN echo other > /other""",
        syn=[
            [d("h"), f("h/a", "a\n", 0o750), hl("h/b", "h/a", mode=0o750), hl("h/c", "h/a", mode=0o750)],
            [f("other", "other\n")],
        ],
    ),
    Case(
        "hardlink_across_layers",
        note="links to a file of a lower layer of the range, to a link, and to a file of the kept base",
        real_base="RUN echo base > /bt",
        real="""RUN mkdir /h && echo t > /h/t
RUN ln /h/t /h/l && ln /bt /h/lb
RUN ln /h/l /h/l2""",
        syn_base=[[f("bt", "base\n")]],
        syn=[
            [d("h"), f("h/t", "t\n")],
            [d("h"), hl("h/l", "h/t"), hl("h/lb", "bt")],
            [hl("h/l2", "h/l")],
        ],
    ),
    Case(
        "hardlink_target_modified",
        note="the target changed in place (the engine's differ writes the file and a link to it again)",
        real="""RUN echo old > /t && ln /t /l
RUN echo more >> /t""",
        syn=[
            [f("t", "old\n"), hl("l", "t")],
            [f("l", "old\nmore\n", mtime=T0 + 1), hl("t", "l", mtime=T0 + 1)],
        ],
    ),
    Case(
        "hardlink_target_replaced",
        real="""RUN echo old > /t && ln /t /l
RUN echo new > /t.new && mv /t.new /t
RUN echo top > /top""",
        syn=[
            [f("t", "old\n"), hl("l", "t")],
            [f("t", "new\n", 0o600, mtime=T0 + 1)],
            [f("top", "top\n")],
        ],
        middle=True,
    ),
    Case(
        "hardlink_target_deleted",
        real="""RUN mkdir /hd && echo old > /hd/t && ln /hd/t /hd/l && ln /hd/t /hd/m
RUN rm /hd/t
RUN echo top > /top""",
        syn=[
            [d("hd"), f("hd/t", "old\n"), hl("hd/l", "hd/t"), hl("hd/m", "hd/t")],
            [d("hd"), wh("hd/t")],
            [f("top", "top\n")],
        ],
        oci=True,
        middle=True,
        layer_check=_names_include("hd/l", "hd/m", absent=("hd/.wh.t", "hd/t")),
    ),
    Case(
        "hardlink_to_base_dir_deleted",
        note="a link to a file of the kept base whose directory the range deletes",
        real_base="RUN mkdir /bd && echo base > /bd/t",
        real="""RUN ln /bd/t /hl
RUN rm -rf /bd""",
        syn_base=[[d("bd"), f("bd/t", "base\n")]],
        syn=[
            [hl("hl", "bd/t")],
            [wh("bd")],
        ],
        layer_check=_names_include("hl", absent=("bd",)),
    ),
    Case(
        "hardlink_to_base_replaced",
        note="a link to a file of the kept base that the range then replaces: the link keeps the old bytes, "
             "which only the base's layer holds: the merged layer carries them, read from that layer",
        real_base="RUN echo base > /bt",
        real="""RUN ln /bt /hl
RUN echo new > /bt.new && mv /bt.new /bt""",
        syn_base=[[f("bt", "base\n")]],
        syn=[
            [hl("hl", "bt")],
            [f("bt", "new\n", mtime=T0 + 1)],
        ],
        oci=True,
    ),
    Case(
        "hardlink_to_base_other_name_stays",
        note="a link to one name of a base file that has two; the range deletes that name: the link stays a "
             "link, to the other name",
        real=None,
        why_no_real="the engine's differ writes a link to a file of a lower layer as a plain file",
        syn_base=[[f("bt2", "base\n"), hl("bu", "bt2")]],
        syn=[
            [hl("hl", "bu")],
            [wh("bu")],
        ],
        layer_check=_names_include("hl", absent=("bt2", ".wh.bt2")),
    ),
    Case(
        "hardlink_header_meta",
        note="a hardlink header whose mode/owner/mtime differ from its target's: the engine applies them "
             "(moby createTarFile chowns, chmods and chtimes the link), so the inode ends with the link's",
        real=None,
        why_no_real="the engine's differ writes a link with its inode's own metadata",
        syn=[
            [d("hm"), f("hm/y", "c\n", 0o755, uid=5, mtime=1000), hl("hm/x", "hm/y", mode=0o600, uid=7, mtime=2000)],
            [f("other", "o\n")],
        ],
    ),
    Case(
        "whiteouts",
        note="a deletion of a range-only path is dropped, one of a base path kept (and before any re-creation)",
        real_base="""RUN echo b > /bfile && mkdir -p /bdir/sub && echo c > /bdir/sub/c && echo keep > /bdir/keep \
 && mkdir -p /-dash/old && echo same > /bsame && mkdir /bre && echo child > /bre/child""",
        real="""RUN echo r > /rfile && mkdir /rdir && echo r > /rdir/x
RUN rm -rf /rfile /rdir /bfile /bdir/sub /-dash /bsame /bre
RUN mkdir /-dash && echo new > /-dash/new && echo same > /bsame && echo now-file > /bre""",
        syn_base=[[f("bfile", "b\n"), d("bdir"), d("bdir/sub"), f("bdir/sub/c", "c\n"), f("bdir/keep", "keep\n"),
                   d("-dash"), d("-dash/old"), f("bsame", "same\n"), d("bre"), f("bre/child", "child\n")]],
        syn=[
            [f("rfile", "r\n"), d("rdir"), f("rdir/x", "r\n")],
            [wh("-dash"), wh("bfile"), wh("bre"), wh("bsame"), d("bdir"), wh("bdir/sub"), wh("rdir"), wh("rfile")],
            [d("-dash", mtime=T0 + 2), f("-dash/new", "new\n"), f("bsame", "same\n", mtime=T0 + 2),
             f("bre", "now-file\n")],
        ],
        oci=True,
        middle=True,
        layer_check=_names_include(".wh.bfile", "bdir/.wh.sub",
                                   absent=(".wh.rfile", ".wh.rdir", "rfile", "rdir", "bdir/sub", "-dash/old")),
    ),
    Case(
        "opaque_over_base",
        real_base="RUN mkdir -p /od/sub /od2 && echo a > /od/a && echo b > /od/sub/b && echo x > /od2/x",
        real="""RUN rm -rf /od/* && echo c > /od/c
RUN rm -rf /od2/* && echo c2 > /od2/c2""",
        syn_base=[[d("od"), f("od/a", "a\n"), d("od/sub"), f("od/sub/b", "b\n"), d("od2"), f("od2/x", "x\n")]],
        syn=[
            [d("od", mtime=T0 + 1), opq("od"), f("od/c", "c\n")],
            # a marker after the layer's own entries is applied as if first
            [d("od2", mtime=T0 + 2), f("od2/c2", "c2\n"), opq("od2")],
        ],
        oci=True,
        layer_check=lambda names, kind: kind == "real" or _names_include(
            "od/.wh..wh..opq", "od2/.wh..wh..opq", "od/c", "od2/c2", absent=("od/a", "od/sub", "od2/x"))(names, kind),
    ),
    Case(
        "chmod_chown_base",
        real_base="RUN echo x > /cf && mkdir /cd && touch /cd/k && echo y > /cf2 && ln -s cf /cl",
        real="""RUN chmod 600 /cf && chown 1000:1000 /cf && chmod 700 /cd && chown 5:6 /cd
RUN chmod 4711 /cf2 && touch -t 200101020304 /cf2 && chown -h 7:7 /cl""",
        syn_base=[[f("cf", "x\n"), d("cd"), f("cd/k"), f("cf2", "y\n"), sl("cl", "cf")]],
        syn=[
            [f("cf", "x\n", 0o600, uid=1000, gid=1000, mtime=T0 + 1), d("cd", 0o700, uid=5, gid=6)],
            [f("cf2", "y\n", 0o4711, mtime=978404640), sl("cl", "cf", uid=7, gid=7)],
        ],
    ),
    Case(
        "whiteout_lookalikes",
        real="""RUN mkdir /wl && echo a > /wl/foo.wh.bar && echo b > /wl/.wh-x && echo c > /wl/x.wh. \\
    && echo d > /wl/..wh.y && echo e > /wl/.whx && mkdir /wl/.wh
RUN rm /wl/foo.wh.bar && echo f > /wl/.wh-y && echo g > /wl/.wh/in""",
        syn=[
            [d("wl"), f("wl/foo.wh.bar", "a\n"), f("wl/.wh-x", "b\n"), f("wl/x.wh.", "c\n"), f("wl/..wh.y", "d\n"),
             f("wl/.whx", "e\n"), d("wl/.wh")],
            [d("wl"), wh("wl/foo.wh.bar"), f("wl/.wh-y", "f\n"), d("wl/.wh"), f("wl/.wh/in", "g\n")],
        ],
        layer_check=_names_include("wl/.wh-x", "wl/x.wh.", "wl/..wh.y", "wl/.whx", "wl/.wh-y", "wl/.wh/in",
                                   absent=("wl/foo.wh.bar", "wl/.wh.foo.wh.bar")),
    ),
    Case(
        "long_names",
        real_base=f"RUN mkdir -p /ln && echo del > /ln/{A255}",
        real=f"""RUN mkdir -p /ln/{B200}/{C200} '/{UNI_DIR}' && echo deep > /{DEEP} && echo u > '/{UNI_FILE}' \\
    && ln -s /{DEEP} /ln/longlink && ln /{DEEP} /ln/{E150} && ln -s '/{UNI_FILE}' '/ln/ünï-link'
RUN rm /ln/{A255} && echo more >> '/{UNI_FILE}'""",
        syn_base=[[d("ln"), f(f"ln/{A255}", "del\n")]],
        syn=[
            [d("ln"), d(f"ln/{B200}"), d(f"ln/{B200}/{C200}"), f(DEEP, "deep\n"), d("ln/ünïcödé"), d(UNI_DIR),
             f(UNI_FILE, "u\n"), sl("ln/longlink", "/" + DEEP), hl(f"ln/{E150}", DEEP),
             sl("ln/ünï-link", "/" + UNI_FILE)],
            [d("ln"), wh(f"ln/{A255}"), d(UNI_DIR), f(UNI_FILE, "u\nmore\n", mtime=T0 + 1)],
        ],
        oci=True,
        layer_check=_names_include(f"ln/.wh.{A255}", DEEP, UNI_FILE),
    ),
    Case(
        "empty_things",
        real_base="RUN echo content > /ne",
        real="""RUN touch /e1 && mkdir -p /ed/nested/deeper && touch /ed/e2
RUN : > /ne && mkdir /ed2 && : > /ed/e3 && rm /ed/e2""",
        syn_base=[[f("ne", "content\n")]],
        syn=[
            [f("e1"), d("ed"), d("ed/nested"), d("ed/nested/deeper"), f("ed/e2")],
            [f("ne", "", mtime=T0 + 1), d("ed2"), d("ed"), f("ed/e3"), wh("ed/e2")],
        ],
    ),
    Case(
        "fifos",
        real="""RUN mkfifo /ff /ff2 /ff3 && mkfifo -m 600 /ff4
RUN chmod 640 /ff && rm /ff2 /ff3 && mkfifo -m 604 /ff2 && echo file > /ff3""",
        syn=[
            [fifo("ff"), fifo("ff2"), fifo("ff3"), fifo("ff4", 0o600)],
            [fifo("ff", 0o640, mtime=T0 + 1), fifo("ff2", 0o604, mtime=T0 + 1), f("ff3", "file\n")],
        ],
    ),
    Case(
        "devices",
        real="""RUN mkdir /nodes && busybox mknod /nodes/null c 1 3 && busybox mknod /nodes/blk b 7 0 \\
    && busybox mknod /nodes/zero c 1 5 && busybox mknod -m 600 /nodes/gone c 1 8
RUN chmod 600 /nodes/null && rm /nodes/zero /nodes/gone && echo f > /nodes/zero && busybox mknod /nodes/full c 1 7""",
        syn=[
            [d("nodes"), chardev("nodes/null", 1, 3), blockdev("nodes/blk", 7, 0), chardev("nodes/zero", 1, 5),
             chardev("nodes/gone", 1, 8, 0o600)],
            [d("nodes"), chardev("nodes/null", 1, 3, 0o600, mtime=T0 + 1), wh("nodes/gone"), f("nodes/zero", "f\n"),
             chardev("nodes/full", 1, 7)],
        ],
        oci=True,
    ),
    Case(
        "xattrs",
        real=None,
        why_no_real="busybox has no setfattr and the classic builder's COPY drops xattrs (checked on docker 20.10)",
        syn_base=[[d("xa"), f("xa/keep", "k\n", xattrs={"user.base": "1"}),
                   f("xa/re", "r\n", xattrs={"user.old": "1"})]],
        syn=[
            [d("xa"), f("xa/f", "f\n", 0o755, xattrs={"user.k": "v", "security.capability": CAP}),
             d("xa/d", xattrs={"user.dir": "yes"}), f("xa/re", "r2\n", xattrs={"user.new": "2"}),
             f("xa/gone", "g\n", xattrs={"security.capability": CAP})],
            [d("xa"), wh("xa/gone"), f("xa/g", "g\n", 0o755, xattrs={"security.capability": CAP, "user.a": "1"}),
             hl("xa/gl", "xa/g", mode=0o755, xattrs={"security.capability": CAP, "user.a": "1"})],
        ],
        oci=True,
    ),
    Case(
        "special_modes",
        real_base="RUN echo b > /bsu && chmod 4755 /bsu",
        real="""RUN echo s > /su && chmod 4755 /su && echo g > /sg && chmod 2755 /sg && mkdir /st /sgd \\
    && chmod 1777 /st && chmod 2775 /sgd
RUN chmod 6711 /sg && chmod u-s /su && chmod 3777 /st && chmod u-s /bsu && touch /sgd/in""",
        syn_base=[[f("bsu", "b\n", 0o4755)]],
        syn=[
            [f("su", "s\n", 0o4755), f("sg", "g\n", 0o2755), d("st", 0o1777), d("sgd", 0o2775)],
            [f("sg", "g\n", 0o6711, mtime=T0 + 1), f("su", "s\n", 0o755, mtime=T0 + 1), d("st", 0o3777),
             f("bsu", "b\n", 0o755, mtime=T0 + 1), d("sgd", 0o2775), f("sgd/in")],
        ],
        oci=True,
    ),
    Case(
        "delete_only",
        note="every step of the range only deletes (files of the kept base)",
        real_base="RUN echo a > /da && mkdir -p /dd/s && echo b > /dd/s/b && echo c > /dc",
        real="""RUN rm /da
RUN rm -rf /dd
RUN rm /etc/group""",
        syn_base=[[f("da", "a\n"), d("dd"), d("dd/s"), f("dd/s/b", "b\n"), f("dc", "c\n")]],
        syn=[
            [wh("da")],
            [wh("dd")],
            [d("etc"), wh("etc/group")],
        ],
        layer_check=_names_include(".wh.da", ".wh.dd", "etc/.wh.group", absent=("dd/s",)),
    ),
    Case(
        "empty_steps",
        note="ENV/LABEL/... steps without a layer between RUNs; every runtime config field set",
        real="""RUN echo 1 > /s1
ENV A=1 B="two words"
LABEL org.example.x=y other=1
RUN echo 2 > /s2
EXPOSE 8080/tcp 53/udp
WORKDIR /wd
VOLUME /vol
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s CMD true
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/sh", "-c"]
RUN echo 3 > /s3
USER nobody""",
        syn=[
            [d("./", 0o755), f("s1", "1\n")],      # a root entry too
            "ENV A=1 B=two words",
            "LABEL org.example.x=y other=1",
            [f("s2", "2\n")],
            "EXPOSE 8080/tcp 53/udp",
            [d("wd")],
            "VOLUME /vol",
            "STOPSIGNAL SIGTERM",
            "HEALTHCHECK --interval=30s CMD true",
            'SHELL ["/bin/sh", "-c"]',
            "ONBUILD RUN echo child",
            'ENTRYPOINT ["/bin/sh", "-c"]',
            [f("s3", "3\n")],
            "USER nobody",
        ],
        runtime={"Env": ["A=1", "B=two words"], "Labels": {"org.example.x": "y", "other": "1"},
                 "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}, "WorkingDir": "/wd", "Volumes": {"/vol": {}},
                 "StopSignal": "SIGTERM", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000},
                 "Shell": ["/bin/sh", "-c"], "OnBuild": ["RUN echo child"], "Entrypoint": ["/bin/sh", "-c"],
                 "User": "nobody"},
        cmd=["echo ok-empty_steps"],
    ),
    # --- what only hand-made tars hold -------------------------------------------------
    Case(
        "dot_slash_names",
        note="every name ./-prefixed, whiteouts and link names too",
        real_base="RUN mkdir /ds && echo base > /ds/base",
        real="""RUN echo a > /ds/a && ln /ds/a /ds/la && mkdir /ds/sub
RUN rm /ds/base /ds/a && echo b > /ds/sub/b""",
        syn_base=[[d("./ds"), f("./ds/base", "base\n")]],
        syn=[
            [d("./"), d("./ds"), f("./ds/a", "a\n"), hl("./ds/la", "./ds/a"), d("./ds/sub")],
            [d("./ds"), wh("./ds/base"), wh("./ds/a"), d("./ds/sub"), f("./ds/sub/b", "b\n")],
        ],
        layer_check=_names_include("ds/.wh.base", "ds/la", "ds/sub/b", absent=("ds/a", "ds/.wh.a")),
    ),
    Case(
        "implicit_parent_emptied",
        note="a layer writes ip/sub/f with no entry for ip or ip/sub (the engine makes them, mode 0600); "
             "a later layer deletes the file: the two directories stay",
        real=None,
        why_no_real="the engine's differ always writes the parent directories",
        syn=[
            [f("ip/sub/f", "x\n")],
            [wh("ip/sub/f")],
        ],
    ),
    Case(
        "implicit_parent_after_delete",
        note="the range deletes a base directory, then writes a file under it with no entry for the directory",
        real=None,
        why_no_real="the engine's differ always writes the parent directories",
        syn_base=[[d("bx"), f("bx/old", "old\n")]],
        syn=[
            [wh("bx")],
            [f("bx/new", "new\n")],
        ],
    ),
    Case(
        "dir_recreated_xattr",
        note="a base directory with an xattr, deleted and made again without it",
        real=None,
        why_no_real="no xattrs in classic builds (see the xattrs case)",
        syn_base=[[d("cx", xattrs={"security.capability": CAP}), f("cx/old", "old\n")]],
        syn=[
            [wh("cx")],
            [d("cx"), f("cx/new", "new\n")],
        ],
    ),
    # --- size ------------------------------------------------------------------------------
    Case(
        "many_files",
        note="50,000 small files; the second layer deletes 5,000 and rewrites 1,000",
        real="""RUN mkdir /many && cd /many && for d in $(seq 1 50); do mkdir $d \\
    && for i in $(seq 1 1000); do echo $d-$i > $d/$i; done; done
RUN rm -rf /many/1 /many/2 /many/3 /many/4 /many/5 && for i in $(seq 1 1000); do echo new-$i > /many/6/$i; done""",
        syn=[],          # generated: see many_files_layers()
        slow=True,
        layer_check=_names_include("many/50/1000", absent=("many/1", "many/.wh.1")),
    ),
    Case(
        "big_file",
        note="a 300 MB file of random bytes, then made read-only (the layer holds it again)",
        real="""RUN dd if=/dev/urandom of=/big bs=1M count=300 2>/dev/null
RUN chmod 600 /big && echo small > /small""",
        syn=[],          # generated: see big_file_layers()
        slow=True,
    ),
]


def many_files_layers() -> list:
    l1 = [d("many")]
    for dn in range(1, 51):
        l1.append(d(f"many/{dn}"))
        l1 += [f(f"many/{dn}/{i}", f"{dn}-{i}\n") for i in range(1, 1001)]
    l2 = [d("many", mtime=T0 + 1)] + [wh(f"many/{dn}") for dn in range(1, 6)] + [d("many/6", mtime=T0 + 1)]
    l2 += [f(f"many/6/{i}", f"new-{i}\n", mtime=T0 + 1) for i in range(1, 1001)]
    return [l1, l2 + [f("small", "small\n")]]


def big_file_layers() -> list:
    block = os.urandom(1 << 20)
    data = b"".join(block[i:] + block[:i] for i in range(300))   # 300 MB, no two MBs alike
    return [[f("big", data, 0o644)], [f("big", data, 0o600, mtime=T0 + 1), f("small", "small\n")]]


GENERATED = {"many_files": many_files_layers, "big_file": big_file_layers}

BY_NAME = {c.name: c for c in CASES}
