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
from typing import Any

import click

from . import __version__
from .errors import ImggitError, NothingToDo
from .session import Session

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Ctx:
    def __init__(self, verbose: int, platform: str | None, registry_options: dict[str, Any] | None = None) -> None:
        self.verbose = verbose
        self.platform = platform
        self.registry_options = registry_options or {}
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(platform=self.platform, log=self.info)
            self._session.registry_options.update(self.registry_options)
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


def written(res) -> None:  # type: ignore[no-untyped-def]
    """The last lines of a verb that wrote an image: where the tag now points, and the new id."""
    from .model import short

    r = res.result
    moved = f" (was {short(r.previous)})" if r.previous and r.previous != r.image.id else ""
    click.echo(f"{res.tag or '(untagged)'} in {res.dest.describe()} -> {short(r.image.id)}{moved}", err=True)
    out(r.image.id)


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
@click.option("--creds", metavar="USER[:PASSWORD]",
              help="Credentials for every docker:// reference of the command (default: IMGGIT_REGISTRY_AUTH, "
                   "then Docker's config.json and credential helpers). Without :PASSWORD it is asked for.")
@click.option("--tls-verify", type=click.BOOL, default=None, metavar="BOOL",
              help="Verify registries' TLS certificates (default: true, or IMGGIT_TLS_VERIFY). "
                   "false also allows plain HTTP.")
@click.pass_context
def main(ctx: click.Context, verbose: int, platform: str | None, creds: str | None,
         tls_verify: bool | None) -> None:
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
      docker://HOST/REPO[:TAG|@DIGEST]   a registry (in every verb)
    Revisions (git's syntax):
      app:1~2  two steps back     app:1^  one step back     base..app  steps of app above base

    See 'imggit COMMAND --help' and docs/ for more.
    """
    if platform:
        from .platforms import parse_platform

        try:
            parse_platform(platform)
        except ImggitError as e:
            raise click.BadParameter(e.message + (f" ({e.hint})" if e.hint else ""), param_hint="--platform")
    obj = Ctx(verbose, platform, registry_options(creds, tls_verify))
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def registry_options(creds: str | None, tls_verify: bool | None) -> dict[str, Any]:
    """--creds and --tls-verify as keyword arguments of registry stores (a password is asked for)."""
    opts: dict[str, Any] = {}
    if creds is not None:
        if ":" not in creds:
            creds = creds + ":" + click.prompt(f"password for {creds}", hide_input=True, err=True)
        opts["creds"] = creds
    if tls_verify is not None:
        opts["tls_verify"] = tls_verify
    return opts


def _ctx() -> Ctx:
    return click.get_current_context().find_object(Ctx)  # type: ignore[return-value]


# Each verb lives in imggit/commands/<group>.py and registers itself on ``main``.
from .commands import copy as _copy  # noqa: E402,F401
from .commands import files as _files  # noqa: E402,F401
from .commands import history as _history  # noqa: E402,F401
from .commands import inspect as _inspect  # noqa: E402,F401
from .commands import rebase as _rebase  # noqa: E402,F401
from .commands import squash as _squash  # noqa: E402,F401
from .commands import surgery as _surgery  # noqa: E402,F401
from .commands import registry as _registry  # noqa: E402,F401
from .commands import extract as _extract  # noqa: E402,F401


def run() -> None:
    main(prog_name="imggit")


if __name__ == "__main__":
    run()
