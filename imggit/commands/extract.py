"""extract: an image's filesystem, or one layer's files, into a directory."""

from __future__ import annotations

import json

import click

from ..cli import CONTEXT, _ctx, main, out, warn


_ORDER = ("files", "directories", "symlinks", "hardlinks", "fifos", "devices")


def _count(n: int, plural: str) -> str:
    one = "directory" if plural == "directories" else plural[:-1]
    return f"{n} {one if n == 1 else plural}"


@main.command(context_settings=CONTEXT)
@click.argument("ref", metavar="REF")
@click.argument("dest", metavar="DEST")
@click.option("--layer", "layer", metavar="~N", help="Only one layer: ~0 is REF's top layer, ~1 the one below "
              "it (counted in layers, as --layers counts; quote it: '~1').")
@click.option("--layer-only", is_flag=True, help="Only REF's top layer (same as --layer '~0').")
@click.option("--devices", is_flag=True, help="Create device nodes too (only as root).")
@click.option("-f", "--force", is_flag=True, help="Write into DEST even if it is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary on stdout.")
def extract(ref: str, dest: str, layer: str | None, layer_only: bool, devices: bool, force: bool,
            as_json: bool) -> None:
    """Write the filesystem of REF (or one of its layers) into DEST.

    By default the layers of REF are applied in order, as the engine applies
    them: DEST gets what `docker export` of a container of REF holds. With
    --layer-only or --layer ~N only that layer's files are written, and its
    whiteouts (deletions) are listed on stdout, not created. Only the layers
    needed are read: from a registry, only their blobs are downloaded.

    Nothing is written outside DEST: names that are absolute or contain
    '..', entries below a symlink, hardlinks to anything outside DEST, and
    device nodes (unless --devices, as root) are refused. Each refused entry
    is one warning on stderr; the exit code stays 0 and the last line counts
    them (--json lists them). Modes, times, symlinks, hardlinks, fifos and
    user.* xattrs are restored; owners, devices and other xattrs as root.
    DEST must be empty (or missing) unless --force.

    \b
    Examples:
      imggit extract app:1 ./rootfs                       the whole filesystem
      imggit extract --layer-only app:1 ./top             what the last layer adds
      imggit extract --layer '~2' docker://reg/app:1 ./l  one layer, one blob downloaded
      imggit extract app:1~3 ./then                       the filesystem three steps back
    """
    from ..model import human_size
    from ..ops import extract as op
    from ..render import step_text

    c = _ctx()
    res = op.extract(c.session, ref, dest, layer=layer, layer_only=layer_only, devices=devices, force=force)
    st = res.stats
    for r in st.refused:
        warn(f"refused {r.name}: {r.reason}")
    if as_json:
        out(json.dumps({
            "ref": res.source.describe(), "dest": res.dest, "mode": res.mode,
            "layers": [{"index": i, "diff_id": res.source.image.layers[i].diff_id,
                        "digest": res.source.image.layers[i].digest} for i in res.layers],
            "entries": dict(st.counts), "bytes": st.bytes,
            "whiteouts": [{"kind": k, "path": p} for k, p in st.whiteouts],
            "refused": [{"name": r.name, "reason": r.reason} for r in st.refused],
            "not_restored": dict(st.not_restored),
        }, indent=2))
        return
    for kind, path in st.whiteouts:
        out(f"{kind:<8} {path}")
    src = res.source.describe()
    if res.mode == "layer":
        i = res.layers[0]
        what = f"layer {i + 1}/{len(res.source.image.layers)} of {src}"
        if res.step is not None:
            what += f" (step {res.step.index + 1}: {step_text(res.step)[:60]})"
    else:
        what = f"{src} ({_count(len(res.layers), 'layers')} merged)"
    kinds = ", ".join(_count(st.counts[k], k) for k in _ORDER if st.counts[k])
    summary = f"extracted {what} into {res.dest}: {kinds or 'nothing'}, {human_size(st.bytes)}"
    if st.whiteouts:
        summary += f"; {_count(len(st.whiteouts), 'whiteouts')} listed, not applied"
    store, image = res.source.store, res.source.image
    if store.remote:
        size = sum(image.layers[i].size or 0 for i in res.layers)
        click.echo(f"downloaded {_count(len(res.layers), 'layers')} of {len(image.layers)} ({human_size(size)}) "
                   f"from {store.describe()}", err=True)
    click.echo(summary, err=True)
    if st.not_restored:
        warn("not restored (not root, or the filesystem refused): "
             + ", ".join(f"{k} x{n}" for k, n in sorted(st.not_restored.items())))
    if st.refused:
        warn(f"{len(st.refused)} entr{'y' if len(st.refused) == 1 else 'ies'} refused (listed above); "
             "nothing was written outside the target")
