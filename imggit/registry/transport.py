"""HTTP to one registry: scheme, TLS, auth, retries and redirects. No registry protocol here.

- **Scheme.** HTTPS, verified. Plain HTTP only for loopback hosts or when
  verification is turned off, and only after HTTPS failed for a reason
  other than an untrusted certificate (as Docker does for insecure registries).
- **Auth.** Every request to the registry host runs ``Authenticator.flow``.
  Redirects to another host (a CDN) are followed without ``Authorization``.
- **Retries.** Idempotent requests (GET, HEAD) are retried on connection
  errors and on 408/429/5xx, with exponential backoff, honouring
  ``Retry-After``. Uploads are retried whole by their callers.
- Each thread has its own ``requests.Session`` (connection pool).
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from functools import partial
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import RegistryError
from . import tls
from .auth import Authenticator, Request
from .creds import Credentials
from .names import is_loopback

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def retry_after(headers: Mapping[str, str], cap: float = 60.0) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(cap, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, when - time.time()))


class RetryPolicy:
    """How often and how long to wait: ``IMGGIT_REGISTRY_RETRIES`` attempts, backoff base
    ``IMGGIT_RETRY_BACKOFF`` seconds (doubling, jittered, at most 10 s)."""

    def __init__(self, attempts: int | None = None, backoff: float | None = None) -> None:
        self.attempts = max(1, int(attempts if attempts is not None else env_float("IMGGIT_REGISTRY_RETRIES", 5)))
        self.backoff = backoff if backoff is not None else env_float("IMGGIT_RETRY_BACKOFF", 0.5)

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float:
        ra = retry_after(headers) if headers is not None else None
        if ra is not None:
            return ra
        return min(10.0, self.backoff * (2 ** attempt)) * (0.75 + random.random() / 2)


def brief(e: BaseException) -> str:
    """A short reason for a connection error (requests nests urllib3's long messages)."""
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Remote end closed", "CERTIFICATE_VERIFY_FAILED", "certificate verify failed",
                   "IncompleteRead", "Connection broken", "No route to host", "Temporary failure"):
        if marker in text:
            return marker if marker.isupper() or "_" in marker else marker[0].lower() + marker[1:]
    return text.splitlines()[0][:200] if text else type(e).__name__


