"""A deterministic demo "campaign data" REST API, served over HTTPS on 127.0.0.1.

===========================  ============  ===============================================
endpoint                     auth          answer
===========================  ============  ===============================================
``POST /oauth/token``        client creds  ``{"access_token", "token_type", "expires_in"}``
``POST /v1/coupons``         bearer        one coupon per zip of ``{"params", "data"}``
``POST /v1/coupon-batches``  bearer        the same coupons as an async job: 202, ``Location``
``GET /v1/coupon-batches/ID`` bearer       the job: ``queued``, ``running``, then ``done``
``GET …/ID/coupons?page=``   bearer        its coupons, 10 a page, ``Link: rel="next"``
``GET /v1/offers?page=``     bearer        the latest offers, 3 a page, ``Link: rel="next"``
``GET /v1/offers/by-cursor`` bearer        the same, ``?cursor=``, ``{"offers", "next_cursor"}``
``GET /v1/offers/by-offset`` bearer        the same, ``?offset=&limit=``, ``{"offers", "total"}``
``GET /v1/weather?regions=`` API key       one forecast per region
``GET /v1/lineup?event=``    API key       a match: its teams, each with its players
``GET /v1``                  optional      a status document for the Test button
===========================  ============  ===============================================

Answers are derived from the request alone (hashes and fixed tables, never the clock),
so DAG runs and tests can assert exact values; only the OAuth tokens are random, and a
coupon batch's status moves with time (``job_seconds`` from queued to done). The
regions, segments and zip codes are the audience's (:mod:`.audience`). Errors are JSON
``{"error": ..., "error_description": ...}`` as in RFC 6749. An ``X-Demo-Fail`` header on
any ``/v1`` endpoint simulates a failure, see :data:`FAILURES`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from demo.https_server import JsonRequestHandler, LocalHttpsServer
from demo.switch import FAILURE_HEADER, FAILURES, SLOW_SECONDS
from demo.tls import LocalCA

CLIENT_ID = "campaign-demo"
CLIENT_SECRET = "demo-client-secret-2026"  # noqa: S105 - a published demo credential
API_KEY = "demo-api-key-2026"
API_KEY_HEADER = "X-API-Key"
TOKEN_LIFETIME = 3600
"""Seconds an issued access token stays valid."""

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Larger request bodies get HTTP 413 (the hook itself refuses bodies over 5 MiB)."""


VALID_UNTIL = "2026-12-31"
FORECAST_DATE = "2026-11-23"
KICKOFF = "2026-11-23T20:45:00+01:00"

OFFERS_PER_PAGE = 3
COUPONS_PER_PAGE = 10
JOB_SECONDS = 3.0
"""How long a coupon batch takes by default: queued for the first quarter, then running, then done."""
_BATCH_PATH = re.compile(r"/v1/coupon-batches(?:/(?P<id>b-\d+)(?P<coupons>/coupons)?)?")

_OFFER_FIELDS = ("id", "segment", "title", "discount", "valid_from", "valid_until")
OFFERS: tuple[dict[str, Any], ...] = tuple(
    dict(zip(_OFFER_FIELDS, row, strict=True))
    for row in (
        ("OFF-101", "gold", "Winter lounge upgrade", 20.0, "2026-11-01", "2026-12-31"),
        ("OFF-102", "gold", "Black Friday private sale", 30.0, "2026-11-20", "2026-11-30"),
        ("OFF-103", "gold", "Free express delivery", 10.0, "2026-11-01", "2026-12-24"),
        ("OFF-104", "silver", "Weekend flash sale", 15.0, "2026-11-01", "2026-12-31"),
        ("OFF-105", "silver", "Second item half price", 25.0, "2026-11-15", "2026-12-15"),
        ("OFF-106", "silver", "Loyalty points boost", 5.0, "2026-11-01", "2026-12-31"),
        ("OFF-107", "bronze", "Welcome back discount", 10.0, "2026-11-01", "2026-12-31"),
        ("OFF-108", "bronze", "Newsletter exclusive", 12.5, "2026-11-10", "2026-12-10"),
        ("OFF-109", "bronze", "Free gift wrapping", 5.0, "2026-11-01", "2026-12-24"),
    )
)
"""Three offers per audience segment, each with a different discount."""

