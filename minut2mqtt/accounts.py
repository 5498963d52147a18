"""The Minut accounts one bridge reads, each with parts of its own.

An account (`MinutAccount`) has its own client (tokens and request budget), poller, event
catch-up (cursor), webhook registration and webhook path, and its part of the status board, so
that one account's revoked grant or 429s leave the others polling and receiving events. The
default account (`minut.client_id`) keeps its files at the top of state_dir and its webhook at
`/webhook/<secret>`; every other account keeps them under `<state_dir>/accounts/<name>/` and
receives at `/webhook/<secret>/<name>`.

`Accounts` is what the rest of the bridge asks: which client owns a home or a Point
(`client_for_home`, `client_for_device`, for commands), where a webhook delivery belongs, and
the page's connector when users connect several accounts (`minut.auth: authorization_code`).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .core.status import AccountBoard, AccountProbes, StatusBoard
from .minut.client import MinutApiError, MinutClient
from .minut.connected_users import ConnectedUsers, account_dir, stored_user_accounts
from .minut.history import EventPuller
from .minut.models import Event, HookCredentials
from .minut.registration import WebhookRegistration
from .minut.scheduler import RequestScheduler
from .minut.user_tokens import AuthorizationCodeTokens
from .runtime.catch_up import CatchUp
from .runtime.poller import Poller
from .runtime.writer import Writer
from .settings import (
    CONNECTED_PREFIX,
    DEFAULT_ACCOUNT,
    AccountConfig,
    Settings,
    account_in_webhook_path,
)

log = logging.getLogger(__name__)

STAGING = ".connecting"
"""Where a connect on the page keeps its tokens until it knows whose they are (no account's name
can start with a dot)."""


@dataclass
class MinutAccount:
    """One Minut account and the parts that read it."""

    name: str
    client: MinutClient
    status: AccountBoard
    poller: Poller
    puller: EventPuller
    catch_up: CatchUp
    state_dir: Path
    registration: WebhookRegistration | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def hook(self) -> HookCredentials | None:
        """Our hook's credentials at Minut, once `webhook.public_url` registered one."""
        return self.registration.credentials if self.registration is not None else None

    def ensure_webhook(self) -> None:
        if self.registration is not None:
            self.registration.ensure()


