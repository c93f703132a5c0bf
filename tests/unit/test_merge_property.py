"""Merging is exact: random layer stacks, checked against an independent reference applier.

For each random case: apply(base + range) == apply(base + merge(range)), for every path,
type, mode, owner, mtime, xattr, symlink target, content and hardlink group.
"""

from __future__ import annotations

import copy
import io
import random

import pytest

from imggit.layers import build as b
from imggit.layers import merge, tarfmt
from refapply import Tree, apply_all

NAMES = ["a", "b", "c", "d.wh.e", ".wh-x"]


def members(data: bytes):
    return list(tarfmt.TarReader(io.BytesIO(data)))


def merged_bytes(plan: merge.MergePlan, layers: list[bytes], tmp_path, base: list[bytes] = ()) -> bytes:
    files = []
    for i, data in enumerate(list(layers) + [base[k] for k in plan.base_sources]):
        p = tmp_path / f"l{i}.tar"
        p.write_bytes(data)
        files.append(str(p))
    out = io.BytesIO()
    merge.write_merged(plan, files, out)
    assert len(out.getvalue()) == plan.output_size()
    return out.getvalue()


def random_layer(rng: random.Random, tree: Tree, k: int, frozen: set[int] = frozenset()) -> bytes:
    listing, _ = tree.listing()
    existing = list(listing)
    dirs = [p for p, v in listing.items() if v[0] == "dir"]
    pre: list[b.Entry] = []
    # whiteouts of existing or made-up paths, opaque markers on existing directories
    for _ in range(rng.randint(0, 2)):
        w = b.whiteout(rng.choice(existing) if existing and rng.random() < 0.8 else rng.choice(NAMES))
        if all(w.path != x.path for x in pre):
            pre.append(w)
    whited = set()
    for e in pre:
        parent, _, name = e.path.rpartition("/")
        whited.add((parent + "/" if parent else "") + name[len(".wh."):])
    if dirs and rng.random() < 0.3:
        d = rng.choice(dirs)
        # real layers never whiteout a directory and mark it opaque in the same layer
        if not any(d == w or d.startswith(w + "/") for w in whited):
            pre.append(b.opaque(d))
    entries: dict[str, b.Entry] = {}
    nondirs: set[str] = set()
    for _ in range(rng.randint(1, 6)):
        depth = rng.randint(1, 3)
        parts = [rng.choice(NAMES[:3]) for _ in range(depth)]
        if any("/".join(parts[:i]) in nondirs for i in range(1, depth)):
            continue
        for i in range(1, depth):   # parents in this layer are directories
            q = "/".join(parts[:i])
            entries.setdefault(q, b.directory(q, rng.choice([0o755, 0o700]), mtime=k))
        p = "/".join(parts)
        if p in entries:
            continue
        kind = rng.choice(["file", "file", "file", "dir", "symlink", "fifo"])
        if kind != "dir" and any(q.startswith(p + "/") for q in entries):
            kind = "dir"
        if kind == "file":
            entries[p] = b.file(p, f"{p}@{k}:{rng.random()}", rng.choice([0o644, 0o4755, 0o600]),
                                uid=rng.choice([0, 1000]), mtime=1000 + k,
                                xattrs={"user.k": str(k)} if rng.random() < 0.2 else {})
            nondirs.add(p)
        elif kind == "dir":
            entries[p] = b.directory(p, rng.choice([0o755, 0o1777]), uid=rng.choice([0, 7]), mtime=k)
        elif kind == "symlink":
            entries[p] = b.symlink(p, rng.choice(["a", "../b", "/c/x"]), mtime=k)
            nondirs.add(p)
        else:
            entries[p] = b.fifo(p, mtime=k)
            nondirs.add(p)
    ordered = [entries[p] for p in sorted(entries, key=lambda p: p.split("/"))]
    body = pre + ordered
    # hardlinks last, to files that exist once the rest of the layer is applied
    memo: dict = {}
    probe = copy.deepcopy(tree, memo)
    frozen_probe = {id(memo[i]) for i in frozen if i in memo}
    probe.apply(b.make_layer(body))
    plist, _ = probe.listing()
    # (a link into the kept base whose target the range then changes is refused: tested apart)
    files = [p for p, v in plist.items() if v[0] == "file" and id(probe.lookup(p).inode) not in frozen_probe]
    links = []
    taken = set(entries)
    for _ in range(rng.randint(0, 2)):
        if not files:
            break
        t = rng.choice(files)
        p = rng.choice(NAMES[:3]) + "-link" + str(len(links))
        if p in taken or p in plist:
            continue
        tnode = probe.lookup(t)
        mode, uid, gid, mtime, xattrs, _ = tnode.inode.meta
        links.append(b.hardlink(p, t, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=dict(xattrs)))
        taken.add(p)
    return b.make_layer(body + links)


