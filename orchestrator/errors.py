"""The one exception hierarchy of APX.

Refused intents (duplicate, rate limited, rejected by a validator) are *not*
exceptions: they are :class:`orchestrator.decision.Decision` values that get
recorded. Exceptions are for input we cannot even record, and for failures.
Each class says what the caller should do about it::

    ApxError                      root; ``code``, ``retryable``, ``intent_id``
    ├── BadInput                  the caller sent something we cannot read (CLI exit 2)
    │   ├── IntentFormatError     YAML/JSON syntax, envelope fields, size, kinds, names
    │   ├── UnknownEnvironment    an environment apx.yaml does not configure
    │   ├── HomeError             APX_HOME missing, or exists and --force was not given
    │   └── PolicyLoadError       a bundle that does not load or compile (validators.policy)
    ├── NotFound                  an id or resource that does not exist (exit 2)
    ├── Unauthenticated           no token, or one that principals.yaml does not know (HTTP 401)
    ├── Forbidden                 the principal's role or tenants do not allow it (HTTP 403)
    └── InternalError             our fault or our dependencies' (exit 4)
        ├── StorageError          the intent log could not be read or written
        ├── RepoError             git failed (signing, refs, objects)
        ├── BranchMoved           a compare-and-swap on a branch lost a race (retryable)
        ├── LockTimeout           an environment stayed locked too long (retryable)
        └── PolicyServerUnavailable  the OPA server did not answer (validators.policy; retryable)

The one place that maps these to exit codes is :func:`orchestrator.cli.main`;
the one place that maps them to HTTP statuses is :mod:`orchestrator.api.errors`.
"""

from __future__ import annotations


class ApxError(Exception):
    """APX failed."""

    code = "apx_error"
    retryable = False

    def __init__(self, message: str | None = None, *, intent_id: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.intent_id = intent_id

    @property
    def message(self) -> str:
        return str(self.args[0])


class BadInput(ApxError):
    """The input could not be read."""

    code = "bad_input"


class IntentFormatError(BadInput):
    """The intent is malformed."""

    code = "intent_format"


class UnknownEnvironment(BadInput):
    """The environment is not configured in apx.yaml."""

    code = "unknown_environment"


class HomeError(BadInput):
    """The APX home cannot be used."""

    code = "home"


class NotFound(ApxError):
    """No such object."""

    code = "not_found"


class Unauthenticated(ApxError):
    """A valid API token is required."""

    code = "unauthenticated"


class Forbidden(ApxError):
    """Not allowed for this principal."""

    code = "forbidden"


class InternalError(ApxError):
    """APX failed internally; the intent was recorded as failed if it could be."""

    code = "internal"


class StorageError(InternalError):
    """The intent log could not be read or written."""

    code = "storage"
    retryable = True


class RepoError(InternalError):
    """The config repository operation failed."""

    code = "repo"


class BranchMoved(InternalError):
    """The branch moved while we were writing to it."""

    code = "branch_moved"
    retryable = True


class LockTimeout(InternalError):
    """Timed out waiting for the environment lock."""

    code = "lock_timeout"
    retryable = True