_CONDITIONS = {"sun": (9, 18), "cloud": (5, 13), "rain": (3, 11), "snow": (-5, 1)}
"""Weather condition -> (lowest, highest) temperature in °C."""
_TEAMS = (
    "Milano Lions", "Roma Wolves", "Paris Comets", "Lyon Foxes",
    "Amsterdam Herons", "Rotterdam Anchors", "London Ravens", "Manchester Bees",
)  # fmt: skip
_SURNAMES = (
    "Rossi", "Bianchi", "Conti", "Martin", "Bernard", "Dubois", "de Jong", "Bakker", "Visser",
    "Smith", "Jones", "Taylor", "Brown", "Moreau", "Ricci", "Mulder", "Evans", "Laurent",
)  # fmt: skip
_POSITIONS = ("GK", "DF", "DF", "DF", "DF", "MF", "MF", "MF", "MF", "FW", "FW")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_ZIP = re.compile(r"[A-Za-z0-9]{1,10}")

_BAD_GATEWAY_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream campaign service did not answer.</p></body></html>"
)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer: ``status`` with an RFC 6749 style JSON body."""

    def __init__(self, status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        document = {"error": error, "error_description": description}
        self.answer = _Answer(status, json.dumps(document).encode(), headers=dict(headers or {}))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (``hmac`` refuses it in a ``str``)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return document


def coupons(request: Mapping[str, Any]) -> dict[str, Any]:
    """One coupon per ``data`` row of an External API activity body; the code hashes campaign and zip."""
    params = request.get("params", {})
    data = request.get("data")
    if not isinstance(params, dict):
        raise ApiError(400, "invalid_request", "'params' must be an object")
    if not isinstance(data, list):
        raise ApiError(400, "invalid_request", "'data' must be a list of objects with a 'zip'")
    count = params.get("count")
    if count is not None and (type(count) is not int or count != len(data)):
        raise ApiError(400, "invalid_request", f"'params.count' is {count!r} but 'data' has {len(data)} rows")
    campaign = params.get("campaign", "CAMPAIGN")
    if not isinstance(campaign, str) or not _NAME.fullmatch(campaign):
        raise ApiError(400, "invalid_request", "'params.campaign' must be 1-40 letters, digits, '-' or '_'")
    records = []
    for index, row in enumerate(data):
        zip_code = row.get("zip") if isinstance(row, dict) else None
        if not isinstance(zip_code, str) or not _ZIP.fullmatch(zip_code):
            raise ApiError(400, "invalid_request", f"data[{index}].zip must be a string of 1-10 letters or digits")
        digest = _digest(campaign.upper(), zip_code.upper())
        records.append(
            {
                "zip": zip_code,
                "coupon": {
                    "code": f"{campaign.upper()}-{zip_code.upper()}-{digest[:2].hex().upper()}",
                    "discount": (5, 10, 15, 20, 25)[digest[2] % 5],
                },
                "valid_until": VALID_UNTIL,
            }
        )
    return {"data": records, "count": len(records)}


def weather(regions: str) -> dict[str, Any]:
    """One forecast per distinct region in the comma-separated ``regions``, fixed per region name."""
    names = list(dict.fromkeys(name.strip().lower() for name in regions.split(",") if name.strip()))
    if not names:
        raise ApiError(400, "invalid_request", "query parameter 'regions' is required, e.g. regions=north,south")
    if not all(_NAME.fullmatch(name) for name in names):
        raise ApiError(400, "invalid_request", "a region name must be 1-40 letters, digits, '-' or '_'")
    forecasts = []
    for name in names:
        digest = _digest("weather", name)
        condition = list(_CONDITIONS)[digest[0] % len(_CONDITIONS)]
        low, high = _CONDITIONS[condition]
        temp_c = low + digest[1] % (high - low + 1)
        forecasts.append({"region": name, "condition": condition, "temp_c": temp_c, "date": FORECAST_DATE})
    return {"forecasts": forecasts}


def lineup(event: str) -> dict[str, Any]:
    """Tonight's match for ``event``: match → teams → players, as football APIs nest it.

    Two teams of eleven: the two an event name such as "Milano Lions v Roma Wolves" names, else two picked
    by a generator seeded from the event name, which also picks the players.
    """
    if not event.strip() or len(event) > 100:
        raise ApiError(400, "invalid_request", "query parameter 'event' is required (at most 100 characters)")
    rng = random.Random(_digest("lineup", event))
    named = [name.strip() for name in event.split(" v ")]
    # "Milano Lions v Roma Wolves" plays those two; any other event name gets two teams picked for it.
    home, away = (
        named if len(named) == 2 and set(named) <= set(_TEAMS) and named[0] != named[1] else rng.sample(_TEAMS, 2)
    )

    def team(side: str, name: str) -> dict[str, Any]:
        numbers = sorted(rng.sample(range(2, 30), len(_POSITIONS) - 1))
        players = [
            {"number": number, "name": f"{rng.choice('ABCDEFGHJKLMNPRST')}. {rng.choice(_SURNAMES)}", "position": pos}
            for number, pos in zip([1, *numbers], _POSITIONS, strict=True)
        ]
        return {"side": side, "name": name, "players": players}

    match_id = f"M-{_digest('match', event)[:3].hex().upper()}"
    venue = {"name": f"{home.split()[0]} Arena", "city": home.split()[0]}
    teams = [team("home", home), team("away", away)]
    return {"match": {"id": match_id, "event": event, "kickoff": KICKOFF, "venue": venue, "teams": teams}}


def _page(items: list[Any], number: int, size: int, path: str) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` (from 1) and its ``Link: rel="next"`` header when there is a next page."""
    if number < 1:
        raise ApiError(400, "invalid_request", "'page' starts at 1")
    start = (number - 1) * size
    more = start + size < len(items)
    return items[start : start + size], ({"Link": f'<{path}?page={number + 1}>; rel="next"'} if more else {})


