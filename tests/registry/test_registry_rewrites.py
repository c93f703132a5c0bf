"""Rewrites inside a registry move only what they must (counted through the proxy):

- ``rebase --no-check`` between repositories: no layer downloaded or uploaded; the new base's layers are
  mounted across repositories; one config and a manifest are written;
- ``tag docker://…~N NAME``: one config and a manifest; no blob downloaded, uploaded or mounted;
- ``squash docker://…``: only the range's layers downloaded; only the merged layer and a config uploaded.
"""

from __future__ import annotations

import os
import random

import pytest

from fsutil import listing_from_dir

from imggit.layers import build as b
from imggit.session import Session
from imggit.validate import validate
from registry_helpers import unique
from traffic import traffic

pytestmark = pytest.mark.registry


def layer(seed: str, name: str, size: int = 150_000) -> bytes:
    data = random.Random(seed + name).randbytes(size)
    return b.make_layer([b.directory("data"), b.file(f"data/{name}", data)])


def steps(seed: str):
    base1 = [b.StepSpec("RUN base a", layer(seed, "a")), b.StepSpec("ENV B=1"),
             b.StepSpec("RUN base b", layer(seed, "b"))]
    base2 = [b.StepSpec("RUN base a", layer(seed, "a2")), b.StepSpec("ENV B=2"),
             b.StepSpec("RUN base b", layer(seed, "b2"))]
    own = [b.StepSpec("RUN app x", layer(seed, "x")),
           b.StepSpec("RUN app y; rm data/a data/x", b.make_layer([b.directory("data"), b.whiteout("data/a"),
                                                                   b.whiteout("data/x"), b.file("data/y", seed)])),
           b.StepSpec('CMD ["app"]')]
    return base1, base2, base1 + own


@pytest.fixture
def repos(registry, home, request):
    """base:1, base:2 and app:1 (on base:1) pushed by "someone else" (straight to the registry, not the proxy)."""
    u = unique(request)
    base, app = f"{u}-base", f"{u}-app"
    s = Session()
    base1, base2, app1 = steps(u)
    st_base = s.store("docker", f"{registry.addr}/{base}")
    out = {"base": base, "app": app,
           "base1": b.write_image(st_base, "1", base1, {"Cmd": ["sh"]}).image,
           "base2": b.write_image(st_base, "2", base2, {"Cmd": ["sh"], "Env": ["B=2"]}).image,
           "app1": b.write_image(s.store("docker", f"{registry.addr}/{app}"), "1", app1, {"Cmd": ["app"]}).image}
    s.close()
    return out


def result(registry, repo: str, tag: str):
    st = Session().store("docker", f"{registry.addr}/{repo}")
    img = st.get(tag)
    assert validate(st, img).ok
    return img


def test_rebase_no_check_moves_no_layer(cli, repos, registry, proxy):
    p, base, app = proxy.addr, repos["base"], repos["app"]
    r = cli("rebase", "--no-check", "--onto", f"docker://{p}/{base}:2", f"docker://{p}/{base}:1",
            f"docker://{p}/{app}:1", "-t", f"docker://{p}/{app}:rebased")
    assert r.code == 0, r
    t = traffic(proxy)
    configs = {repos[k].config.digest for k in ("base1", "base2", "app1")}
    assert t.downloaded() <= configs, t.downloads                      # configs and manifests only
    new = result(registry, app, "rebased")
    assert t.uploaded == [new.config.digest]                           # one blob written: the config
    assert t.upload_bytes == len(new.config.raw)
    assert sorted(t.mounts) == sorted(l.digest for l in repos["base2"].layers)   # the new base, mounted
    assert [l.digest for l in new.layers] == [l.digest for l in repos["base2"].layers] + \
        [l.digest for l in repos["app1"].layers[2:]]
    assert "rebased" in t.manifests


def test_tag_past_step_writes_a_config_and_a_manifest(cli, repos, registry, proxy):
    p, app = proxy.addr, repos["app"]
    r = cli("tag", f"docker://{p}/{app}:1~2", "past")
    assert r.code == 0, r
    t = traffic(proxy)
    assert t.downloaded() <= {repos["app1"].config.digest}, t.downloads
    new = result(registry, app, "past")
    assert t.uploaded == [new.config.digest] and t.upload_bytes == len(new.config.raw)
    assert t.mounts == [] and "past" in t.manifests
    assert [l.digest for l in new.layers] == [l.digest for l in repos["app1"].layers[:3]]
    assert len(new.config.history) == 4


def test_squash_downloads_the_range_and_uploads_one_layer(cli, repos, registry, proxy, tmp_path):
    p, app = proxy.addr, repos["app"]
    r = cli("squash", f"docker://{p}/{app}:1~3..docker://{p}/{app}:1", "-t", f"docker://{p}/{app}:sq")
    assert r.code == 0, r
    t = traffic(proxy)
    old = repos["app1"]
    layers = {l.digest for l in old.layers[2:]}                        # the range: app x, app y
    assert t.downloaded() == layers | {old.config.digest}, t.downloads
    assert len([d for _, d in t.downloads if d in layers]) == 2         # each once
    new = result(registry, app, "sq")
    merged = new.layers[2]
    assert sorted(t.uploaded) == sorted([merged.digest, new.config.digest])
    assert t.upload_bytes == merged.size + len(new.config.raw)
    assert [l.digest for l in new.layers[:2]] == [l.digest for l in old.layers[:2]]
    assert len(new.layers) == 3
    # the same filesystem (the base was not read, so the whiteout of its data/a is kept in the merged layer)
    for tag in ("1", "sq"):
        assert cli("extract", f"docker://{registry.addr}/{app}:{tag}", str(tmp_path / tag)).code == 0
    assert listing_from_dir(str(tmp_path / "1")) == listing_from_dir(str(tmp_path / "sq"))
    assert sorted(os.listdir(tmp_path / "sq" / "data")) == ["b", "y"]


def test_rebase_all_images_of_a_repository(cli, repos, registry, proxy):
    """--all over a registry repository: every image built on base:1, still without moving a layer."""
    p, base, app = proxy.addr, repos["base"], repos["app"]
    r = cli("rebase", "--no-check", "--onto", f"docker://{p}/{base}:2", "--from", f"docker://{p}/{base}:1", "--all",
            f"docker://{p}/{app}")
    assert r.code == 0, r
    assert f"{p}/{app}:1" in r.out and "failed" not in r.out
    t = traffic(proxy)
    assert t.downloaded() <= {repos[k].config.digest for k in ("base1", "base2", "app1")}, t.downloads
    new = result(registry, app, "1")
    assert t.uploaded == [new.config.digest]
    assert [l.digest for l in new.layers[:2]] == [l.digest for l in repos["base2"].layers]