class Accounts:
    """Every account the bridge reads; safe to use from any thread."""

    def __init__(
        self,
        settings: Settings,
        writer: Writer,
        status: StatusBoard,
        *,
        page_url: str,
        on_pulled: Callable[[list[Event]], None],
    ) -> None:
        """`on_pulled`: where the events each catch-up pulled go (to the one publisher of
        events: the writer, or the event process)."""
        self._settings = settings
        self._writer = writer
        self._on_pulled = on_pulled
        self._status = status
        self._page_url = page_url
        self._lock = threading.Lock()
        self._accounts: dict[str, MinutAccount] = {}
        self._webhook_base: str | None = None
        self._mqtt_connected: Callable[[float], bool] | None = None
        minut = settings.minut
        configs = minut.configured_accounts()
        self.connector: ConnectedUsers | None = None
        if minut.auth == "authorization_code":
            self.connector = ConnectedUsers(
                AuthorizationCodeTokens(
                    minut.api_url,
                    minut.client_id,
                    minut.client_secret.get_secret_value(),
                    account_dir(settings.state_dir, STAGING),
                    scheduler=RequestScheduler(per_minute=minut.requests_per_minute),
                    timeout=minut.request_timeout,
                    page_url=page_url,
                ),
                settings.state_dir,
                on_connected=self._connected,
            )
            configs += [
                self._user_config(name) for name in stored_user_accounts(settings.state_dir)
            ]
        for config in configs:
            self._add(config)

    # -- what the rest of the bridge asks ------------------------------------------------------

    def __iter__(self) -> Iterator[MinutAccount]:
        with self._lock:
            return iter(list(self._accounts.values()))

    def get(self, name: str) -> MinutAccount | None:
        with self._lock:
            return self._accounts.get(name)

    def client_for_home(self, home_id: str) -> MinutClient | None:
        """The client of the account whose last poll showed the home (a connected one first,
        when several accounts share it); None when no account shows it."""
        return self._client_showing(lambda account: home_id in account.poller.home_ids)

    def client_for_device(self, device_id: str) -> MinutClient | None:
        """The client of the account whose last poll showed the Point (as `client_for_home`)."""
        return self._client_showing(lambda account: device_id in account.poller.device_ids)

    def webhook_path(self, name: str) -> str:
        """Where Minut delivers the account's events: `/webhook/<secret>[/<name>]`."""
        if self._webhook_base is None:
            raise RuntimeError("the webhook path is known once the accounts started")
        suffix = "" if name == DEFAULT_ACCOUNT else f"/{name}"
        return f"{self._webhook_base}{suffix}"

    def account_of_path(self, part: str | None) -> str | None:
        """The account a delivery to `/webhook/<secret>[/<part>]` is for; None: no such one."""
        name = account_in_webhook_path(part)
        return name if self.get(name) is not None else None

    def hook(self, name: str) -> HookCredentials | None:
        account = self.get(name)
        return account.hook if account is not None else None

    def webhook_received(self, name: str) -> None:
        """From a web thread: a delivery for the account came; no pull is due for silence."""
        account = self.get(name)
        if account is not None:
            account.status.webhook_received()
            account.catch_up.note_webhook()

    def delivery_refused(self, name: str) -> None:
        account = self.get(name)
        if account is not None:
            account.catch_up.delivery_refused()

    def note_delivered(self, event: Event) -> None:
        """From the writer: a webhook event was published; its home's cursors may move."""
        for account in self:
            if event.home_id in account.poller.home_ids:
                account.catch_up.note_delivered(event)

    def broker_connected(self) -> None:
        """Whatever the broker outage kept from us comes now (a pull in every account)."""
        for account in self:
            account.catch_up.request()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, webhook_base: str, mqtt_connected: Callable[[float], bool]) -> None:
        """Load the cursors, start every account's poller and catch-up; each registers its
        webhook, `<webhook_base>[/<name>]` (`/webhook/<secret>`), before its first poll."""
        with self._lock:
            self._webhook_base = webhook_base
            self._mqtt_connected = mqtt_connected
        for account in self:
            self._start(account)

    def stop(self) -> None:
        accounts = list(self)
        for account in accounts:
            account.poller.stop()
            account.catch_up.stop()
        for account in accounts:
            for thread in account.threads:
                thread.join(timeout=10)

    def save(self) -> None:
        for account in self:
            account.catch_up.save()

    def disconnect(self, name: str) -> bool:
        """From a web thread: stop reading a user's account connected on the page, delete its
        hook at Minut and its files; what only it showed leaves. False: no such account."""
        if not name.startswith(CONNECTED_PREFIX):
            return False
        with self._lock:
            account = self._accounts.pop(name, None)
        if account is None:
            return False
        account.poller.stop()
        account.catch_up.stop()
        for thread in account.threads:
            thread.join(timeout=10)
        hook = account.hook
        if hook is not None:
            try:
                account.client.request("DELETE", f"/webhooks/{hook.hook_id}")
            except MinutApiError as error:
                log.warning("could not delete account %s's webhook at Minut: %s", name, error)
        if self.connector is not None:
            self.connector.forget(name)
        self._status.forget_account(name)
        self._writer.forget_account(name)
        shutil.rmtree(account.state_dir, ignore_errors=True)
        log.info("Minut account %s disconnected: its files are deleted", name)
        return True

    # -- inside ---------------------------------------------------------------------------------

    def _user_config(self, name: str) -> AccountConfig:
        minut = self._settings.minut
        secret = minut.client_secret.get_secret_value()
        return AccountConfig(name, minut.client_id, secret, "authorization_code")

    def _add(self, config: AccountConfig) -> MinutAccount:
        settings, minut = self._settings, self._settings.minut
        state_dir = account_dir(settings.state_dir, config.name)
        client = MinutClient.from_settings(
            minut, state_dir=state_dir, page_url=self._page_url, account=config
        )
        board = self._status.account(
            config.name,
            AccountProbes(
                api_responses=lambda: client.responses,
                rate_limited=lambda: client.scheduler.rate_limited,
                requests_last_minute=client.scheduler.used_last_minute,
            ),
        )
        puller = EventPuller(client)
        catch_up = CatchUp(
            puller,
            self._on_pulled,
            board,
            state_dir=state_dir,
            silence=minut.pull_events_after_silence,
            retry_ceiling=minut.poll_interval,
        )
        holder: list[MinutAccount] = []
        poller = Poller(
            client,
            self._writer,
            board,
            interval=minut.poll_interval,
            before_poll=lambda: holder[0].ensure_webhook(),
            on_homes=catch_up.homes_known,
            after_outage=catch_up.request,
        )
        account = MinutAccount(config.name, client, board, poller, puller, catch_up, state_dir)
        holder.append(account)
        if self.connector is not None and isinstance(client.tokens, AuthorizationCodeTokens):
            self.connector.track(config.name, client.tokens)
        with self._lock:
            self._accounts[config.name] = account
        return account

    def _start(self, account: MinutAccount) -> None:
        public_url = self._settings.webhook.public_url
        if public_url:
            url = f"{public_url}{self.webhook_path(account.name)}"
            account.registration = WebhookRegistration(account.client, url, account.state_dir)
        account.catch_up.load()
        mqtt_connected = self._mqtt_connected
        assert mqtt_connected is not None
        suffix = "" if account.name == DEFAULT_ACCOUNT else f"-{account.name}"
        for name, target in (
            ("poller", partial(account.poller.run, mqtt_connected)),
            ("catch-up", partial(account.catch_up.run, account.poller.first_attempt_done)),
        ):
            thread = threading.Thread(target=target, name=name + suffix, daemon=True)
            thread.start()
            account.threads.append(thread)

    def _connected(self, name: str) -> None:
        """From a web thread: a user connected on the page; their account polls now."""
        account = self.get(name)
        if account is None:
            account = self._add(self._user_config(name))
            if self._webhook_base is not None:
                self._start(account)
            log.info("Minut account %s added: polling it", name)
        account.poller.request_poll()

    def _client_showing(self, shows: Callable[[MinutAccount], bool]) -> MinutClient | None:
        showing = [account for account in self if shows(account)]
        connected = [account for account in showing if account.status.connected]
        chosen = connected or showing
        return chosen[0].client if chosen else None