def _number(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name, str(default))
    if not value.isascii() or not value.isdecimal():
        raise ApiError(400, "invalid_request", f"query parameter {name!r} must be a whole number")
    return int(value)


def offers_by_page(query: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The offers, ``OFFERS_PER_PAGE`` a page, with RFC 8288 ``Link`` headers."""
    page, link = _page(list(OFFERS), _number(query, "page", 1), OFFERS_PER_PAGE, "/v1/offers")
    return {"offers": page}, link


def offers_by_cursor(query: Mapping[str, str]) -> dict[str, Any]:
    """The offers after the offer id in ``cursor``; ``next_cursor`` is null on the last page."""
    ids = [offer["id"] for offer in OFFERS]
    cursor = query.get("cursor")
    if cursor is not None and cursor not in ids:
        raise ApiError(400, "invalid_request", "unknown cursor")
    start = 0 if cursor is None else ids.index(cursor) + 1
    page = list(OFFERS[start : start + OFFERS_PER_PAGE])
    last = start + OFFERS_PER_PAGE >= len(OFFERS)
    return {"offers": page, "next_cursor": None if last else page[-1]["id"]}


def offers_by_offset(query: Mapping[str, str]) -> dict[str, Any]:
    """The offers from ``offset``, ``limit`` at a time, with the ``total``."""
    offset, limit = _number(query, "offset", 0), _number(query, "limit", OFFERS_PER_PAGE)
    if not 1 <= limit <= 100:
        raise ApiError(400, "invalid_request", "'limit' must be between 1 and 100")
    return {"offers": list(OFFERS[offset : offset + limit]), "total": len(OFFERS)}


def _first_fields_only(value: Any) -> Any:
    """Keep only the first field of every object: ids survive, required fields go missing."""
    if isinstance(value, dict):
        return {key: _first_fields_only(item) for key, item in list(value.items())[:1]}
    if isinstance(value, list):
        return [_first_fields_only(item) for item in value]
    return value


Auth = Literal["bearer", "api_key", "optional"]
Build = Callable[[Mapping[str, str], bytes], Any]
"""An endpoint's answer: a JSON document, a (document, headers) pair, or a whole ``_Answer``."""

_ROUTES: dict[str, tuple[str, Auth, Build]] = {
    "/v1": ("GET", "optional", lambda query, body: {"status": "ok", "service": "campaign demo API"}),
    "/v1/coupons": ("POST", "bearer", lambda query, body: coupons(_json_object(body))),
    "/v1/offers": ("GET", "bearer", lambda query, body: offers_by_page(query)),
    "/v1/offers/by-cursor": ("GET", "bearer", lambda query, body: offers_by_cursor(query)),
    "/v1/offers/by-offset": ("GET", "bearer", lambda query, body: offers_by_offset(query)),
    "/v1/weather": ("GET", "api_key", lambda query, body: weather(query.get("regions", ""))),
    "/v1/lineup": ("GET", "api_key", lambda query, body: lineup(query.get("event", ""))),
}
"""Path -> (method, authentication, answer builder) of every ``/v1`` endpoint."""


@dataclass
class CouponBatch:
    """A coupon batch job: created now, ``queued`` then ``running`` for ``seconds``, then ``done`` (or ``failed``)."""

    id: str
    created: float
    seconds: float
    fails: bool
    coupons: list[dict[str, Any]]

    def status(self) -> str:
        age = time.monotonic() - self.created
        if age < self.seconds / 4:
            return "queued"
        if age < self.seconds:
            return "running"
        return "failed" if self.fails else "done"

    def status_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"id": self.id, "status": self.status(), "count": len(self.coupons)}
        if document["status"] == "done":
            document["links"] = {"result": f"/v1/coupon-batches/{self.id}/coupons"}
        if document["status"] == "failed":
            document["reason"] = f"simulated failure ({FAILURE_HEADER}: job_failed): the code generator stopped"
        return document

    def coupons_page(self, number: int, path: str) -> tuple[dict[str, Any], dict[str, str]]:
        if self.status() != "done":
            raise ApiError(409, "not_ready", f"batch {self.id} is {self.status()}")
        page, link = _page(self.coupons, number, COUPONS_PER_PAGE, path)
        return {"data": page}, link


