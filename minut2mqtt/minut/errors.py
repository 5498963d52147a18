"""What can go wrong when talking to Minut (shared by the client and its token sources)."""

from __future__ import annotations


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
