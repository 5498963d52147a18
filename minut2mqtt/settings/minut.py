"""The `minut` section: the API, the default account's OAuth client and `minut.accounts`, the
further client-credentials accounts one bridge reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from .sections import CALLBACK_PATH, TOPIC_SEGMENT, Section

DEFAULT_ACCOUNT = "default"
"""The name of the account `minut.client_id` reads (its files stay at the top of state_dir)."""
CONNECTED_PREFIX = "user-"
"""Accounts connected on the page (authorization_code) are named `user-<Minut user id>`."""
MAX_NAME_LENGTH = 64
Auth = Literal["client_credentials", "authorization_code"]


def account_in_webhook_path(part: str | None) -> str:
    """The account a delivery to `/webhook/<secret>[/<part>]` names (the bare path: the default)."""
    return DEFAULT_ACCOUNT if part is None else part


@dataclass(frozen=True)
class AccountConfig:
    """One Minut account the bridge reads: its name and its OAuth client."""

    name: str
    client_id: str
    client_secret: str
    auth: Auth = "client_credentials"


class AccountSettings(Section):
    """One entry of `minut.accounts`: a further account read with client credentials."""

    name: str = Field(
        "", description="the account's name: in logs, status, metrics and its webhook path"
    )
    client_id: str = Field("", description="id of that account's OAuth client")
    client_secret: SecretStr = Field(SecretStr(""), description="secret of that OAuth client")


class MinutSettings(Section):
    api_url: str = "https://api.minut.com/v8"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    auth: Auth = Field(
        "client_credentials",
        description="client_credentials: the account that owns the OAuth client; "
        "authorization_code: an account connected on the bridge's page (partner clients)",
    )
    redirect_uri: str | None = Field(
        None,
        description="OAuth callback for authorization_code, <address of the page>/api/minut; "
        "null: derived from the browser's request (set it behind a reverse proxy)",
    )
    poll_interval: float = Field(300, ge=10, description="seconds between polls")
    stale_after: float = Field(
        7200,
        ge=60,
        description="seconds after which a reading without a newer one is published as stale",
    )
    request_timeout: float = Field(20, gt=0, description="seconds before an API request gives up")
    requests_per_minute: int = Field(
        100,
        ge=1,
        le=120,
        description="request budget the bridge allows itself, per account (the API's is 120)",
    )
    pull_events_after_silence: float = Field(
        900,
        ge=0,
        description="seconds without a webhook delivery after which missed events are pulled "
        "from the homes' histories (0: only at startup and after outages)",
    )

    accounts: list[AccountSettings] = Field(
        default_factory=list,
        description="further accounts, each read with the client credentials of an OAuth "
        "client of its own: {name, client_id, client_secret} (in the environment: a JSON list); "
        "see docs/account.md",
    )

    @field_validator("accounts", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        """The command line gives a string: the list as JSON (the environment is parsed so)."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError(
                    "must be a JSON list of {name, client_id, client_secret}"
                ) from None
        return value

    @model_validator(mode="after")
    def _accounts_distinct(self) -> MinutSettings:
        """Every account named once, with a client of its own; a clear message otherwise."""
        problems: list[str] = []
        seen_names: dict[str, str] = {}
        seen_clients: dict[str, str] = {}
        if self.client_id:
            seen_names[DEFAULT_ACCOUNT] = "minut.client_id (the default account)"
            seen_clients[self.client_id] = "minut.client_id"
        for index, account in enumerate(self.accounts):
            where = f"minut.accounts[{index}]"
            name = account.name
            if not name:
                problems.append(f"{where}: name is missing (letters, digits, '_' or '-')")
            elif not TOPIC_SEGMENT.match(name) or len(name) > MAX_NAME_LENGTH:
                problems.append(
                    f"{where}: name must be 1 to {MAX_NAME_LENGTH} letters, digits, '_' or '-' "
                    f"(it is part of a URL path), got {name!r}"
                )
            elif name.startswith(CONNECTED_PREFIX):
                problems.append(
                    f"{where}: name {name!r} must not start with {CONNECTED_PREFIX!r} (kept for "
                    "accounts connected on the page)"
                )
            elif name in seen_names:
                problems.append(
                    f"{where}: the name {name!r} is already used by {seen_names[name]}: "
                    "every account needs a name of its own"
                )
            else:
                seen_names[name] = where
            label = f"{where} ({name})" if name else where
            if not account.client_id:
                problems.append(f"{label}: client_id is missing")
            elif account.client_id in seen_clients:
                problems.append(
                    f"{label}: client_id {account.client_id!r} is already read by "
                    f"{seen_clients[account.client_id]}: one OAuth client's credentials read "
                    "one account, so this one would be read twice"
                )
            else:
                seen_clients[account.client_id] = where
            if not account.client_secret.get_secret_value():
                problems.append(
                    f"{label}: client_secret is missing (the secret of OAuth client "
                    f"{account.client_id or '?'})"
                )
        if problems:
            raise ValueError("\n    ".join(["the accounts cannot be used:", *problems]))
        return self

    def configured_accounts(self) -> list[AccountConfig]:
        """The default account (unless only `accounts` are set) and every entry of
        `accounts`, in order; accounts connected on the page are found in state_dir at start."""
        found = []
        if self.client_id or not self.accounts:
            secret = self.client_secret.get_secret_value()
            found.append(AccountConfig(DEFAULT_ACCOUNT, self.client_id, secret, self.auth))
        found += [
            AccountConfig(account.name, account.client_id, account.client_secret.get_secret_value())
            for account in self.accounts
        ]
        return found

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("redirect_uri")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with https:// (or http://), got {value!r}")
        if not value.rstrip("/").endswith(CALLBACK_PATH):
            raise ValueError(
                f"must end with {CALLBACK_PATH} (the bridge's callback), got {value!r}"
            )
        return value.rstrip("/")
