import json

import pytest

from imggit.errors import FormatError
from imggit.model import (
    Config, Image, Layer, Manifest, align, chain_ids, describe_command, human_size, sha256_digest,
)


def diff(n):
    return "sha256:" + f"{n:064x}"


def test_chain_ids_follow_the_spec():
    d = [diff(1), diff(2), diff(3)]
    c = chain_ids(d)
    assert c[0] == d[0]
    assert c[1] == sha256_digest(f"{d[0]} {d[1]}".encode())
    assert c[2] == sha256_digest(f"{c[1]} {d[2]}".encode())


def layers(n):
    ds = [diff(i + 1) for i in range(n)]
    return [Layer(d, c, d, "application/vnd.oci.image.layer.v1.tar", 10) for d, c in zip(ds, chain_ids(ds))]


def test_align_walks_history_and_layers_side_by_side():
    hist = [{"created_by": "a"}, {"created_by": "ENV", "empty_layer": True}, {"created_by": "b"}]
    steps, warns = align(hist, layers(2))
    assert [s.layer_index for s in steps] == [0, None, 1]
    assert steps[1].chain_id == steps[0].chain_id
    assert not warns


def test_align_messy_histories():
    # no history at all: one synthetic step per layer
    steps, warns = align([], layers(2))
    assert len(steps) == 2 and all(s.synthetic for s in steps) and warns
    # more non-empty entries than layers
    steps, warns = align([{"created_by": "a"}, {"created_by": "b"}, {"created_by": "c"}], layers(2))
    assert steps[2].missing_layer and steps[2].layer is None and "more non-empty" in warns[0]
    # fewer: extra layers get extra steps
    steps, warns = align([{"created_by": "a"}], layers(3))
    assert len(steps) == 3 and steps[1].synthetic and "no history entry" in warns[0]


def test_step_ids_are_a_merkle_chain():
    h = [{"created_by": "a"}, {"created_by": "b"}]
    s1, _ = align(h, layers(2))
    s2, _ = align(h[:1], layers(1))
    assert s1[0].step_id == s2[0].step_id
    s3, _ = align([{"created_by": "a"}, {"created_by": "c"}], layers(2))
    assert s3[1].step_id != s1[1].step_id


def test_config_keeps_bytes_and_unknown_fields():
    raw = b'{"os":"linux","architecture":"amd64","x-unknown":{"k":1},"rootfs":{"type":"layers","diff_ids":[]}}'
    c = Config.parse(raw)
    assert c.raw == raw and c.digest == sha256_digest(raw)
    c2 = c.replace(created="2024-01-01T00:00:00Z")
    assert json.loads(c2.raw)["x-unknown"] == {"k": 1}


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"rootfs": 3}', b'{"rootfs":{"diff_ids":["nope"]}}',
                                 b'{"history": {}}'])
def test_config_rejects_garbage(raw):
    with pytest.raises(FormatError):
        Config.parse(raw)


def test_manifest_parse_errors():
    with pytest.raises(FormatError, match="index"):
        Manifest.parse(b'{"schemaVersion":2,"manifests":[]}')
    with pytest.raises(FormatError, match="schema 1"):
        Manifest.parse(b'{"schemaVersion":1,"fsLayers":[]}')
    with pytest.raises(FormatError, match="size"):
        Manifest.parse(b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"' + diff(1).encode()
                       + b'","size":-1},"layers":[]}')


def test_layer_count_mismatch_is_reported():
    cfg = Config.from_data({"rootfs": {"type": "layers", "diff_ids": [diff(1)]}, "history": []})
    m = Manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": {"mediaType": "x", "digest": cfg.digest, "size": len(cfg.raw)},
                                   "layers": []}).encode())
    with pytest.raises(FormatError, match="malformed"):
        Image.assemble(cfg, m)


@pytest.mark.parametrize("created_by,expect", [
    ('/bin/sh -c #(nop)  CMD ["sh"]', 'CMD ["sh"]'),
    ("/bin/sh -c apt-get update", "RUN apt-get update"),
    ("RUN /bin/sh -c make # buildkit", "RUN make"),
    ("|2 A=1 B=2 /bin/sh -c make", "RUN make"),
    ("COPY . /app # buildkit", "COPY . /app"),
    ("", ""),
])
def test_describe_command(created_by, expect):
    assert describe_command(created_by) == expect


def test_human_size():
    assert human_size(0) == "0 B" and human_size(1500) == "1.5 kB" and human_size(None) == "?"
