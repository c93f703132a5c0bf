"""The registry protocol (OCI distribution / Docker registry v2) for one repository.

Manifests: GET/HEAD/PUT with the four manifest and index media types in
``Accept``; blobs: HEAD, GET (redirects followed, ``Range`` for resuming),
uploads monolithic (POST, then PUT with the body) and chunked (PATCH with
``Content-Range``, always to the newest ``Location``, then PUT with the
digest), cross-repository mounts (``POST ?mount=&from=``); tags/list with
pagination. Errors become ``RegistryError``s with the HTTP status and the
registry's error code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit, parse_qsl

import requests

from ..errors import DigestMismatch, FormatError, RegistryAuthError, RegistryError, RegistryNotFound
from ..model import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, sha256_digest
from .creds import hint_for
from .names import RepoName
from .transport import Transport

ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 << 20


@dataclass
class Fetched:
    raw: bytes
    media_type: str | None     # Content-Type
    digest: str | None         # Docker-Content-Digest, if sent


def _errors(resp: requests.Response) -> tuple[str | None, str | None]:
    """(first error code, its message) from a registry error body."""
    try:
        data = json.loads(resp.content[:65536] or b"{}")
    except (ValueError, requests.RequestException):
        return None, None
    errs = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errs, list) and errs and isinstance(errs[0], dict):
        return errs[0].get("code"), errs[0].get("message")
    return None, None


class Client:
    def __init__(self, name: RepoName, transport: Transport) -> None:
        self.name = name
        self.t = transport
        self.pull_scope = [f"repository:{name.repo}:pull"]
        self.push_scope = [f"repository:{name.repo}:pull,push"]

    # --- errors ------------------------------------------------------------------------------

    def fail(self, resp: requests.Response, what: str) -> RegistryError:
        """The error for a failed response (the caller raises it)."""
        code, message = _errors(resp)
        status = resp.status_code
        resp.close()
        where = f"{self.name}"
        detail = f" ({code}: {message})" if code and message else (f" ({code})" if code else "")
        if status == 401:
            creds = self.t.auth.creds
            if creds is None:
                return RegistryAuthError(f"{what}: registry {self.name.host} requires authentication",
                                         hint=hint_for(self.name.host), status=status, code=code)
            return RegistryAuthError(f"{what}: registry {self.name.host} refused the credentials from "
                                     f"{creds.source}", hint="check the user name and password, or "
                                     + hint_for(self.name.host), status=status, code=code)
        if status == 403:
            return RegistryAuthError(f"{what}: access to {where} denied{detail}",
                                     hint=hint_for(self.name.host), status=status, code=code)
        if status == 404:
            return RegistryNotFound(f"{what}: not found in {where}{detail}", status=status, code=code)
        if status == 429:
            return RegistryError(f"{what}: {self.name.host} keeps answering 'too many requests'",
                                 hint="wait a while and try again", status=status, code=code)
        return RegistryError(f"{what}: {where} answered HTTP {status}{detail}", status=status, code=code)

    def _req(self, method: str, path: str, *, push: bool = False, **kw: Any) -> requests.Response:
        scopes = kw.pop("scopes", None) or (self.push_scope if push else self.pull_scope)
        return self.t.request(method, path, scopes=scopes, **kw)

    def path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.name.repo}/{kind}/{ref}"

    # --- manifests --------------------------------------------------------------------------

    def get_manifest(self, ref: str) -> Fetched:
        what = f"manifest {ref}" if ref.startswith("sha256:") else f"tag {ref!r}"
        resp = self._req("GET", self.path("manifests", ref), headers={"Accept": ACCEPT})
        if resp.status_code != 200:
            raise self.fail(resp, f"reading {what}")
        raw = resp.content
        if len(raw) > MAX_MANIFEST:
            raise FormatError(f"{what} of {self.name} is larger than {MAX_MANIFEST} bytes")
        digest = resp.headers.get("Docker-Content-Digest")
        got = sha256_digest(raw)
        if ref.startswith("sha256:") and got != ref:
            raise DigestMismatch(f"manifest {ref} from {self.name} hashes to {got}")
        if digest and digest.startswith("sha256:") and digest != got:
            raise DigestMismatch(f"{what} of {self.name}: the registry says its digest is {digest}, "
                                 f"the bytes hash to {got}")
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip() or None
        return Fetched(raw, ctype, got)

    def head_manifest(self, ref: str) -> str | None:
        """The digest a tag points at (None if unknown or not said)."""
        resp = self._req("HEAD", self.path("manifests", ref), headers={"Accept": ACCEPT})
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.fail(resp, f"checking tag {ref!r}")
        return resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, ref: str, raw: bytes, media_type: str) -> str:
        resp = self._req("PUT", self.path("manifests", ref), push=True, body=raw,
                         headers={"Content-Type": media_type}, retry=True)
        if resp.status_code not in (200, 201, 202):
            raise self.fail(resp, f"writing manifest {ref}")
        resp.close()
        digest = sha256_digest(raw)
        said = resp.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise RegistryError(f"{self.name} stored manifest {ref} as {said}, expected {digest}")
        return digest

    def delete_manifest(self, digest: str) -> None:
        resp = self._req("DELETE", self.path("manifests", digest), push=True)
        if resp.status_code not in (200, 202):
            raise self.fail(resp, f"deleting manifest {digest}")
        resp.close()

    def tags(self) -> list[str]:
        out: list[str] = []
        url: str | None = self.path("tags", "list") + "?n=1000"
        while url:
            resp = self._req("GET", url)
            if resp.status_code != 200:
                raise self.fail(resp, "listing tags")
            try:
                data = resp.json()
            except ValueError:
                raise FormatError(f"the tag list of {self.name} is not JSON") from None
            out.extend(t for t in (data.get("tags") or []) if isinstance(t, str))
            link = resp.headers.get("Link")
            url = None
            if link and 'rel="next"' in link:
                url = urljoin(resp.url, link.split(";")[0].strip().strip("<>"))
        return out

    # --- blobs ----------------------------------------------------------------------------

    def blob_size(self, digest: str, *, scopes: list[str] | None = None) -> int | None:
        """HEAD: the blob's size, or None when the repository lacks it."""
        resp = self._req("HEAD", self.path("blobs", digest), scopes=scopes)
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.fail(resp, f"checking blob {digest}")
        try:
            return int(resp.headers.get("Content-Length", "-1"))
        except ValueError:
            return -1

    def get_blob(self, digest: str, offset: int = 0,
                 on_retry: Callable[[str, float], None] | None = None) -> requests.Response:
        """A streaming response for the blob from ``offset`` (206 or 200: the caller checks)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._req("GET", self.path("blobs", digest), headers=headers, stream=True, on_retry=on_retry)
        if resp.status_code not in (200, 206, 416):
            raise self.fail(resp, f"reading blob {digest}")
        return resp

    def read_blob(self, digest: str, size: int | None, what: str) -> bytes:
        """A small blob (a config), verified."""
        resp = self.get_blob(digest)
        if resp.status_code != 200:
            raise self.fail(resp, f"reading {what}")
        data = resp.content
        if size is not None and len(data) != size:
            raise DigestMismatch(f"{what} from {self.name}: expected {size} bytes, got {len(data)}")
        got = sha256_digest(data)
        if got != digest:
            raise DigestMismatch(f"{what} from {self.name}: digest mismatch: expected {digest}, got {got}")
        return data

    # --- uploads -------------------------------------------------------------------------------

    def _location(self, resp: requests.Response, what: str) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{what}: {self.name} gave no upload location", status=resp.status_code)
        return urljoin(resp.url, loc)

    def start_upload(self, mount: str | None = None, source: str | None = None) -> tuple[bool, str | None]:
        """POST an upload; with ``mount``/``source`` try a cross-repository mount first.

        Returns (mounted, upload location); a registry that does not mount opens an upload.
        """
        path = self.path("blobs", "uploads")
        scopes = list(self.push_scope)
        if mount and source:
            path += "?" + urlencode({"mount": mount, "from": source})
            scopes.append(f"repository:{source}:pull")
        resp = self._req("POST", path, scopes=scopes, headers={"Content-Length": "0"}, body=b"", retry=True)
        if mount and resp.status_code == 201:
            resp.close()
            return True, None
        if resp.status_code != 202:
            raise self.fail(resp, "starting an upload")
        loc = self._location(resp, "starting an upload")
        resp.close()
        return False, loc

    @staticmethod
    def with_digest(location: str, digest: str) -> str:
        parts = urlsplit(location)
        q = parse_qsl(parts.query, keep_blank_values=True) + [("digest", digest)]
        return urlunsplit(parts._replace(query=urlencode(q)))

    def put_blob(self, location: str, digest: str, size: int, body: Callable[[], Any]) -> None:
        """Monolithic upload: the whole blob in the closing PUT."""
        resp = self._req("PUT", self.with_digest(location, digest), push=True, body=body,
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                         retry=False)
        if resp.status_code not in (201, 204):
            raise self.fail(resp, f"uploading blob {digest}")
        resp.close()

    def patch_chunk(self, location: str, start: int, data: bytes) -> str:
        """One chunk of a chunked upload; returns the newest location."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        if data:
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        resp = self._req("PATCH", location, push=True, body=data, headers=headers, retry=False)
        if resp.status_code not in (202, 204):
            raise self.fail(resp, f"uploading bytes {start}-{start + len(data) - 1}")
        loc = self._location(resp, "uploading a chunk")
        resp.close()
        return loc

    def finish_upload(self, location: str, digest: str) -> None:
        resp = self._req("PUT", self.with_digest(location, digest), push=True, body=b"",
                         headers={"Content-Length": "0"}, retry=False)
        if resp.status_code not in (201, 204):
            raise self.fail(resp, f"closing the upload of {digest}")
        resp.close()


def iter_body(resp: requests.Response, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The raw (undecoded) body, in pieces as they arrive."""
    raw = resp.raw
    read1 = getattr(raw, "read1", None)
    while True:
        b = read1(chunk, decode_content=False) if read1 is not None else raw.read(chunk, decode_content=False)
        if not b:
            return
        yield b
