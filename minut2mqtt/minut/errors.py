"""What can go wrong when talking to Minut (shared by the client and its token sources)."""

from __future__ import annotations

import socket
import ssl


class MinutApiError(Exception):
    """A request to the Minut API failed; `retry_after` is the API's own hint, if it gave one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class MinutAuthError(MinutApiError):
    """Minut refused our credentials or grant: nothing works until the user fixes them.

    Its status is 401 whatever the token endpoint answered (invalid_grant comes as a 400): to
    the request that needed the token, this is "unauthorized", not "bad request".
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message, 401, retry_after)


def retry_after_seconds(header: str | None) -> float | None:
    """The seconds of a `Retry-After` header (only the delay form is understood)."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None


def no_answer_reason(error: BaseException) -> str:
    """Why a request got no answer, in words a user can act on (DNS, refused, TLS, timeout)."""
    cause: BaseException | None = error
    for _ in range(10):  # requests → urllib3 → socket: a short chain
        if cause is None:
            break
        if isinstance(cause, TimeoutError) or type(cause).__name__.endswith("Timeout"):
            return "no answer in time (timeout)"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens there)"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        reason = getattr(cause, "reason", None)
        cause = (
            reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
        ) or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
    return f"{type(error).__name__}: {error}"
