"""The Minut API client: one authenticated session, typed errors; requests scheduled."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from ..settings import AccountConfig, MinutSettings
from .errors import MinutApiError, MinutAuthError, no_answer_reason, retry_after_seconds
from .scheduler import Priority, RequestScheduler
from .tokens import ClientCredentialsTokens, TokenSource, allow_plain_http_for, token_url
from .user_tokens import AuthorizationCodeTokens

__all__ = ["MinutApiError", "MinutAuthError", "MinutClient"]

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
"""Objects asked for per page of a list: one request for most accounts, a few for the largest
(each waits for a place in the 5-per-second window). Where the API pages by less, its paging
object or a short page that turns out not to be the last says so (see `get_list`)."""
SMALLEST_PLAUSIBLE_CAP = 50
"""A page shorter than asked for, without a paging object, may be the API's own limit rather than
the end of the list; from this length on one more request tells which. Below it, the end."""
SHORT_PAGE_TRUSTED_FOR = 3600.0
"""Seconds a path's short pages are taken as the end once one more request showed that one was:
the check costs a request, and polls would otherwise pay it every time."""
MAX_PAGES = 500
"""A bound on the requests one list may take (50,000 objects even at 100 a page)."""


class MinutClient:
    """One authenticated session to the Minut API; every call waits for its turn to be sent."""

    def __init__(
        self,
        api_url: str,
        client_id: str = "",
        client_secret: str = "",
        *,
        timeout: float = 20.0,
        scheduler: RequestScheduler | None = None,
        clock: Callable[[], float] = time.time,
        tokens: TokenSource | None = None,
    ):
        """`tokens` defaults to the client-credentials grant of `client_id`; a source given
        instead must spend the same `scheduler`."""
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self.scheduler = scheduler or RequestScheduler(per_minute=100)
        self.page_size = PAGE_SIZE
        """Objects asked for per page of a list."""
        self._page_caps: dict[str, int] = {}
        """Paths whose pages turned out to stop at fewer objects than asked, and where."""
        self._short_page_trusted_until: dict[str, float] = {}
        self._http = requests.Session()
        self.responses: Counter[str] = Counter()
        """API answers by HTTP status, `error` when none came (for /metrics)."""
        allow_plain_http_for(self.api_url)
        self.tokens: TokenSource = tokens or ClientCredentialsTokens(
            self.api_url,
            client_id,
            client_secret,
            scheduler=self.scheduler,
            timeout=timeout,
            clock=clock,
        )

    @classmethod
    def from_settings(
        cls,
        minut: MinutSettings,
        timeout: float | None = None,
        *,
        state_dir: Path | None = None,
        page_url: str = "the bridge's web page",
        account: AccountConfig | None = None,
    ) -> MinutClient:
        """The client of `account` (default: the one `minut.client_id` reads), with a request
        budget of its own; `state_dir` keeps a connected account's tokens
        (`minut.auth: authorization_code`), `page_url` is where a person connects one."""
        timeout = minut.request_timeout if timeout is None else timeout
        scheduler = RequestScheduler(per_minute=minut.requests_per_minute)
        if account is None:
            secret = minut.client_secret.get_secret_value()
            account = AccountConfig("", minut.client_id, secret, minut.auth)
        client_id, client_secret = account.client_id, account.client_secret
        tokens: TokenSource | None = None
        if account.auth == "authorization_code":
            if state_dir is None:
                raise ValueError("minut.auth authorization_code keeps its tokens in state_dir")
            tokens = AuthorizationCodeTokens(
                minut.api_url,
                client_id,
                client_secret,
                state_dir,
                scheduler=scheduler,
                timeout=timeout,
                page_url=page_url,
            )
        return cls(
            minut.api_url,
            client_id,
            client_secret,
            timeout=timeout,
            scheduler=scheduler,
            tokens=tokens,
        )

    @property
    def token_url(self) -> str:
        return token_url(self.api_url)

    def get_devices(self) -> list[dict[str, Any]]:
        return self.get_list("/devices", "devices", id_key="device_id")

    def get_homes(self) -> list[dict[str, Any]]:
        return self.get_list("/homes", "homes", id_key="home_id")

    def get_list(
        self,
        path: str,
        key: str,
        *,
        id_key: str,
        params: dict[str, Any] | None = None,
        page_size: int | None = None,
        max_pages: int = MAX_PAGES,
        priority: Priority = Priority.POLL,
    ) -> list[dict[str, Any]]:
        """Every object of a list endpoint, page after page (how far lists page is unknown).

        A `paging` object in the answer (`total_count`, `offset`) is followed; without one, a
        full page may have a next one, asked for with `offset`, until a page is short, empty,
        or the same again (an API that ignores `offset`). A short page of a plausible limit's
        length is followed once more (at most once an hour per path, SHORT_PAGE_TRUSTED_FOR):
        if more came, that length is the API's limit for this path, asked for from then on.
        A page longer than asked for means the API ignores `limit`: that is the whole list.
        """
        page_size = self._page_caps.get(path) or page_size or self.page_size
        items: list[dict[str, Any]] = []
        seen: set[object] = set()
        unsure_end: int | None = None
        """The length of the last page, when it was short but may have been the API's limit."""
        for _ in range(max_pages):
            query = {**(params or {}), "limit": page_size, "offset": len(items)}
            answer = self.request("GET", path, params=query, priority=priority)
            page = _list_of_objects(answer, key, path)
            new = [item for item in page if id_key not in item or item[id_key] not in seen]
            seen.update(item.get(id_key) for item in page)
            if page and not new:
                log.warning(
                    "GET %s answered the same objects again for offset %d: it does not page "
                    "by offset, so only the first %d are read",
                    path,
                    len(items),
                    len(items),
                )
                return items
            if unsure_end is not None and new:
                page_size = self._page_caps[path] = unsure_end
                log.info("GET %s answers at most %d objects a page", path, page_size)
            elif unsure_end is not None:
                self._short_page_trusted_until[path] = time.monotonic() + SHORT_PAGE_TRUSTED_FOR
            items += new
            total = paging_total(answer)
            if total is not None:
                if not new or len(items) >= total:
                    return items
                continue
            unsure_end = None
            if not page or len(page) > page_size:  # empty: the end; longer: `limit` ignored
                return items
            if len(page) < page_size:
                if self._is_the_end(path, len(page)):
                    return items
                unsure_end = len(page)
        log.warning(
            "GET %s: still more after %d pages of %d; reading the first %d only",
            path,
            max_pages,
            page_size,
            len(items),
        )
        return items

    def _is_the_end(self, path: str, short_page: int) -> bool:
        """Whether a page shorter than asked for (no paging object) ends the list."""
        return (
            path in self._page_caps
            or short_page < SMALLEST_PLAUSIBLE_CAP
            or time.monotonic() < self._short_page_trusted_until.get(path, 0.0)
        )

    def request(
        self, method: str, path: str, *, priority: Priority = Priority.POLL, **kwargs: Any
    ) -> Any:
        """JSON answer of one API call; renews the token when it is due or refused once."""
        token = self.tokens.access_token()
        response = self._send(method, path, token, priority, **kwargs)
        if response.status_code == 401:
            log.info("Minut API refused the access token; requesting a new one")
            token = self.tokens.renew(refused=token)
            response = self._send(method, path, token, priority, **kwargs)
        if response.status_code >= 400:
            error = _error_from(response, f"{method} {path}")
            if response.status_code == 429:
                self.scheduler.pause(error.retry_after)
            raise error
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MinutApiError(
                f"{method} {path}: answer is not JSON", response.status_code
            ) from None

    def _send(
        self, method: str, path: str, token: str, priority: Priority, **kwargs: Any
    ) -> requests.Response:
        self.scheduler.acquire(priority)
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        try:
            response = self._http.request(
                method, f"{self.api_url}{path}", headers=headers, timeout=self._timeout, **kwargs
            )
        except requests.RequestException as error:
            self.responses["error"] += 1
            raise MinutApiError(f"{method} {path}: {no_answer_reason(error)}") from None
        self.responses[str(response.status_code)] += 1
        return response


def _error_from(response: requests.Response, what: str) -> MinutApiError:
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    reason = response.reason or ""
    try:
        body = response.json()
        if isinstance(body, dict):
            reason = str(body.get("error_description") or body.get("error") or reason)
    except ValueError:
        pass
    return MinutApiError(
        f"{what}: HTTP {response.status_code} {reason}".strip(), response.status_code, retry_after
    )


def _list_of_objects(answer: Any, key: str, path: str) -> list[dict[str, Any]]:
    items = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise MinutApiError(f"GET {path}: answer has no '{key}' list")
    return [item for item in items if isinstance(item, dict)]


def paging_total(answer: Any) -> int | None:
    """`paging.total_count` of a list answer, when the API says how long the list is."""
    paging = answer.get("paging") if isinstance(answer, dict) else None
    total = paging.get("total_count") if isinstance(paging, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None
