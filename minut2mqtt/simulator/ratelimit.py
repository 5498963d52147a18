"""The Minut request budget: a sliding one-minute window plus a short-burst ceiling."""

import math
from collections import defaultdict, deque
from collections.abc import Hashable

WINDOW_SECONDS = 60.0
BURST_WINDOW_SECONDS = 1.0
BURST_TOLERANCE = 2


class SlidingWindowLimiter:
    """Counts admitted requests per key; not thread-safe, the caller holds the lock.

    A request is refused when the key already made `per_minute` requests in the last 60 s, or
    more than `burst_per_second` * BURST_TOLERANCE in the last second. Refused requests do not
    use up budget.
    """

    def __init__(self, per_minute: int, burst_per_second: int) -> None:
        if per_minute < 1 or burst_per_second < 1:
            raise ValueError("rate limits must be at least 1")
        self.per_minute = per_minute
        self.burst_limit = burst_per_second * BURST_TOLERANCE
        self._admitted: defaultdict[Hashable, deque[float]] = defaultdict(deque)

    def admit(self, key: Hashable, now: float) -> int | None:
        """Count a request at monotonic `now`; None when admitted, else Retry-After seconds."""
        admitted = self._admitted[key]
        while admitted and admitted[0] <= now - WINDOW_SECONDS:
            admitted.popleft()
        if len(admitted) >= self.per_minute:
            return max(1, math.ceil(admitted[0] + WINDOW_SECONDS - now))
        if self._count_since(admitted, now - BURST_WINDOW_SECONDS) >= self.burst_limit:
            return 1
        admitted.append(now)
        return None

    @staticmethod
    def _count_since(admitted: deque[float], since: float) -> int:
        count = 0
        for moment in reversed(admitted):
            if moment <= since:
                break
            count += 1
        return count
