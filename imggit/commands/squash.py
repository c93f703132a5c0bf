"""squash: merge a range of steps into one layer."""

from __future__ import annotations

import click

from ..cli import CONTEXT, _ctx, main, out


@main.command(context_settings=CONTEXT, short_help="Merge a range of steps into one layer.")
@click.argument("range_", metavar="RANGE")
@click.option("-t", "--tag", metavar="NAME", help="Write the result under this name (any store, e.g. "
              "oci:out:app). Default: the image's own tag moves to the result.")
@click.option("-m", "--message", metavar="MSG", help="Comment of the new step.")
@click.option("--keep-history/--no-keep-history", default=True, show_default=True,
              help="Keep each merged step in the history as an empty entry (docker history still shows "
                   "every command), or fold them into the one new entry.")
@click.option("--timestamp", metavar="TIME", help="Time written into the new step and config (seconds since "
              "1970 or RFC 3339). Default: $SOURCE_DATE_EPOCH, else now. Fixed times make the result "
              "reproducible byte for byte.")
@click.option("--compress", type=click.Choice(["auto", "gzip", "zstd", "none"]), default="auto",
              show_default=True, help="Compression of the new layer (auto: gzip for OCI layouts, none for the "
              "engine and archives). Unchanged layers are never recompressed.")
@click.option("--compress-level", type=int, default=None, help="Codec level (gzip 0-3 with ISA-L, zstd 1-19).")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be merged and dropped; write nothing.")
def squash(range_: str, tag: str | None, message: str | None, keep_history: bool, timestamp: str | None,
           compress: str, compress_level: int | None, dry_run: bool) -> None:
    """Merge the layers of a range of steps into one layer.

    \b
    RANGE is one of
      BASE..IMAGE        every step of IMAGE above BASE (an ancestor:
                         a tag, an id, IMAGE~N)
      IMAGE~5..IMAGE~2   a middle range; the steps above are replayed
      IMAGE              everything, flattened into one layer

    The merged layer gives exactly the filesystem the original layers gave
    (whiteouts, opaque directories, hardlinks, modes, owners, times, xattrs
    all kept); the layers below and above the range keep their bytes.
    The input image is not changed: the result is a new image, and the tag
    moves to it only once it is complete.

    \b
    Examples:
      imggit squash busybox:base..app:1            everything above the base
      imggit squash app:1~4..app:1~1 -t app:slim   a middle range, as a new tag
      imggit squash -n app:1                       what flattening would drop
      SOURCE_DATE_EPOCH=0 imggit squash base..app:1 -t oci:out:app
    """
    from ..model import human_size, short
    from ..ops import squash as op

    c = _ctx()
    res = op.squash(c.session, range_, tag=tag, message=message, keep_history=keep_history,
                    timestamp=timestamp, dry_run=dry_run, compress=None if compress == "none" else compress,
                    level=compress_level, progress=lambda m: click.echo(m, err=True) if c.verbose else None)
    p = res.plan
    src = res.source
    img = p.image
    head = f"{src.text}: {p.describe_range()}, {p.nlayers} layer(s) -> 1; image layers {len(img.layers)} -> " \
           f"{p.layers_after}"
    if dry_run:
        out(f"would squash {head}")
        for s in img.steps[p.start:p.end]:
            mark = f"{short(s.chain_id)}" if s.layer is not None else "-" * 12
            from ..render import step_text

            out(f"  {mark}  {step_text(s)}")
        m = res.merge
        if m is not None:
            out(f"merged layer: {len(m.entries)} entries, {human_size(m.output_file_bytes)} of file content")
            out(f"dropped: {human_size(m.dropped_bytes)} in {len(m.dropped)} file version(s) overwritten or "
                f"deleted inside the range")
            for path, li, size in sorted(m.dropped, key=lambda x: -x[2])[:10]:
                out(f"  {human_size(size):>9}  /{path}  (written by layer {p.layer_start + li + 1})")
            if len(m.dropped) > 10:
                out(f"  ... and {len(m.dropped) - 10} more")
            out(f"whiteouts: {m.kept_whiteouts} kept (they hide base files), {m.dropped_whiteouts} dropped"
                + ("" if m.base_known else " (base not read: every whiteout kept)"))
        elif p.history_only:
            out("only the history changes: the range holds a single layer")
        return
    r = res.result
    assert r is not None
    new = r.image
    if res.timings:
        c.info("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
    click.echo(f"squashed {head}", err=True)
    if res.merged_layer is not None and res.merge is not None:
        click.echo(f"merged layer {short(res.merged_layer.diff_id)}: {human_size(res.merged_layer.uncompressed_size)}"
                   f" (dropped {human_size(res.merge.dropped_bytes)} overwritten or deleted inside the range)",
                   err=True)
    where = res.dest.describe() if res.dest is not None else ""
    if res.tag:
        moved = f" (was {short(r.previous)}; the old image is still there by id)" if r.previous and \
            r.previous != new.id else ""
        click.echo(f"{res.tag} in {where} -> {short(new.id)}{moved}", err=True)
    else:
        click.echo(f"wrote {short(new.id)} to {where} (no tag: name one with -t)", err=True)
    out(new.id)
