"""How long a loop waits before it asks Minut again after a failure."""

from __future__ import annotations

import random

from ..minut.errors import MinutApiError

FIRST_RETRY_SECONDS = 5.0


def retry_delay(error: MinutApiError, failures: int, ceiling: float) -> float:
    """Exponential backoff with jitter up to `ceiling`, never shorter than the API's Retry-After."""
    backoff = min(ceiling, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
    delay: float = backoff * random.uniform(0.5, 1.0)
    return max(delay, error.retry_after or 0.0)
