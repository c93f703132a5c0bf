import gzip
import io

import zstandard

from imggit.layers.compress import compressor, open_decompressed, sniff


def test_sniff_and_roundtrip():
    data = b"hello world" * 1000
    for codec in ("gzip", "zstd", None):
        out = io.BytesIO()
        w = compressor(out, codec)
        w.write(data)
        w.close()
        blob = out.getvalue()
        assert sniff(blob) == codec
        stream, found = open_decompressed(io.BytesIO(blob))
        assert found == codec and stream.read() == data


def test_gzip_is_deterministic_and_standard():
    data = bytes(range(256)) * 5000
    outs = []
    for _ in range(2):
        out = io.BytesIO()
        w = compressor(out, "gzip")
        w.write(data)
        w.close()
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    assert gzip.decompress(outs[0]) == data
    assert outs[0][4:8] == b"\0\0\0\0"  # no timestamp in the gzip header


def test_reads_whatever_the_label_says():
    plain = b"x" * 600
    gz = gzip.compress(plain)
    assert open_decompressed(io.BytesIO(gz))[0].read() == plain
    zs = zstandard.ZstdCompressor().compress(plain)
    assert open_decompressed(io.BytesIO(zs))[0].read() == plain
