"""Typed errors; the CLI maps them to exit codes in one place.

::

    ImggitError                  exit 1  an operation failed
    ├── UsageError               exit 2  the user asked for something that cannot be
    │   ├── RefError                     unknown, ambiguous or malformed reference
    │   │   └── RegistryNotFound         a registry answered 404: no such repository, tag or blob
    │   └── RevisionError                ~N past the first step, A..B not an ancestor
    ├── FormatError              exit 3  bytes that are not what they claim to be
    │   └── DigestMismatch               a blob whose digest or size does not match
    ├── StoreError               exit 4  a store cannot be reached or used
    │   ├── DaemonError                  the Docker engine refused or is not there
    │   ├── RegistryError(status, code)  a registry is unreachable or refused (HTTP status, error code)
    │   │   └── RegistryAuthError        401/403: credentials missing, wrong, or without access
    │   └── LockTimeout                  another process holds a layout's lock
    └── Conflict                 exit 5  a rewrite found conflicts (rebase --strict)

``NothingToDo`` is not an error: it carries a message and exits 0.

Library code raises these with a message that says what was wrong and, where
there is one, what to do (``hint``). It never prints and never exits.
"""

from __future__ import annotations


class ImggitError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ImggitError):
    exit_code = 2


class RefError(UsageError):
    pass


class RevisionError(UsageError):
    pass


class FormatError(ImggitError):
    exit_code = 3


class DigestMismatch(FormatError):
    pass


class StoreError(ImggitError):
    exit_code = 4


class DaemonError(StoreError):
    pass


class LockTimeout(StoreError):
    pass


class RegistryError(StoreError):
    """A registry answered with an error, or could not be reached (``status`` None)."""

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code


class RegistryAuthError(RegistryError):
    pass


class RegistryNotFound(RefError, RegistryError):
    """404 from a registry: a user mistake (exit 2) that still carries status and code."""


class Conflict(ImggitError):
    exit_code = 5


class NothingToDo(Exception):
    """The request is valid but there is nothing to change (exit 0)."""

    exit_code = 0
