"""``imggit extract`` judged by the real engine.

The squash matrix's cases (``tests/squash/squash_cases.py``: whiteouts, opaque
directories, type swaps, symlinked parents, hardlinks across layers, devices,
xattrs, setuid/sticky, long and non-ASCII names...) are built the same way,
by the classic builder and as exact synthetic layers loaded into the engine.
Then:

- the merged extraction of ``docker-daemon:IMAGE`` (as root, ``--devices``)
  gives the same listing as ``docker export`` of a container of it: every
  path, type, mode, owner, mtime, symlink target, device number, content
  hash, the xattr the export shows (``security.capability``) and the same
  hardlink groups;
- for the cases the squash matrix also judges with ``umoci unpack``, the
  extraction of the image copied into an OCI layout equals umoci's, every
  xattr included;
- ``--layer-only`` of a built image gives exactly the non-whiteout entries of
  its top layer (from ``docker save``), and lists exactly its whiteouts.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from fsutil import diff_listings, hardlink_groups_from_dir, listing_from_dir, listing_from_tar, tar_members

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "squash"))

from squash_cases import CASES  # noqa: E402
from test_exact_engine import Docker, Images, _forms, _umoci  # noqa: E402

pytestmark = pytest.mark.engine

FAST = [c for c in CASES if not c.slow]
FORMS = _forms(FAST)


@pytest.fixture(scope="module")
def images(engine, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("comparing owners and devices with docker export needs root")
    imgs = Images(Docker(engine), str(tmp_path_factory.mktemp("extract")))
    imgs.start(FAST)
    yield imgs
    imgs.close()


@pytest.mark.parametrize("case,kind", FORMS, ids=[f"{c.name}-{k}" for c, k in FORMS])
def test_merged_extraction_equals_docker_export(case, kind, images, with_engine, cli, tmp_path):
    img = images.get(kind, case)
    dest = tmp_path / "rootfs"
    r = cli("extract", "--devices", f"docker-daemon:{img.tag}", str(dest))
    assert r.code == 0, r
    assert "refused" not in r.err and r.out == "", r.err
    got = exported_xattrs_only(listing_from_dir(str(dest)))
    diff = diff_listings(img.fs.listing, got, limit=40)
    assert not diff, f"{kind} {case.name}: docker export != extract:\n" + "\n".join(diff)
    assert hardlink_groups_from_dir(str(dest)) == img.fs.groups


def exported_xattrs_only(listing):
    """The listing as ``docker export`` can show it: of the xattrs, only security.capability."""
    return {p: v[:7] + (tuple(x for x in v[7] if x[0] == "security.capability"),) + v[8:] for p, v in listing.items()}


OCI = [(c, k) for c, k in FORMS if c.oci]


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
@pytest.mark.parametrize("case,kind", OCI, ids=[f"{c.name}-{k}" for c, k in OCI])
def test_merged_extraction_equals_umoci_unpack(case, kind, images, with_engine, cli, tmp_path):
    img = images.get(kind, case)
    layout = str(tmp_path / "layout")
    assert cli("cp", img.tag, f"oci:{layout}:orig").code == 0
    want = _umoci(layout, "orig", str(tmp_path / "umoci"))
    r = cli("extract", "--devices", f"oci:{layout}:orig", str(tmp_path / "rootfs"))
    assert r.code == 0 and "refused" not in r.err, r
    got = listing_from_dir(str(tmp_path / "rootfs"))
    diff = diff_listings(want.listing, got, limit=40)
    assert not diff, f"{kind} {case.name}: umoci unpack != extract:\n" + "\n".join(diff)
    assert hardlink_groups_from_dir(str(tmp_path / "rootfs")) == want.groups
    if case.name == "xattrs":
        assert ("user.k", "v") in got["xa/f"][7] and ("user.dir", "yes") in got["xa/d"][7]


REAL_TOP = [c for c, k in FORMS if k == "real"][:12]


@pytest.mark.parametrize("case", REAL_TOP, ids=[c.name for c in REAL_TOP])
def test_top_layer_alone_is_the_layer_minus_its_whiteouts(case, images, with_engine, cli, tmp_path):
    img = images.get("real", case)
    out, tars = images.docker.layer_tars(img.tag, str(tmp_path))
    top = tars[-1]
    dest = tmp_path / "top"
    r = cli("extract", "--layer-only", "--devices", f"docker-daemon:{img.tag}", str(dest))
    assert r.code == 0 and "refused" not in r.err, r
    members = tar_members(top)
    want_wh = sorted(f"opaque   /{m.parent}/" if m.is_opaque else f"deleted  /{m.whiteout_target}"
                     for m in members if m.is_whiteout or m.is_opaque)
    assert sorted(r.out.splitlines()) == want_wh
    want = {p: v for p, v in listing_from_tar(top, ignore=set()).items() if "/.wh." not in "/" + p}
    got = listing_from_dir(str(dest), ignore=set())
    diff = diff_listings(want, got, limit=40)
    assert not diff, f"{case.name}: top layer != extract --layer-only:\n" + "\n".join(diff)
