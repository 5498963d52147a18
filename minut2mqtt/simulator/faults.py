"""Scripted faults: the next N API calls (all, or those under a path) answer an error status.

`FailurePlan` is not thread-safe: SimulatedAccount holds its lock around every call.
"""

from dataclasses import dataclass

from .api import API_PREFIX, OAUTH_PATHS


@dataclass
class PlannedFailure:
    remaining: int
    status: int
    retry_after: int | None
    path_prefix: str | None

    def applies_to(self, path: str) -> bool:
        """Whether a request to `path` (with or without /v8) is one this failure targets.

        Without a prefix it targets every API call but the OAuth endpoints (token, authorize);
        those are only targeted by a prefix that names them (e.g. "/oauth" or "/v8/oauth/token").
        """
        if self.path_prefix is None:
            return path not in OAUTH_PATHS
        prefix = self.path_prefix.removeprefix(API_PREFIX)
        if path in OAUTH_PATHS and not prefix.startswith("/oauth"):
            return False
        return path.removeprefix(API_PREFIX).startswith(prefix)


class FailurePlan:
    """Planned failures in the order they were planned; the first that applies is served."""

    def __init__(self) -> None:
        self._planned: list[PlannedFailure] = []

    def add(self, count: int, status: int, retry_after: int | None, paths: str | None) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        self._planned.append(PlannedFailure(count, status, retry_after, paths))

    def cancel(self) -> None:
        self._planned.clear()

    def take(self, path: str) -> PlannedFailure | None:
        """The failure a request to `path` gets, if any; it counts as served."""
        for failure in self._planned:
            if failure.applies_to(path):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._planned.remove(failure)
                return failure
        return None