@dataclass(frozen=True)
class LoggedRequest:
    """One request the API answered. No headers or bodies: they carry credentials."""

    method: str
    path: str
    query: dict[str, str]
    status: int


class _Handler(JsonRequestHandler):
    api: CampaignApi

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            answer = self._answer(path, query)
        except ApiError as err:
            answer = err.answer
        self.api.log(LoggedRequest(self.command, path, query, answer.status))
        self.send_bytes(answer.status, answer.body, content_type=answer.content_type, headers=dict(answer.headers))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _answer(self, path: str, query: Mapping[str, str]) -> _Answer:
        if int(self.headers.get("Content-Length") or 0) > MAX_BODY_BYTES:
            raise ApiError(413, "invalid_request", f"the body is over {MAX_BODY_BYTES} bytes", {"Connection": "close"})
        body = self.read_body()
        if path == "/oauth/token":
            return self._token(body)
        route = _ROUTES.get(path) or self._batch_route(path)
        if route is None:
            raise ApiError(404, "not_found", f"no endpoint {path}")
        method, auth, build = route
        if self.command != method:
            raise ApiError(405, "invalid_request", f"use {method}", {"Allow": method})
        self._authenticate(auth)
        failure = self.headers.get(FAILURE_HEADER, "").strip()
        if failure and failure not in FAILURES:
            raise ApiError(400, "invalid_request", f"{FAILURE_HEADER} must be one of {', '.join(FAILURES)}")
        if failure == "500":
            raise ApiError(500, "server_error", f"simulated failure ({FAILURE_HEADER}: 500)")
        if failure == "503":
            raise ApiError(
                503, "temporarily_unavailable", f"simulated failure ({FAILURE_HEADER}: 503)", {"Retry-After": "0"}
            )
        if failure == "html":
            return _Answer(502, _BAD_GATEWAY_PAGE, "text/html; charset=utf-8")
        if failure == "slow":
            time.sleep(SLOW_SECONDS)
        answer = build(query, body)
        if isinstance(answer, _Answer):
            return answer
        document, headers = answer if isinstance(answer, tuple) else (answer, {})
        if failure == "invalid":
            document = _first_fields_only(document)
        return _Answer(200, json.dumps(document).encode(), headers=headers)

    def _batch_route(self, path: str) -> tuple[str, Auth, Build] | None:
        """The coupon batch endpoints: create, status, and the coupons of a finished batch."""
        match = _BATCH_PATH.fullmatch(path)
        if match is None:
            return None
        if match["id"] is None:
            fail = self.headers.get(FAILURE_HEADER, "").strip() == "job_failed"
            return "POST", "bearer", lambda query, body: self.api.create_batch(_json_object(body), fail=fail)
        batch = self.api.batch(match["id"])
        if match["coupons"]:
            return "GET", "bearer", lambda query, body: batch.coupons_page(_number(query, "page", 1), path)
        return "GET", "bearer", lambda query, body: batch.status_document()

    def _token(self, body: bytes) -> _Answer:
        """OAuth2 client credentials (RFC 6749 §4.4), the client authenticated by HTTP Basic or form fields."""
        if self.command != "POST":
            raise ApiError(405, "invalid_request", "use POST", {"Allow": "POST"})
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(credentials, validate=True).decode().partition(":")
            except ValueError:
                client_id = client_secret = ""
        if not (_same(client_id, CLIENT_ID) and _same(client_secret, CLIENT_SECRET)):
            raise ApiError(401, "invalid_client", "unknown client or wrong secret", {"WWW-Authenticate": "Basic"})
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        document = {"access_token": self.api.issue_token(), "token_type": "bearer", "expires_in": TOKEN_LIFETIME}
        return _Answer(200, json.dumps(document).encode())

    def _authenticate(self, auth: Auth) -> None:
        """Check the endpoint's credentials; ``optional`` still rejects credentials that are presented and wrong."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        bearer = token if scheme.lower() == "bearer" else None
        api_key = self.headers.get(API_KEY_HEADER)
        checks_bearer = auth == "bearer" or (auth == "optional" and bearer is not None)
        if checks_bearer and not (bearer and self.api.token_is_valid(bearer)):
            raise ApiError(401, "invalid_token", "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        checks_key = auth == "api_key" or (auth == "optional" and api_key is not None)
        if checks_key and not (api_key and _same(api_key, API_KEY)):
            raise ApiError(401, "invalid_api_key", f"a valid API key is required in the {API_KEY_HEADER} header")


class CampaignApi:
    """The demo API on ``https://localhost:<port>``; start with :meth:`start`, stop with :meth:`stop`.

    :ivar requests: every answered request, in order (for tests).
    """

    def __init__(self, ca: LocalCA, port: int = 0, *, job_seconds: float = JOB_SECONDS) -> None:
        self.requests: list[LoggedRequest] = []
        self.job_seconds = job_seconds
        self._tokens: dict[str, float] = {}
        self._batches: dict[str, CouponBatch] = {}
        self._lock = threading.Lock()
        self._server = LocalHttpsServer(type("Handler", (_Handler,), {"api": self}), ca, port=port)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        """The root URL; the certificate covers ``localhost``, so TLS verification works."""
        return self._server.base_url

    def start(self) -> CampaignApi:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def log(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + TOKEN_LIFETIME
        return token

    def token_is_valid(self, token: str) -> bool:
        with self._lock:
            return self._tokens.get(token, 0.0) > time.monotonic()

    def create_batch(self, request: Mapping[str, Any], *, fail: bool) -> _Answer:
        """Start a coupon batch for an External API activity body; 202 with the status URL in ``Location``."""
        records = coupons(request)["data"]
        with self._lock:
            batch_id = f"b-{len(self._batches) + 1}"
            self._batches[batch_id] = CouponBatch(batch_id, time.monotonic(), self.job_seconds, fail, records)
        location = f"/v1/coupon-batches/{batch_id}"
        return _Answer(202, json.dumps({"id": batch_id, "status": "queued"}).encode(), headers={"Location": location})

    def batch(self, batch_id: str) -> CouponBatch:
        with self._lock:
            if batch_id not in self._batches:
                raise ApiError(404, "not_found", f"no coupon batch {batch_id}")
            return self._batches[batch_id]

    def revoke_tokens(self) -> None:
        """Forget every issued token, as a server restart would: clients must fetch a new one."""
        with self._lock:
            self._tokens.clear()