class Transport:
    def __init__(self, host: str, *, creds: Credentials | None = None, tls_verify: bool = True,
                 retry: RetryPolicy | None = None, timeout: tuple[float, float] | None = None,
                 label: str | None = None) -> None:
        self.host = host                      # "127.0.0.1:5000", "registry-1.docker.io"
        self.label = label or host
        self.tls_verify = tls_verify
        self.allow_http = is_loopback(host) or not tls_verify
        self.auth = Authenticator(label or host, creds)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout or (env_float("IMGGIT_REGISTRY_CONNECT_TIMEOUT", 15),
                                   env_float("IMGGIT_REGISTRY_TIMEOUT", 60))
        self.scheme: str | None = None
        self._local = threading.local()
        self._ping_lock = threading.Lock()
        if not tls_verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # --- plumbing -----------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
            s.mount("https://", adapter)
            s.mount("http://", adapter)
            self._local.session = s
        return s

    def base(self) -> str:
        self.ping()
        return f"{self.scheme}://{self.host}"

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base() + "/", path_or_url.lstrip("/"))

    def same_host(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() == self.host.lower()

    def send_raw(self, req: Request, timeout: tuple[float, float] | None = None) -> requests.Response:
        """One HTTP exchange, no auth, no retries, no redirects."""
        netloc = urlsplit(req.url).netloc
        verify, cert = tls.settings(netloc, self.tls_verify)
        body = req.body() if callable(req.body) else req.body
        data = req.form if req.form is not None else body
        try:
            return self.session.request(req.method, req.url, headers=req.headers, data=data, stream=req.stream,
                                        allow_redirects=False, timeout=timeout or self.timeout,
                                        verify=verify, cert=cert)
        finally:
            if hasattr(body, "close") and not isinstance(body, (bytes, bytearray)):
                body.close()

    def _drive(self, req: Request, scopes: Sequence[str]) -> requests.Response:
        flow = self.auth.flow(req, scopes)
        try:
            r = next(flow)
            while True:
                resp = self.send_raw(r)
                try:
                    r = flow.send(resp)  # type: ignore[arg-type]
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
        finally:
            flow.close()     # a flow left half-way (an exception) releases what it holds

    # --- ping ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Pick the scheme and learn the auth challenge (``GET /v2/``), once."""
        if self.scheme is not None:
            return
        with self._ping_lock:
            if self.scheme is not None:
                return
            schemes = ["https", "http"] if self.allow_http else ["https"]
            first_error: BaseException | None = None
            for scheme in schemes:
                url = f"{scheme}://{self.host}/v2/"
                try:
                    resp = self._with_retries(partial(self.send_raw, Request("GET", url)), idempotent=True,
                                              refused_is_final=True)
                except requests.exceptions.SSLError as e:
                    if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate verify failed" in str(e):
                        raise RegistryError(
                            f"registry {self.label} presents a certificate that is not trusted ({brief(e)})",
                            hint=f"put its CA certificate in {tls.certs_root()}/{self.host}/ca.crt, "
                                 "or pass --tls-verify=false") from None
                    first_error = first_error or e
                    continue
                except CONNECTION_ERRORS as e:
                    first_error = first_error or e
                    if isinstance(e, requests.exceptions.ConnectionError) and "refused" in str(e).lower():
                        break   # nothing listens: plain HTTP will not do better
                    continue
                try:
                    if scheme == "http" and resp.status_code == 400 and b"HTTPS" in resp.content[:200]:
                        first_error = first_error or RuntimeError("the server speaks only HTTPS")
                        continue
                    if resp.status_code not in (200, 401):
                        raise RegistryError(
                            f"{self.label} does not answer like a registry (GET /v2/: HTTP {resp.status_code})",
                            status=resp.status_code)
                    self.auth.learn(resp)
                finally:
                    resp.close()
                self.scheme = scheme
                return
            reason = brief(first_error) if first_error else "no answer"
            raise RegistryError(f"cannot reach registry {self.label}: {reason}",
                                hint="check the address, and that the registry is running")

    # --- requests -------------------------------------------------------------------------

    def _with_retries(self, send: Callable[[], requests.Response], idempotent: bool,
                      on_retry: Callable[[str, float], None] | None = None,
                      refused_is_final: bool = False) -> requests.Response:
        attempt = 0
        while True:
            try:
                resp = send()
            except requests.exceptions.SSLError:
                raise
            except CONNECTION_ERRORS as e:
                if not idempotent or attempt + 1 >= self.retry.attempts:
                    raise
                if refused_is_final and "refused" in str(e).lower():
                    raise
                wait = self.retry.delay(attempt)
                if on_retry:
                    on_retry(brief(e), wait)
                time.sleep(wait)
                attempt += 1
                continue
            if idempotent and resp.status_code in RETRY_STATUS and attempt + 1 < self.retry.attempts:
                wait = self.retry.delay(attempt, resp.headers)
                if on_retry:
                    on_retry(f"HTTP {resp.status_code}", wait)
                resp.close()
                time.sleep(wait)
                attempt += 1
                continue
            return resp

    def request(self, method: str, path_or_url: str, *, scopes: Sequence[str] = (),
                headers: Mapping[str, str] | None = None, body: Any = None, stream: bool = False,
                follow: bool = True, retry: bool | None = None,
                on_retry: Callable[[str, float], None] | None = None) -> requests.Response:
        """Send a request to the registry with auth; retried when idempotent; redirects followed."""
        url = self.url(path_or_url)
        idempotent = method in ("GET", "HEAD") if retry is None else retry

        def once() -> requests.Response:
            return self._follow(Request(method, url, dict(headers or {}), body, stream=stream), scopes, follow)

        try:
            return self._with_retries(once, idempotent, on_retry)
        except CONNECTION_ERRORS as e:
            raise RegistryError(f"cannot reach registry {self.label}: {brief(e)}",
                                hint="check the address, and that the registry is running") from None

    def _follow(self, req: Request, scopes: Sequence[str], follow: bool) -> requests.Response:
        hops = 0
        while True:
            if self.same_host(req.url):
                resp = self._drive(req, scopes)
            else:   # another host (a CDN): never our Authorization
                req.headers.pop("Authorization", None)
                resp = self.send_raw(req)
            if not follow or resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            loc = resp.headers.get("Location")
            if not loc or hops >= 5:
                return resp
            resp.close()
            hops += 1
            method = "GET" if resp.status_code == 303 else req.method
            headers = {k: v for k, v in req.headers.items() if k.lower() != "authorization"}
            req = Request(method, urljoin(req.url, loc), headers, req.body, stream=req.stream)
