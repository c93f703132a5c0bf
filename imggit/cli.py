"""The ``imggit`` command: parse, call one operation, print. No logic lives here.

Exit codes (scripts can trust them):

    0  success (also: nothing to do)
    1  the operation failed
    2  bad usage: unknown or malformed reference, bad option, ~N past the first step
    3  bad data: corrupt archive, invalid JSON, digest mismatch
    4  a store cannot be used: no engine, layout locked by another process
    5  conflicts (rebase --strict)
  130  interrupted
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable

import click

from . import __version__
from .errors import ImggitError, NothingToDo
from .session import Session

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Ctx:
    def __init__(self, verbose: int, platform: str | None) -> None:
        self.verbose = verbose
        self.platform = platform
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(platform=self.platform, log=self.info)
        return self._session

    def info(self, msg: str) -> None:
        if self.verbose:
            click.echo(click.style(f"imggit: {msg}", dim=True), err=True)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def style(text: str, **kw: Any) -> str:
    return click.style(text, **kw)


def out(line: str = "") -> None:
    click.echo(line)


def warn(msg: str) -> None:
    click.echo(click.style("warning: ", fg="yellow") + msg, err=True)


class ImggitGroup(click.Group):
    """Maps library errors to one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NothingToDo as e:
            click.echo(str(e), err=True)
            ctx.exit(0)
        except ImggitError as e:
            click.echo(click.style("imggit: error: ", fg="red") + e.message, err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("imggit: interrupted; nothing was changed", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(0)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug: say so in one line, full traceback on request
            if os.environ.get("IMGGIT_DEBUG"):
                traceback.print_exc()
            click.echo(click.style("imggit: internal error: ", fg="red") + f"{type(e).__name__}: {e}", err=True)
            click.echo("hint: run again with IMGGIT_DEBUG=1 for a traceback, and report it", err=True)
            ctx.exit(1)


@click.group(cls=ImggitGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="imggit")
@click.option("-v", "--verbose", count=True, help="Say where references went and what was read.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", envvar="IMGGIT_PLATFORM",
              help="Platform to pick from multi-platform images (default: this host's).")
@click.pass_context
def main(ctx: click.Context, verbose: int, platform: str | None) -> None:
    """git's history tools for container images.

    An image is a chain of steps (its history); a step may carry a layer.
    imggit shows that chain and rewrites it, in the Docker engine, OCI
    layouts, docker save archives and its own embedded store.

    \b
    References:
      app:1                 the engine when one answers, else the embedded store
      docker-daemon:app:1   the Docker engine      embedded:app:1  the embedded store
      oci:DIR[:TAG]         an OCI layout          oci-archive:FILE[:TAG]
      docker-archive:FILE[:NAME]   a docker save archive
    Revisions (git's syntax):
      app:1~2  two steps back     app:1^  one step back     base..app  steps of app above base

    See 'imggit COMMAND --help' and docs/ for more.
    """
    obj = Ctx(verbose, platform)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def _ctx() -> Ctx:
    return click.get_current_context().find_object(Ctx)  # type: ignore[return-value]


# --- log -------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, metavar="[REF]...")
@click.option("--oneline", is_flag=True, help="One line per step: id, layer size, command.")
@click.option("--layers", "layers_only", is_flag=True, help="Only steps that carry a layer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema: docs/log.md).")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), metavar="N", help="Show at most N steps.")
@click.option("--graph", is_flag=True, help="Draw the steps of several images as a graph; shared bases once.")
@click.option("--all", "all_images", is_flag=True, help="Every tagged image of the default store (implies --graph).")
def log(refs: tuple[str, ...], oneline: bool, layers_only: bool, as_json: bool, limit: int | None,
        graph: bool, all_images: bool) -> None:
    """Show the steps of an image, newest first, like git log.

    Each step is a history entry of the image; the id shown is the chain id
    of the layers up to that step (empty steps, which carry no layer, show
    dashes). Nothing but metadata is read: no layer bytes.

    \b
    Examples:
      imggit log app:1
      imggit log --oneline --layers oci:out:app
      imggit log --graph --oneline app:1 app:2
      imggit log --graph --all
    """
    from . import render
    from .ops import inspect

    c = _ctx()
    if graph or all_images or len(refs) > 1:
        res = inspect.log_graph(c.session, list(refs), all_images=all_images, layers_only=layers_only,
                                limit=limit)
        if as_json:
            out(render.dumps({"schema": render.LOG_SCHEMA_VERSION,
                              "images": [render.image_json(img, tag) for tag, img in res.images],
                              "steps": [dict(render.step_json(res.graph.nodes[n]["step"], ""), tags=res.graph.nodes[n]["tags"],
                                             parent=next(iter(res.graph.predecessors(n)), None))
                                        for n in (ln.node for ln in res.lines) if n is not None]}))
            return
        total = {n: None for n in res.graph.nodes}
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
        del total
        return
    if not refs:
        raise click.UsageError("name an image (e.g. imggit log app:1), or use --all")
    res1 = inspect.log(c.session, refs[0], layers_only=layers_only, limit=limit)
    for w in res1.warnings:
        warn(w)
    r = res1.resolved
    c.info(f"{r.text} is {r.image.id} in {r.store.describe()}")
    if as_json:
        out(render.dumps({"schema": render.LOG_SCHEMA_VERSION, "image": render.image_json(r.image, r.text),
                          "upto": r.upto,
                          "steps": [render.step_json(e.step, e.rev) for e in res1.entries]}))
        return
    for e in res1.entries:
        if oneline:
            out(render.log_oneline(e.step, e.tags, style))
        else:
            for line in render.log_full(e.step, len(r.image.steps), e.rev, e.tags, style):
                out(line)


