"""Domain errors: what a request can run into that is not a bug. Each class carries its HTTP
status, and the app maps the base class to an answer once (``{"detail": message}``)."""


class DomainError(Exception):
    """Base of every error the API answers with its ``status_code`` and the message."""

    status_code = 400


class RunNotFound(DomainError):
    """No run with that id."""

    status_code = 404


class SweepNotFound(DomainError):
    """No sweep with that id."""

    status_code = 404


class NotComputed(DomainError):
    """The run has no such tolerance, layer or file (the message says what it has)."""

    status_code = 404


class InvalidTransition(DomainError):
    """A status change the run's status machine does not allow (server/store/lifecycle.py)."""

    status_code = 409


class NotApplicable(DomainError):
    """A view that needs a particular kind of sweep (or a finished one) was asked of another;
    the message says what does not fit."""

    status_code = 409
