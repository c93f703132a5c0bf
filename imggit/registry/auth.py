"""Registry authentication as a generator flow (no I/O here).

``Authenticator.flow(request, scopes)`` yields the requests to send and
receives their responses, httpx-style, so the whole Bearer handshake can be
driven by a test without a network::

    flow = auth.flow(Request("GET", url), ["repository:app:pull"])
    req = next(flow)                       # the request, with what we know already
    req = flow.send(response_401)          # -> the token request (realm?service=&scope=)
    req = flow.send(token_response)        # -> the original request, now with a Bearer token
    flow.send(response_200)                # StopIteration(value=response_200)

Bearer (distribution's token spec): the challenge names ``realm``,
``service`` and maybe ``scope``; the token is asked for every scope the
request needs plus the challenge's (a cross-repository mount asks for
``repository:<from>:pull`` as well), with Basic credentials or anonymously,
or by OAuth2 POST with a refresh token (``identitytoken``). Tokens are
cached per scope set until they expire; a 401 despite a token fetches a
fresh one once (it may have expired early, or lacked a scope). Basic: credentials are sent once a challenge asked for them.
A final 401 is handed back to the caller, which knows what it was doing.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping, Protocol, Sequence
from urllib.parse import urlencode

from ..errors import RegistryAuthError, RegistryError
from .creds import Credentials, hint_for

Body = Any   # bytes, None, or a callable returning a fresh body (file object or iterable of bytes)


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = None
    form: dict[str, str] | None = None      # an urlencoded form body (token POST)
    stream: bool = False


class Response(Protocol):
    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...

    def close(self) -> None: ...


Flow = Generator[Request, Response, Response]


# --- WWW-Authenticate --------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str                       # lowercase: "bearer", "basic"
    params: Mapping[str, str]

    @property
    def scopes(self) -> list[str]:
        s = self.params.get("scope", "")
        return [x for x in s.split(" ") if x]


def _tokens(value: str) -> Iterator[tuple[str, str]]:
    """Lex a header into ('tok', word), ('str', quoted), ('=', '='), (',', ',')."""
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t":
            i += 1
        elif c in "=,":
            yield c, c
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(value[j])
                j += 1
            yield "str", "".join(buf)
            i = j + 1
        else:
            j = i
            while j < n and value[j] not in ' \t=,"':
                j += 1
            yield "tok", value[i:j]
            i = j


def parse_challenges(value: str | None) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (several may share one header)."""
    if not value:
        return []
    toks = list(_tokens(value))
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "tok" and i + 1 < len(toks) and toks[i + 1][0] == "=":
            # key=value, value quoted or a token (base64 token68 may end in '=')
            val = ""
            if i + 2 < len(toks) and toks[i + 2][0] in ("tok", "str"):
                val = toks[i + 2][1]
                i += 3
            else:
                i += 2
            params[text.lower()] = val
        elif kind == "tok":
            if scheme is not None:
                out.append(Challenge(scheme, params))
            scheme, params = text.lower(), {}
            i += 1
        else:
            i += 1
    if scheme is not None:
        out.append(Challenge(scheme, params))
    return out