# --- show ------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("ref")
@click.option("--config", "raw", flag_value="config", help="Print the image config, byte for byte.")
@click.option("--manifest", "raw", flag_value="manifest", help="Print the manifest, byte for byte.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(ref: str, raw: str | None, as_json: bool) -> None:
    """Show one step: its history entry and layer (and the runtime config of an image).

    \b
    Examples:
      imggit show app:1            the top step and the image's config
      imggit show app:1~2          an earlier step
      imggit show --config app:1   the config JSON exactly as stored
    """
    from . import render
    from .ops import inspect

    c = _ctx()
    if raw:
        data = inspect.show_raw(c.session, ref, raw)
        click.echo(data, nl=not data.endswith(b"\n"))
        return
    res = inspect.show(c.session, ref)
    for w in res.warnings:
        warn(w)
    if as_json:
        r = res.resolved
        out(render.dumps({"image": render.image_json(r.image, r.text),
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

    STORE is docker-daemon:, embedded:, oci:DIR, docker-archive:FILE or
    oci-archive:FILE; the default is the engine when one answers, else the
    embedded store.
    """
    from . import render
    from .ops import inspect

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


# --- cp --------------------------------------------------------------------------------

_COMPRESS = click.Choice(["auto", "gzip", "zstd", "none"])


@main.command(context_settings=CONTEXT)
@click.argument("src")
@click.argument("dst")
@click.option("--compress", type=_COMPRESS, default="auto", show_default=True,
              help="Compression for layers that arrive uncompressed (auto: gzip for OCI, none for "
                   "the engine and archives). Compressed layers are never recompressed.")
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
    from .model import human_size, short
    from .ops import copy

    c = _ctx()
    res = copy.copy(c.session, src, dst, compress=None if compress == "none" else compress,
                    level=compress_level)
    r = res.result
    img = r.image
    target = res.dest.describe()
    click.echo(f"copied {res.source.text} to {target}" + (f" as {res.tag}" if res.tag else "")
               + f": {r.written_blobs} layer(s) written ({human_size(r.written_bytes)}), "
               + f"{len(img.layers) - r.written_blobs} already there", err=True)
    if r.previous and r.previous != img.id:
        click.echo(f"{res.tag} moved from {short(r.previous)} (still reachable by id)", err=True)
    out(img.id)


def run() -> None:
    main(prog_name="imggit")


if __name__ == "__main__":
    run()
