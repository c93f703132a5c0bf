"""filter, amend: rewrite the layers of an image."""

from __future__ import annotations

import click

from ..cli import CONTEXT, _ctx, main, written

_COMPRESS = click.Choice(["auto", "gzip", "zstd", "none"])


@main.command(name="filter", context_settings=CONTEXT, short_help='Purge paths from every layer of an image.')
@click.argument("ref")
@click.option("--remove", "patterns", multiple=True, metavar="PATH|GLOB", required=True,
              help="A path (a directory takes everything under it) or a glob; repeatable.")
@click.option("-t", "--tag", metavar="NAME", help="Write the result under this name (default: the tag moves).")
@click.option("-n", "--dry-run", is_flag=True, help="List what would go, per layer; write nothing.")
@click.option("--compress", type=_COMPRESS, default="auto", show_default=True,
              help="Compression of the rewritten layers.")
def filter_(ref: str, patterns: tuple[str, ...], tag: str | None, dry_run: bool, compress: str) -> None:
    """Purge paths from every layer of an image's history (the BFG for images).

    A file a later step "deleted" is still in the layer that added it, and
    every pull downloads it; filter takes it out of every layer. Only the
    layers that contained a match are rewritten; whiteouts of the purged
    paths go too; a hardlink to a purged file keeps its content.

    \b
    Examples:
      imggit filter app:1 --remove /root/.ssh --remove '*.pem'
      imggit filter -n app:1 --remove /tmp
    """
    from ..ops import surgery

    c = _ctx()
    res = surgery.filter_image(c.session, ref, list(patterns), tag=tag, dry_run=dry_run,
                               compress=None if compress == "none" else compress)
    img = res.source.image
    for i, paths in sorted(res.removed.items()):
        step = next(s for s in img.steps if s.layer_index == i)
        from ..render import step_text

        click.echo(f"layer {i + 1} (step {step.index + 1}: {step_text(step)}): "
                   f"{'would remove' if dry_run else 'removed'} {len(paths)}", err=True)
        for p in paths[:20]:
            click.echo(f"  {p}", err=True)
        if len(paths) > 20:
            click.echo(f"  ... and {len(paths) - 20} more", err=True)
        for p in res.unlinked.get(i, []):
            click.echo(f"  /{p}: was a hardlink to a removed file; now a file with that content", err=True)
    if dry_run:
        click.echo("dry run: nothing written", err=True)
        return
    written(res)


@main.command(context_settings=CONTEXT, short_help='Add or replace files: a new step, or --into a step.')
@click.argument("ref")
@click.option("--add", "adds", multiple=True, metavar="SRC:DEST", required=True,
              help="A local file or directory, and where it goes in the image; repeatable.")
@click.option("--chmod", metavar="MODE", help="Octal mode for the added files (directories get +x).")
@click.option("--chown", metavar="UID[:GID]", help="Owner of the added files (default: as on disk).")
@click.option("--into", metavar="REF~N", help="Rewrite this step's layer instead of adding a new top step; the "
              "steps above are replayed unchanged.")
@click.option("-t", "--tag", metavar="NAME", help="Write the result under this name (default: the tag moves).")
@click.option("-m", "--message", metavar="MSG", help="Comment for the history.")
@click.option("--timestamp", metavar="TIME", help="Time of the new step (default: now, or $SOURCE_DATE_EPOCH).")
@click.option("--compress", type=_COMPRESS, default="auto", show_default=True,
              help="Compression of the new or rewritten layer.")
def amend(ref: str, adds: tuple[str, ...], chmod: str | None, chown: str | None, into: str | None,
          tag: str | None, message: str | None, timestamp: str | None, compress: str) -> None:
    """Add or replace files in an image: as a new top step, or inside an existing step.

    \b
    Examples:
      imggit amend base:1 --add ./openssl.cnf:/etc/ssl/openssl.cnf -t base:1-patched
      imggit amend app:1 --add ./fix.py:/app/fix.py --into app:1~2
    """
    from ..ops import surgery

    c = _ctx()
    res = surgery.amend(c.session, ref, list(adds), chmod=chmod, chown=chown, into=into, tag=tag, message=message,
                        timestamp=timestamp, compress=None if compress == "none" else compress)
    where = "a new top step" if res.into is None else f"step {res.into + 1}"
    click.echo(f"added {len(res.added)} path(s) as {where}" + (f", replacing {len(res.replaced)}" if res.replaced
                                                               else ""), err=True)
    written(res)