def pick(challenges: Sequence[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


# --- tokens -----------------------------------------------------------------------------------


@dataclass
class Token:
    value: str
    expires_at: float
    scopes: frozenset[str]


def _merge_scopes(scopes: Iterable[str]) -> list[str]:
    """Merge ``repository:x:pull`` and ``repository:x:push`` into ``repository:x:pull,push``."""
    by_res: dict[str, list[str]] = {}
    order: list[str] = []
    for s in scopes:
        res, _, actions = s.rpartition(":")
        if not res:
            res, actions = s, ""
        if res not in by_res:
            by_res[res] = []
            order.append(res)
        for a in actions.split(","):
            if a and a not in by_res[res]:
                by_res[res].append(a)
    return [f"{r}:{','.join(sorted(by_res[r]))}" if by_res[r] else r for r in order]


def _covers(have: frozenset[str], want: Iterable[str]) -> bool:
    held: dict[str, set[str]] = {}
    for s in have:
        res, _, acts = s.rpartition(":")
        held.setdefault(res, set()).update(a for a in acts.split(",") if a)
    for s in want:
        res, _, acts = s.rpartition(":")
        if not set(a for a in acts.split(",") if a) <= held.get(res, set()):
            return False
    return True


class Authenticator:
    """Auth state for one registry host; shared by threads."""

    def __init__(self, host: str, creds: Credentials | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.creds = creds
        self.clock = clock
        self.scheme: str | None = None            # learned from a challenge
        self.bearer: Challenge | None = None
        self._tokens: list[Token] = []
        self._lock = threading.Lock()
        self._gates: dict[frozenset[str], threading.Lock] = {}
        self.tokens_fetched = 0

    # --- state ---------------------------------------------------------------------

    def learn(self, resp: Response) -> None:
        """Remember the challenge of a 401 (from the ping), so later requests authenticate up front."""
        if resp.status_code != 401:
            return
        chal = pick(parse_challenges(resp.headers.get("WWW-Authenticate")))
        if chal is not None:
            self._adopt(chal)

    def _adopt(self, chal: Challenge) -> None:
        with self._lock:
            self.scheme = chal.scheme
            if chal.scheme == "bearer":
                self.bearer = chal

    def _cached(self, scopes: Sequence[str]) -> Token | None:
        now = self.clock()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires_at > now]
            for t in self._tokens:
                if _covers(t.scopes, scopes):
                    return t
        return None

    def _forget(self, token: Token | None) -> None:
        with self._lock:
            self._tokens = [t for t in self._tokens if t is not token]

    def _basic_header(self) -> str | None:
        c = self.creds
        if c is None or not c.username or c.password is None:
            return None
        return "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()

    # --- the flow ------------------------------------------------------------------------

    def flow(self, req: Request, scopes: Sequence[str]) -> Flow:
        token: Token | None = None
        if self.scheme == "basic" and self._basic_header():
            req.headers["Authorization"] = self._basic_header()  # type: ignore[assignment]
        elif self.scheme == "bearer" and self.bearer is not None:
            token = self._cached(scopes)
            if token is None:
                token = yield from self._fetch_once(self.bearer, scopes)
            req.headers["Authorization"] = "Bearer " + token.value
        resp = yield req
        if resp.status_code != 401:
            return resp
        chal = pick(parse_challenges(resp.headers.get("WWW-Authenticate")))
        if chal is None:
            return resp
        if chal.scheme == "basic":
            basic = self._basic_header()
            already = req.headers.get("Authorization", "").startswith("Basic ")
            self._adopt(chal)
            if basic is None or already:
                return resp             # no credentials, or these were refused
            resp.close()
            req.headers["Authorization"] = basic
            return (yield req)
        if chal.scheme != "bearer":
            return resp
        # a token that expired (or never matched this request): one fresh token, with the
        # scopes the challenge adds (insufficient_scope), then the caller gets the answer
        self._adopt(chal)
        self._forget(token)
        token = yield from self._fetch(chal, _merge_scopes([*scopes, *chal.scopes]))
        resp.close()
        req.headers["Authorization"] = "Bearer " + token.value
        return (yield req)

    def _fetch_once(self, chal: Challenge, scopes: Sequence[str]) -> Generator[Request, Response, Token]:
        """A token for these scopes: threads that want the same one wait for the first to get it."""
        key = frozenset(_merge_scopes(scopes))
        with self._lock:
            gate = self._gates.setdefault(key, threading.Lock())
        gate.acquire()
        try:
            token = self._cached(scopes)
            if token is None:
                token = yield from self._fetch(chal, scopes)
            return token
        finally:
            gate.release()

    def _fetch(self, chal: Challenge, scopes: Sequence[str]) -> Generator[Request, Response, Token]:
        realm = chal.params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} asked for a token but named no realm", status=401)
        scopes = _merge_scopes([*scopes, *chal.scopes])
        service = chal.params.get("service")
        c = self.creds
        if c is not None and c.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": c.identity_token, "client_id": "imggit"}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            treq = Request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form=form)
        else:
            q: list[tuple[str, str]] = []
            if service:
                q.append(("service", service))
            q.extend(("scope", s) for s in scopes)
            if c is not None and c.username:
                q.append(("account", c.username))
            sep = "&" if "?" in realm else "?"
            treq = Request("GET", realm + (sep + urlencode(q) if q else ""), {})
            basic = self._basic_header()
            if basic:
                treq.headers["Authorization"] = basic
        resp = yield treq
        try:
            if resp.status_code in (401, 403):
                who = f"the credentials from {c.source}" if c and c.source else "anonymous access"
                raise RegistryAuthError(
                    f"the token server of {self.host} refused {who} (HTTP {resp.status_code})",
                    hint=hint_for(self.host) if c is None else "check the user name and password",
                    status=resp.status_code, code="UNAUTHORIZED")
            if resp.status_code != 200:
                raise RegistryError(f"the token server of {self.host} answered HTTP {resp.status_code}",
                                    status=resp.status_code)
            try:
                data = resp.json()
            except ValueError:
                raise RegistryError(f"the token server of {self.host} answered something that is not JSON") from None
        finally:
            resp.close()
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not value:
            raise RegistryError(f"the token server of {self.host} sent no token")
        try:
            ttl = float(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            ttl = 60.0
        tok = Token(str(value), self.clock() + max(1.0, ttl * 0.9 - 1.0), frozenset(scopes))
        with self._lock:
            self._tokens.append(tok)
            self.tokens_fetched += 1
        return tok
