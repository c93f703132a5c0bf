"""cp: copy an image between stores."""

from __future__ import annotations

import click

from ..cli import CONTEXT, _ctx, main, out, style, warn  # noqa: F401

# --- cp --------------------------------------------------------------------------------

_COMPRESS = click.Choice(["auto", "gzip", "zstd", "none"])


@main.command(context_settings=CONTEXT)
@click.argument("src")
@click.argument("dst")
@click.option("--compress", type=_COMPRESS, default="auto", show_default=True,
              help="Compression for layers that arrive uncompressed (auto: gzip for OCI layouts and "
                   "archives, none for the engine and docker archives). Compressed layers are never "
                   "recompressed.")
@click.option("--compress-level", type=int, default=None, help="Codec level (gzip 0-3 with ISA-L, zstd 1-19).")
def cp(src: str, dst: str, compress: str, compress_level: int | None) -> None:
    """Copy an image from one store to another.

    Layers the destination already has are not copied again; the config
    (and the manifest, where the layers did not change) keep their exact
    bytes, so the image id and digest stay the same.

    \b
    Examples:
      imggit cp app:1 oci:./out:app
      imggit cp oci:./out:app docker-daemon:app:copy
      imggit cp docker-archive:app.tar embedded:app:1
    """
    from ..model import human_size, short
    from ..ops import copy

    c = _ctx()
    res = copy.copy(c.session, src, dst, compress=None if compress == "none" else compress,
                    level=compress_level)
    r = res.result
    img = r.image
    target = res.dest.describe()
    click.echo(f"copied {res.source.text} to {target}" + (f" as {img.name}" if img.name else "")
               + f": {r.written_blobs} layer(s) written ({human_size(r.written_bytes)}), "
               + f"{len(img.layers) - r.written_blobs} already there", err=True)
    if r.previous and r.previous != img.id:
        click.echo(f"{img.name} moved from {short(r.previous)} (the old image is still there by id)", err=True)
    out(img.id)


