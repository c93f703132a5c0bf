"""``imggit extract`` from a registry downloads the blobs of the layers it writes, and no other."""

from __future__ import annotations

import os

import pytest

from registry_helpers import push_random, random_steps, unique
from traffic import traffic

pytestmark = pytest.mark.registry


def test_one_layer_downloads_only_that_blob(cli, home, registry, proxy, tmp_path, request):
    repo = unique(request)
    img = push_random(registry.addr, repo, "1", "extract-one", layers=3, size=300_000).image
    ref = f"docker://{proxy.addr}/{repo}:1"
    r = cli("extract", "--layer", "~1", ref, str(tmp_path / "one"))
    assert r.code == 0, r
    t = traffic(proxy)
    layer = img.layers[1]
    assert t.downloaded() == {img.config.digest, layer.digest}, t.downloads
    assert len(t.downloads) == 2                                  # each blob once
    assert proxy.blob_bytes == len(img.config.raw) + layer.size
    assert sorted(os.listdir(tmp_path / "one" / "data")) == ["part1"]
    data = random_steps("extract-one", 3, 300_000)[2].layer     # the bytes pushed as layer 1
    assert (tmp_path / "one" / "data" / "part1").read_bytes() in data


def test_past_step_merged_downloads_only_its_layers(cli, home, registry, proxy, tmp_path, request):
    repo = unique(request)
    img = push_random(registry.addr, repo, "1", "extract-past", layers=3, size=100_000).image
    r = cli("extract", f"docker://{proxy.addr}/{repo}:1~2", str(tmp_path / "past"))   # steps: L0, ENV
    assert r.code == 0, r
    assert traffic(proxy).downloaded() == {img.config.digest, img.layers[0].digest}
    assert os.listdir(tmp_path / "past" / "data") == ["part0"]
    before = len(proxy.requests())
    r = cli("extract", f"docker://{proxy.addr}/{repo}:1", str(tmp_path / "all"))
    assert r.code == 0, r
    assert traffic(proxy, before).downloaded() == {img.config.digest} | {l.digest for l in img.layers}
    assert sorted(os.listdir(tmp_path / "all" / "data")) == ["part0", "part1", "part2"]
