"""The engine's save stream, both shapes, parsed by the daemon store (engine API faked: pure parsing)."""

import io
import json

from imggit.layers import build as b
from imggit.model import Config, Image, Layer, chain_ids, DOCKER_LAYER
from imggit.stores.archive import ArchiveWriter, docker_archive_members
from imggit.stores.base import LayerInput, WriteRequest
from imggit.stores.daemon import DockerDaemon


def make_image():
    layers = [b.make_layer([b.file("a", "1" * 3000)]), b.make_layer([b.file("b", "2" * 5000)]),
              b.make_layer([b.file("c", "3")])]
    steps = [b.StepSpec(f"s{i}", l) for i, l in enumerate(layers)]
    cfg = b.image_config(steps)
    ds = cfg.diff_ids
    img = Image.assemble(cfg, None, [Layer(d, c, d, DOCKER_LAYER, None) for d, c in zip(ds, chain_ids(ds))],
                         name="x:1")
    return img, layers


class FakeAPI:
    def __init__(self, data):
        self.data = data
        self.calls = 0

    def get_image(self, ref, chunk_size=0):
        self.calls += 1
        data = self.data
        return iter([data[i:i + 777] for i in range(0, len(data), 777)])


def docker25(img, layers):
    buf = io.BytesIO()
    out = ArchiveWriter(None, stream=buf)
    inputs = [LayerInput(l, (lambda d=d: io.BytesIO(d))) for l, d in zip(img.layers, layers)]
    docker_archive_members(WriteRequest(img.config, inputs, "x:1"), "x:1", out)
    out.finish()
    return buf.getvalue()


def legacy(img, layers):
    entries = []
    ids = []
    for i, data in enumerate(layers):
        v1 = f"{i:064x}"[::-1]
        ids.append(v1)
        entries += [b.directory(v1), b.file(f"{v1}/VERSION", "1.0"), b.file(f"{v1}/json", "{}"),
                    b.file(f"{v1}/layer.tar", data)]
    hexid = img.id[7:]
    entries.append(b.file(f"{hexid}.json", img.config.raw))
    entries.append(b.file("manifest.json", json.dumps([{"Config": f"{hexid}.json", "RepoTags": ["x:1"],
                                                        "Layers": [f"{v}/layer.tar" for v in ids]}])))
    return b.make_layer(sorted(entries, key=lambda e: e.path))


def daemon_with(data):
    d = DockerDaemon("unix:///nonexistent")
    d._api = FakeAPI(data)
    d._info = {"Driver": "vfs", "DockerRootDir": "/nonexistent"}
    return d


def test_docker25_stream_spools_only_wanted_layers(tmp_path):
    img, layers = make_image()
    d = daemon_with(docker25(img, layers))
    files = d.spool_layers(img, [1], str(tmp_path))
    assert list(files) == [1]
    assert open(files[1].path, "rb").read() == layers[1]
    assert [m.path for m in files[1].members] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"layer-1-{img.layers[1].diff_id[7:19]}.tar"]


def test_legacy_stream_hashes_to_find_layers(tmp_path):
    img, layers = make_image()
    d = daemon_with(legacy(img, layers))
    files = d.spool_layers(img, [0, 2], str(tmp_path))
    assert open(files[0].path, "rb").read() == layers[0]
    assert open(files[2].path, "rb").read() == layers[2]
    assert len(list(tmp_path.iterdir())) == 2  # the unwanted layer was not kept


def test_exact_config_from_the_stream():
    img, layers = make_image()
    rebuilt = Image(Config.from_data({"rebuilt": True, "rootfs": {"type": "layers", "diff_ids": img.config.diff_ids}}),
                    None, img.layers, img.steps, (), "x:1", "", {"id": img.id, "reconstructed": True})
    for data in (docker25(img, layers), legacy(img, layers)):
        d = daemon_with(data)
        assert d.raw_config(rebuilt) == img.config.raw