def base_inodes(tree: Tree) -> set[int]:
    listing, _ = tree.listing()
    return {id(tree.lookup(p).inode) for p, v in listing.items() if v[0] == "file"}


def check(base: list[bytes], rng_layers: list[bytes], tmp_path, base_known: bool = True) -> merge.MergePlan:
    want, want_groups = apply_all(base + rng_layers).listing()
    view = merge.base_view([members(x) for x in base]) if base_known else merge.BaseView(None)
    plan = merge.plan_merge([members(x) for x in rng_layers], view)
    out = merged_bytes(plan, rng_layers, tmp_path, base)
    got, got_groups = apply_all(base + [out]).listing()
    diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
    assert not diff, diff
    assert want_groups == got_groups
    # the merged layer itself is a valid layer: no duplicate paths
    paths = [m.path for m in members(out)]
    assert len(paths) == len(set(paths))
    return plan


@pytest.mark.parametrize("seed", range(int(__import__("os").environ.get("IMGGIT_MERGE_SEEDS", "400"))))
def test_random_stacks(seed, tmp_path):
    rng = random.Random(seed)
    tree = Tree()
    layers = []
    n = rng.randint(2, 6)
    split = rng.randint(0, n - 1)
    base_known = rng.random() < 0.7
    frozen: set[int] = set()
    for k in range(n):
        if k == split and not base_known:
            # without the base's file list, links into the base that the range then changes are refused
            frozen = base_inodes(tree)
        data = random_layer(rng, tree, k, frozen)
        tree.apply(data)
        layers.append(data)
    check(layers[:split], layers[split:], tmp_path, base_known=base_known)


def test_link_into_the_base(tmp_path):
    base = [b.make_layer([b.file("t", "base content")])]
    # the target stays as it is: the link is kept as a link into the base
    check(base, [b.make_layer([b.hardlink("l", "t")]), b.make_layer([b.file("x", "x")])], tmp_path)
    # the range changes the target afterwards: the link keeps the base's bytes, read from the base layer
    plan = check(base, [b.make_layer([b.hardlink("l", "t"), b.hardlink("l2", "t")]),
                        b.make_layer([b.file("t", "new")])], tmp_path)
    assert plan.base_sources == [0] and plan.base_links == ["l"]
    assert plan.base_file_bytes == len("base content") and plan.dropped_bytes == 0
    # or deletes it, or hides it under a deleted directory; a link in the base counts as its target
    base2 = [b.make_layer([b.directory("d"), b.file("d/t", "old bytes"), b.hardlink("u", "d/t")]),
             b.make_layer([b.file("other", "o")])]
    check(base2, [b.make_layer([b.hardlink("l", "u")]), b.make_layer([b.whiteout("u")])], tmp_path)
    check(base2, [b.make_layer([b.hardlink("l", "d/t")]), b.make_layer([b.whiteout("d")])], tmp_path)
    # without the base's file list, nothing says where the bytes are: refused, clearly
    from imggit.errors import ImggitError

    with pytest.raises(ImggitError, match="cannot squash this range") as e:
        merge.plan_merge([members(b.make_layer([b.hardlink("l", "t")])), members(b.make_layer([b.file("t", "new")]))],
                         merge.BaseView(None))
    assert "lower base" in (e.value.hint or "")


