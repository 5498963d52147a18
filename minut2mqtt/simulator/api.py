"""What every part of the simulated Minut API shares: its URL paths, the JSON-object type, and the
shapes of its answers where the contract says *unknown* (how lists page, how deliveries prove
where they come from, which endpoint arms a home, what a guest's fields are called), so that
tests can make the simulator give each possible answer."""

from dataclasses import dataclass
from typing import Any, Final, Literal

JsonObject = dict[str, Any]
"""A JSON object as the API sends and the simulator stores it (homes, devices, events)."""

API_PREFIX: Final = "/v8"
TOKEN_PATH: Final = API_PREFIX + "/oauth/token"
AUTHORIZE_PATH: Final = API_PREFIX + "/oauth/authorize"
OAUTH_PATHS: Final = frozenset({TOKEN_PATH, AUTHORIZE_PATH})
"""The OAuth endpoints: no bearer token, no request budget, and spared by untargeted faults."""
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Paging:
    """How a list endpoint pages.

    `default_limit`: the page answered without a `limit` (None: the whole list);
    `max_limit`: the largest page it gives whatever `limit` asks (None: no bound);
    `paging_object`: the answer carries `{"paging": {total_count, limit, offset}}`;
    `honours_limit`, `honours_offset`: whether those query arguments are obeyed at all.
    """

    default_limit: int | None = None
    max_limit: int | None = None
    paging_object: bool = True
    honours_limit: bool = True
    honours_offset: bool = True

    def page(self, items: list[JsonObject], limit: int | None, offset: int) -> JsonObject:
        """The part of `items` one request gets, with its paging object if the endpoint has one."""
        size = limit if limit is not None and self.honours_limit else self.default_limit
        if size is not None and self.max_limit is not None:
            size = min(size, self.max_limit)
        start = offset if self.honours_offset else 0
        chosen = items[start:] if size is None else items[start : start + size]
        if not self.paging_object:
            return {"items": chosen}
        paging = {"total_count": len(items), "limit": size or len(items), "offset": start}
        return {"items": chosen, "paging": paging}


HOMES_PAGING: Final = Paging(default_limit=100, max_limit=100)
"""Seen on the real API: `GET /homes` answers 100 homes and a paging object."""
DEVICES_PAGING: Final = Paging(default_limit=None, paging_object=False)
"""The contract: one `GET /devices` returns every device (a `limit` is obeyed, without paging)."""
EVENTS_PAGING: Final = Paging(default_limit=50, max_limit=500, paging_object=False)
"""The account-wide `GET /events`: pages by `limit`, no paging object (its paging is unknown)."""


@dataclass(frozen=True)
class DeliveryStyle:
    """How a webhook delivery proves where it comes from (the contract does not say).

    `token_in`: where the registration token goes (`header`, the body's `token` field, nowhere);
    `signature_format`: the HMAC-SHA256 of the raw body as `hex`, `sha256=<hex>` or `base64`
    (None: not signed).
    """

    signature_header: str = "X-Minut-Signature"
    signature_format: Literal["hex", "sha256=hex", "base64"] | None = "hex"
    token_in: Literal["header", "body", "nowhere"] = "header"
    token_header: str = "X-Minut-Token"


EndpointAnswer = Literal["works", "not_found", "not_allowed"]
"""What an endpoint that may or may not exist does: its job, or 404, or 405."""


@dataclass(frozen=True)
class AlarmEndpoints:
    """Which requests arm and disarm a home (the contract has seen three; v8 clients PATCH).

    `patch_alarm`, `put_alarm`: `PATCH` and `PUT /homes/{id}/alarm`;
    `put_home`: the `alarm_status` field of `PUT /homes/{id}`, where `ignored` answers 200 and
    leaves the alarm as it was, and 404/405 are answered only when the body carries that field
    (the rest of the body, `disturbance_monitoring_active`, keeps working).
    """

    patch_alarm: EndpointAnswer = "works"
    put_alarm: EndpointAnswer = "not_allowed"
    put_home: EndpointAnswer | Literal["ignored"] = "ignored"


V8_ALARM_ENDPOINTS: Final = AlarmEndpoints()
"""The default: only v8's `PATCH /homes/{id}/alarm` arms."""
OLD_ALARM_ENDPOINTS: Final = AlarmEndpoints(
    patch_alarm="not_found", put_alarm="not_found", put_home="works"
)
"""An API where only older clients' `PUT /homes/{id}` with `alarm_status` arms."""
EVERY_ALARM_ENDPOINT: Final = AlarmEndpoints(
    patch_alarm="works", put_alarm="works", put_home="works"
)


@dataclass(frozen=True)
class GuestStyle:
    """How the guest endpoints name a stay's fields and list them (the contract does not say).

    The `*_field`s name the guest's id, name, check-in, check-out and phone number;
    `time_format`: `iso` (UTC, like every other time of the API), `iso_offset` (the home's local
    time with its offset) or `epoch` (whole seconds); `list_key`: the key the list is under
    (None: a bare JSON array); `paging`: how the list pages (None: always whole, no paging object).
    """

    id_field: str = "guest_id"
    name_field: str = "name"
    check_in_field: str = "check_in_at"
    check_out_field: str = "check_out_at"
    phone_field: str = "phone_number"
    time_format: Literal["iso", "iso_offset", "epoch"] = "iso"
    list_key: str | None = "guests"
    paging: Paging | None = None

    def __post_init__(self) -> None:
        if self.paging is not None and self.list_key is None:
            raise ValueError("a paged guest list needs a list_key to sit beside its paging")


DEFAULT_GUEST_STYLE: Final = GuestStyle()
OTHER_GUEST_STYLE: Final = GuestStyle(
    id_field="id",
    name_field="guest_name",
    check_in_field="checkin",
    check_out_field="checkout",
    phone_field="phone",
    time_format="iso_offset",
    paging=Paging(default_limit=20, max_limit=50),
)
"""Other names, local times with an offset, and a paging object."""
