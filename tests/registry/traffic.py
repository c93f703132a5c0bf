"""What went over the wire, from the fault proxy's request log: blob downloads, uploads, mounts, manifests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

_BLOB_GET = re.compile(r"^GET /v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_UPLOAD = re.compile(r"^(?P<method>POST|PATCH|PUT) /v2/(?P<repo>.+)/blobs/uploads/")
_MANIFEST_PUT = re.compile(r"^PUT /v2/(?P<repo>.+)/manifests/(?P<ref>[^?]+)$")


@dataclass
class Traffic:
    downloads: list[tuple[str, str]] = field(default_factory=list)    # (repo, digest) of blob GETs answered
    uploaded: list[str] = field(default_factory=list)                 # digests whose upload completed
    upload_bytes: int = 0                                             # body bytes of PATCH/PUT uploads
    mounts: list[str] = field(default_factory=list)                   # digests mounted from another repo
    manifests: list[str] = field(default_factory=list)                # references manifests were PUT to

    def downloaded(self) -> set[str]:
        return {d for _, d in self.downloads}


def traffic(proxy, since: int = 0) -> Traffic:
    t = Traffic()
    for r in proxy.requests()[since:]:
        line, status = r["line"], r["status"]
        m = _BLOB_GET.match(line)
        if m and status in (200, 206):
            t.downloads.append((m["repo"], m["digest"]))
            continue
        m = _UPLOAD.match(line)
        if m:
            q = parse_qs(urlsplit(line.split(" ", 1)[1]).query)
            if m["method"] == "POST" and "mount" in q:
                if status == 201:
                    t.mounts.append(q["mount"][0])
                continue
            if m["method"] in ("PATCH", "PUT"):
                t.upload_bytes += int(r["headers"].get("Content-Length") or 0)
            if m["method"] == "PUT" and status == 201:
                t.uploaded.append(q["digest"][0])
            continue
        m = _MANIFEST_PUT.match(line)
        if m and status == 201:
            t.manifests.append(m["ref"])
    return t
