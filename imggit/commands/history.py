"""tag, reset, reflog, undo, gc: naming steps and going back."""

from __future__ import annotations

import time

import click

from ..cli import CONTEXT, _ctx, main, out, warn


def _report_past(past) -> None:  # type: ignore[no-untyped-def]
    if past.origin == "exact":
        click.echo(f"config: exact, from {past.origin_detail}", err=True)
    elif past.origin == "match":
        click.echo(f"config: from {past.origin_detail}", err=True)
    elif past.origin == "config-from":
        click.echo(f"config: from {past.origin_detail}", err=True)
    elif past.origin == "tip":
        if past.dropped:
            warn(f"a past step's config is not stored; this one is {past.origin_detail}. Later steps "
                 "set these fields, kept as the tip has them:")
            for d in past.dropped:
                click.echo(f"  {d.field:<12} step {d.step.index + 1}: {d.command}", err=True)
            click.echo("hint: take them from another image with --config-from REF", err=True)
        else:
            click.echo(f"config: {past.origin_detail} (no later step changed it)", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("src", metavar="REF")
@click.argument("name", metavar="NAME")
@click.option("--config-from", metavar="REF", help="Take the runtime config from this image.")
@click.option("--layers", is_flag=True, help="REF~N counts layer-bearing steps.")
def tag(src: str, name: str, config_from: str | None, layers: bool) -> None:
    """Name any revision as an image, a past step too.

    \b
    Examples:
      imggit tag app:1~3 sshd:latest        an intermediate step becomes an image
      imggit tag app:1 oci:./out:app        a tag in another store (a copy)
      imggit tag sha256:3f2a1b app:good     name an image by id

    A past step's runtime config is not stored in an image: imggit uses the
    config of an image in view with exactly that chain of steps (the
    engine keeps the parent images of classic builds), else the tip's
    config, and names every field a dropped step set.
    """
    from ..model import short
    from ..ops import truncate

    c = _ctx()
    res = truncate.tag(c.session, src, name, config_from=config_from, layers=layers)
    _report_past(res.past)
    img = res.result.image
    prev = res.result.previous
    moved = f" (was {short(prev)})" if prev and prev != img.id else ""
    click.echo(f"{res.dest.normalize_tag(res.tag)} -> {short(img.id)}{moved}", err=True)
    out(img.id)


@main.command(context_settings=CONTEXT, short_help='Move a tag down to one of its past steps.')
@click.argument("rev", metavar="TAG~N")
@click.option("--config-from", metavar="REF", help="Take the runtime config from this image.")
@click.option("--layers", is_flag=True, help="~N counts layer-bearing steps.")
def reset(rev: str, config_from: str | None, layers: bool) -> None:
    """Move a tag down to one of its past steps (git reset).

    \b
    Example:
      imggit reset app:1~2      app:1 loses its top two steps
      imggit undo app:1         and gets them back
    """
    from ..model import short
    from ..ops import truncate

    c = _ctx()
    res = truncate.reset(c.session, rev, config_from=config_from, layers=layers)
    _report_past(res.past)
    img = res.result.image
    click.echo(f"{res.dest.normalize_tag(res.tag)}: {short(res.result.previous)} -> {short(img.id)}", err=True)
    out(img.id)


@main.command(context_settings=CONTEXT, short_help='Where a tag pointed over time.')
@click.argument("ref", required=False)
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), metavar="N", help="Show at most N entries.")
def reflog(ref: str | None, limit: int | None) -> None:
    """Show where a tag pointed over time (every move imggit made), newest first.

    Without REF: every move of every tag. Use REF@{N} anywhere a revision
    is taken to name an old value.
    """
    from ..model import short
    from ..ops import reflog as op

    c = _ctx()
    entries = op.reflog(c.session, ref)
    for e in entries[:limit]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.when))
        new = e.new or {}
        if ref:
            out(f"{ref}@{{{e.n}}}  {short(new.get('id'))}  {when}  {e.message}")
        else:
            where = new.get("store", "?")
            out(f"{short(new.get('id'))}  {where} {new.get('tag') or ''}  {when}  {e.message}")


@main.command(context_settings=CONTEXT, short_help='Put a tag back where it was before imggit moved it.')
@click.argument("ref", required=False)
def undo(ref: str | None) -> None:
    """Put a tag back where it was before imggit's last move of it.

    Without REF: undo the last move of any tag. If the old image is gone
    from the store but its layers are still there, it is re-created from
    the journal. Undoing a tag imggit created removes it.
    """
    from ..model import short
    from ..ops import reflog as op

    c = _ctx()
    res = op.undo(c.session, ref)
    if res.image is None:
        click.echo(f"removed {res.tag} from {res.store.describe()} (imggit had created it)", err=True)
        return
    extra = " (re-created from the journal)" if res.restored else ""
    click.echo(f"{res.tag}: {short(res.previous)} -> {short(res.image.id)}{extra}", err=True)
    out(res.image.id)


@main.command(context_settings=CONTEXT, short_help='Remove what no tag and no recent journal entry reaches.')
@click.argument("store", required=False)
@click.option("--prune", "prune_days", type=float, default=14.0, show_default=True, metavar="DAYS",
              help="Keep what journal entries younger than this reach.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def gc(store: str | None, prune_days: float, dry_run: bool) -> None:
    """Remove blobs and untagged images nothing refers to any more.

    STORE is the embedded store (default) or oci:DIR. A blob stays while a
    tag, or a journal entry younger than --prune, reaches it (so undo and
    REF@{N} keep working for that long).

    Without STORE, gc also cleans the download cache that pull keeps for
    resuming: blobs no pull used, and partial downloads nobody resumed, for
    --prune days.
    """
    from ..model import human_size
    from ..ops import reflog as op

    c = _ctx()
    res = op.gc(c.session, store, prune_days=prune_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    out(f"{res.store}: {verb} {len(res.removed_blobs)} blob(s) and {len(res.removed_entries)} untagged "
        f"image(s), {human_size(res.freed)} freed; {res.kept_blobs} blob(s) kept")
    if res.cache is not None:
        out(f"the download cache: {verb} {res.cache.removed} file(s), {human_size(res.cache.freed)} freed; "
            f"{res.cache.kept} kept")
