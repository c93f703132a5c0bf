"""Text and JSON renderings of what the verbs return (pure: data in, strings out)."""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any, Callable

from .model import Image, Step, describe_command, human_size, short

Style = Callable[..., str]


def _plain(text: str, **_: Any) -> str:
    return text


_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    m = _TS.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or ""
    us = int((frac + "000000")[:6]) if frac else 0
    tz = m.group(8)
    if not tz or tz == "Z":
        tzinfo = _dt.timezone.utc
    else:
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        tzinfo = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return _dt.datetime(y, mo, d, h, mi, s, us, tzinfo)
    except ValueError:
        return None


def fmt_time(value: str | None) -> str:
    t = parse_time(value)
    if t is None:
        return value or "-"
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")


def step_id12(step: Step) -> str:
    return short(step.chain_id) if step.layer is not None else "-" * 12


def step_text(step: Step) -> str:
    text = describe_command(step.created_by)
    if not text:
        if step.comment:
            return f"({step.comment})"
        return "(no command)"
    return text


def layer_size(step: Step) -> int | None:
    if step.layer is None:
        return None
    if step.layer.size is not None:
        return step.layer.size
    return step.layer.uncompressed_size


def decorate(tags: list[str], style: Style) -> str:
    if not tags:
        return ""
    return style("(" + ", ".join(tags) + ")", fg="yellow") + " "


def log_oneline(step: Step, tags: list[str], style: Style = _plain) -> str:
    size = human_size(layer_size(step)) if step.layer is not None else "-"
    ident = style(step_id12(step), fg="yellow") if step.layer is not None else style(step_id12(step), dim=True)
    return f"{ident} {size:>9}  {decorate(tags, style)}{step_text(step)}"


def log_full(step: Step, total: int, rev: str, tags: list[str], style: Style = _plain) -> list[str]:
    if step.layer is not None:
        head = f"step {step.index + 1}/{total} {short(step.chain_id)} {human_size(layer_size(step))}"
    else:
        head = f"step {step.index + 1}/{total} (empty)"
    lines = [style(head, fg="yellow") + "  " + style(rev, bold=True)
             + (" " + decorate([t for t in tags if t != rev], style).rstrip() if [t for t in tags if t != rev] else "")]
    if step.author:
        lines.append(f"Author: {step.author}")
    lines.append(f"Date:   {fmt_time(step.created)}")
    if step.synthetic:
        lines.append("Note:   no history entry describes this layer")
    if step.missing_layer:
        lines.append("Note:   history says this step has a layer, but the image has none for it")
    lines.append("")
    lines.append("    " + step_text(step))
    if step.comment and describe_command(step.created_by):
        lines.append("    " + style(f"# {step.comment}", dim=True))
    lines.append("")
    return lines


def show_lines(res: Any, style: Style = _plain) -> list[str]:
    r = res.resolved
    img: Image = r.image
    lines = []
    step = res.step
    if step is None:
        lines.append(f"{r.text}: an image with no steps")
    else:
        kind = f"layer {step.layer_index + 1} of {len(img.layers)}" if step.layer is not None else "no layer"
        lines.append(style(f"step {step.index + 1}/{len(img.steps)} of {img.describe()}", fg="yellow")
                     + f"  ({kind})")
        lines.append(f"Revision:   {r.text}")
        lines.append(f"Step id:    {step.step_id}")
        if step.chain_id:
            lines.append(f"Chain id:   {step.chain_id}")
        lines.append(f"Created:    {fmt_time(step.created)}")
        if step.author:
            lines.append(f"Author:     {step.author}")
        lines.append(f"Created by: {step.created_by or '-'}")
        if step.comment:
            lines.append(f"Comment:    {step.comment}")
        if step.layer is not None:
            l = step.layer
            lines.append("Layer:")
            lines.append(f"  Digest:            {l.digest}")
            lines.append(f"  Diff id:           {l.diff_id}")
            lines.append(f"  Media type:        {l.media_type}")
            lines.append(f"  Size (stored):     {human_size(l.size) + f' ({l.size} bytes)' if l.size is not None else '-'}")
            if l.uncompressed_size is not None:
                lines.append(f"  Size (unpacked):   {human_size(l.uncompressed_size)} ({l.uncompressed_size} bytes)")
            if l.urls:
                lines.append(f"  URLs (foreign):    {', '.join(l.urls)}")
    lines.append(f"Image:      {img.id}" + ("" if img.exact_config else "  (config rebuilt from the engine's inspect)"))
    if img.digest:
        lines.append(f"Manifest:   {img.digest}")
    lines.append(f"Platform:   {res.platform}" + (" (picked from an index)" if img.extra.get("platform") else ""))
    lines.append(f"Store:      {img.source}")
    if res.runtime is not None:
        lines.append("Config:")
        rt = res.runtime
        keys = ["Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes",
                "Healthcheck", "StopSignal", "OnBuild", "Shell", "ArgsEscaped"]
        shown = False
        for k in keys:
            v = rt.get(k)
            if v in (None, "", [], {}):
                continue
            shown = True
            if k == "Env" and isinstance(v, list):
                lines.append(f"  {k}:")
                lines.extend(f"    {e}" for e in v)
            elif k == "Labels" and isinstance(v, dict):
                lines.append(f"  {k}:")
                lines.extend(f"    {a}={b}" for a, b in sorted(v.items()))
            else:
                lines.append(f"  {k}: {json.dumps(v, ensure_ascii=False)}")
        if not shown:
            lines.append("  (empty)")
    return lines


def ls_lines(rows: list[Any], style: Style = _plain) -> list[str]:
    table = [("TAG", "IMAGE ID", "STEPS", "LAYERS", "SIZE", "CREATED")]
    for r in rows:
        img: Image = r.image
        table.append((r.tag, short(img.id), str(len(img.steps)), str(len(img.layers)), human_size(img.size()),
                      fmt_time(img.config.created)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = []
    for n, row in enumerate(table):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        out.append(style(line, bold=True) if n == 0 else line)
    return out


# --- JSON ---------------------------------------------------------------------------------

LOG_SCHEMA_VERSION = 1


def step_json(step: Step, rev: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": step.index,
        "rev": rev,
        "step_id": step.step_id,
        "chain_id": step.chain_id,
        "empty": step.layer is None,
        "created": step.created,
        "created_by": step.created_by,
        "command": describe_command(step.created_by),
        "comment": step.comment,
        "author": step.author,
        "synthetic": step.synthetic,
        "layer": None,
    }
    if step.layer is not None:
        l = step.layer
        out["layer"] = {
            "index": step.layer_index,
            "digest": l.digest,
            "diff_id": l.diff_id,
            "media_type": l.media_type,
            "size": l.size,
            "uncompressed_size": l.uncompressed_size,
            "urls": list(l.urls),
        }
    return out


def image_json(img: Image, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or img.name,
        "platform_picked": img.extra.get("platform"),
        "id": img.id,
        "digest": img.digest,
        "store": img.source,
        "platform": img.config.platform,
        "steps": len(img.steps),
        "layers": len(img.layers),
        "size": img.size(),
        "created": img.config.created,
        "exact_config": img.exact_config,
    }


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
