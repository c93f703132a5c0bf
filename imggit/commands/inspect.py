"""log, show, ls: read-only verbs."""

from __future__ import annotations

import click

from ..cli import CONTEXT, _ctx, main, out, style, warn  # noqa: F401

# --- log -------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, metavar="[REF]...")
@click.option("--oneline", is_flag=True, help="One line per step: id, layer size, command.")
@click.option("--layers", "layers_only", is_flag=True,
              help="Only steps that carry a layer; REF~N then counts layer-bearing steps.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema: docs/log.md).")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), metavar="N", help="Show at most N steps.")
@click.option("--graph", is_flag=True, help="Draw the steps of several images as a graph; shared bases once.")
@click.option("--all", "all_images", is_flag=True, help="Every tagged image of the default store (implies --graph).")
@click.option("--stat", "as_stat", is_flag=True, help="Under each step, the files it changes and a size bar "
              "(reads each layer once to index and hash it; cached).")
def log(refs: tuple[str, ...], oneline: bool, layers_only: bool, as_json: bool, limit: int | None,
        graph: bool, all_images: bool, as_stat: bool) -> None:
    """Show the steps of an image, newest first, like git log.

    Each step is a history entry of the image; the id shown is the chain id
    of the layers up to that step (empty steps, which carry no layer, show
    dashes). Only metadata is read, no layer bytes (--stat reads each
    layer once to index it; the index is cached).

    \b
    Examples:
      imggit log app:1
      imggit log --oneline --layers oci:out:app
      imggit log --graph --oneline app:1 app:2
      imggit log --graph --all
    """
    from .. import render
    from ..ops import inspect

    c = _ctx()
    if graph or all_images or len(refs) > 1:
        if any(".." in r and inspect.is_range(r) for r in refs):
            raise click.UsageError("--graph draws whole images; a range (A..B) works without --graph")
        res = inspect.log_graph(c.session, list(refs), all_images=all_images, layers_only=layers_only,
                                limit=limit)
        if as_json:
            out(render.dumps({"schema": render.LOG_SCHEMA_VERSION,
                              "images": [render.image_json(img, tag) for tag, img in res.images],
                              "steps": [dict(render.step_json(res.graph.nodes[n]["step"], ""), tags=res.graph.nodes[n]["tags"],
                                             parent=next(iter(res.graph.predecessors(n)), None))
                                        for n in (ln.node for ln in res.lines) if n is not None]}))
            return
        for ln in res.lines:
            if ln.node is None:
                out(ln.prefix.rstrip())
                continue
            step = res.graph.nodes[ln.node]["step"]
            if oneline:
                out(ln.prefix + render.log_oneline(step, ln.tags, style))
            else:
                head = render.log_oneline(step, ln.tags, style)
                out(ln.prefix + head)
                cont = ln.cont or ""
                if step.created:
                    out((cont + style(render.fmt_time(step.created), dim=True)).rstrip())
        return
    if not refs:
        raise click.UsageError("name an image (e.g. imggit log app:1), or use --all")
    res1 = inspect.log(c.session, refs[0], layers_only=layers_only, limit=limit)
    for w in res1.warnings:
        warn(w)
    r = res1.resolved
    c.info(f"{r.text} is {r.image.id} in {r.store.describe()}")
    if as_json:
        out(render.dumps({"schema": render.LOG_SCHEMA_VERSION, "image": render.image_json(r.image),
                          "rev": r.text, "upto": r.upto,
                          "steps": [render.step_json(e.step, e.rev) for e in res1.entries]}))
        return
    stats = {}
    if as_stat:
        from ..ops import files

        stats = files.all_step_changes(r)
    for e in res1.entries:
        if as_stat:
            from .files import stat_lines

            out(render.log_oneline(e.step, e.tags, style) if oneline else
                "\n".join(render.log_full(e.step, len(r.image.steps), e.rev, e.tags, style)).rstrip())
            sc = stats.get(e.step.index)
            if sc is not None:
                for line in stat_lines(sc.stat, width=30, limit=10):
                    out(line)
            out()
            continue
        if oneline:
            out(render.log_oneline(e.step, e.tags, style))
        else:
            for line in render.log_full(e.step, len(r.image.steps), e.rev, e.tags, style):
                out(line)


# --- show ------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT, short_help='One step: history entry, layer, runtime config.')
@click.argument("ref")
@click.option("--config", "raw", flag_value="config", help="Print the image config, byte for byte.")
@click.option("--manifest", "raw", flag_value="manifest", help="Print the manifest, byte for byte.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--layers", is_flag=True, help="REF~N counts layer-bearing steps.")
@click.option("--stat", "as_stat", is_flag=True, help="The files the step adds, modifies, deletes, with sizes.")
@click.option("--name-status", is_flag=True, help="Only status letters (A M D T) and paths.")
def show(ref: str, raw: str | None, as_json: bool, layers: bool, as_stat: bool, name_status: bool) -> None:
    """Show one step: its history entry and layer (and the runtime config of an image).

    \b
    Examples:
      imggit show app:1            the top step and the image's config
      imggit show app:1~2          an earlier step
      imggit show --config app:1   the config JSON exactly as stored
    """
    from .. import render
    from ..ops import inspect

    c = _ctx()
    if raw:
        data = inspect.show_raw(c.session, ref, raw)
        import sys

        sys.stdout.flush()
        sys.stdout.buffer.write(data)   # exactly the stored bytes: no newline added
        sys.stdout.buffer.flush()
        return
    if as_stat or name_status:
        from ..ops import files
        from .files import change_json, stat_lines

        r, sc = files.step_changes(c.session, ref, layers=layers)
        if as_json:
            out(render.dumps({"rev": r.text, "step": render.step_json(sc.step, r.text),
                              "changes": [change_json(x) for x in sc.stat.files]}))
            return
        out(render.log_oneline(sc.step, [r.text], style))
        if name_status:
            for ch in sc.stat.files:
                out(f"{ch.status}\t/{ch.path}")
        else:
            for line in stat_lines(sc.stat):
                out(line)
        return
    res = inspect.show(c.session, ref, layers=layers)
    for w in res.warnings:
        warn(w)
    if as_json:
        r = res.resolved
        out(render.dumps({"image": render.image_json(r.image), "rev": r.text,
                          "step": render.step_json(res.step, r.text) if res.step else None,
                          "config": res.runtime}))
        return
    for line in render.show_lines(res, style):
        out(line)


# --- ls --------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("store", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-q", "--quiet", is_flag=True, help="Only the tags.")
def ls(store: str | None, as_json: bool, quiet: bool) -> None:
    """List the tagged images of a store (like docker images).

    \b
    STORE is one of
      docker-daemon:        the Docker engine
      embedded:             imggit's own store
      oci:DIR               an OCI layout
      docker-archive:FILE   a docker save archive
      oci-archive:FILE      an OCI layout in a tar
    The default is the engine when one answers, else the embedded store.
    """
    from .. import render
    from ..ops import inspect

    c = _ctx()
    where, rows = inspect.ls(c.session, store)
    if as_json:
        out(render.dumps({"store": where, "images": [render.image_json(r.image, r.tag) for r in rows]}))
        return
    if quiet:
        for r in rows:
            out(r.tag)
        return
    c.info(f"listing {where}")
    if not rows:
        click.echo(f"no tagged images in {where}", err=True)
        return
    for line in render.ls_lines(rows, style):
        out(line)