def test_whiteout_of_a_range_only_path_is_dropped(tmp_path):
    base = [b.make_layer([b.file("keep", "k")])]
    rng = [b.make_layer([b.file("tmp", "t")]), b.make_layer([b.whiteout("tmp")])]
    plan = check(base, rng, tmp_path)
    assert plan.kept_whiteouts == 0 and plan.dropped_whiteouts == 1


def test_whiteout_of_a_base_path_is_kept_before_recreation(tmp_path):
    base = [b.make_layer([b.directory("d"), b.file("d/old", "o"), b.file("f", "base")])]
    rng = [b.make_layer([b.whiteout("f"), b.whiteout("d")]),
           b.make_layer([b.directory("d"), b.file("d/new", "n")])]
    plan = check(base, rng, tmp_path)
    kinds = [(e.path, e.kind) for e in plan.entries]
    assert (".wh.f", "whiteout") in kinds
    # a deleted and re-created directory: the old one goes (xattrs and all) right before the new one
    assert kinds.index((".wh.d", "whiteout")) + 1 == kinds.index(("d", "header")) < kinds.index(("d/new", "raw"))
    assert ("d/.wh..wh..opq", "opaque") not in kinds


def test_hardlink_whose_target_is_replaced_then_deleted(tmp_path):
    base = [b.make_layer([b.directory("x")])]
    rng = [b.make_layer([b.file("t", "v1"), b.hardlink("l", "t")]),
           b.make_layer([b.file("t", "v2")]),
           b.make_layer([b.whiteout("t"), b.hardlink("m", "l")])]
    plan = check(base, rng, tmp_path)
    assert plan.output_file_bytes == 2  # v1 once, for l and m


def test_file_to_dir_and_back(tmp_path):
    base = [b.make_layer([b.directory("p"), b.file("p/child", "c"), b.file("q", "q")])]
    rng = [b.make_layer([b.file("p", "now a file"), b.directory("q"), b.file("q/in", "i")]),
           b.make_layer([b.directory("p"), b.file("p/again", "a")])]
    check(base, rng, tmp_path)


def test_opaque_over_base_and_meta_only_changes(tmp_path):
    base = [b.make_layer([b.directory("etc"), b.file("etc/a", "a"), b.file("etc/b", "b"),
                          b.file("bin/sh", "sh", 0o755)])]
    rng = [b.make_layer([b.directory("etc"), b.opaque("etc"), b.file("etc/c", "c")]),
           b.make_layer([b.file("bin/sh", "sh", 0o4755, uid=5, gid=6)])]
    check(base, rng, tmp_path)


def test_long_and_unicode_names(tmp_path):
    long = "l" * 120 + "/" + "m" * 200
    rng = [b.make_layer([b.file(long, "x"), b.file("ünï/код/名前", "u"), b.symlink("s" * 150, "t" * 300)]),
           b.make_layer([b.whiteout("ünï/код/名前"), b.file("ünï/код/other", "o")])]
    check([], rng, tmp_path)


def test_dot_slash_names_are_normalized(tmp_path):
    rng = [b.make_layer([b.Entry("./a/", tarfmt.DIRECTORY), b.Entry("./a/f", data=b"1")]),
           b.make_layer([b.file("a/f", "2")])]
    plan = check([], rng, tmp_path)
    assert all(not e.path.startswith("./") for e in plan.entries)


def test_dangling_hardlink_is_an_error():
    from imggit.errors import FormatError

    with pytest.raises(FormatError, match="does not exist"):
        merge.plan_merge([members(b.make_layer([b.hardlink("l", "nope")]))], merge.EMPTY_BASE)
