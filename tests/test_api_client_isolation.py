"""Every /api/v1 route is scoped to the acting client, checked from one table.

Client A (the default client, id 1) and client B each have accounts, campaigns with
recipients, an own suppression, limit overrides and limiter windows in Redis. A's key
calls every route with B's ids: the answer is the one an object that does not exist gets
(same status, code and message but for the id), or the 403 the table names where a route
is admin-only or the row is global, and nothing changes in any table or in the limiter's
Redis windows. An admin key acts for B with X-Sendfleet-Client and for its own client
without it. The table lists exactly the routes the app has: a new route fails
test_the_table_lists_every_route_and_no_other until a row says how it is scoped."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.auth import CLIENT_HEADER, create_key
from app.db import unit_of_work
from app.extensions import db
from app.models import BlacklistCheck, SenderAuthCheck
from rotator.limiter import Limiter, Scope, Window
from tests.conftest import ApiClient

API = "/api/v1"
# Not scoped by client: the health check and the OpenAPI document (and a docs UI, if any).
UNSCOPED_BLUEPRINTS = frozenset({"health", "api-docs"})
A = 1  # the default client, made by the clean-state fixture
MISSING_ID = 999999
DAY = 86400
# Bookkeeping that any authenticated request may write (a key's first use of the minute).
IGNORED_COLUMNS = {"api_keys": ("last_used_at",)}
REDIS_LIMITER = "sf:lim*"
# Every name and address of B holds "bravo", every one of A "alpha": a response that
# shows the other client's anything shows that word.
B_WORD, A_WORD = "bravo", "alpha"

ACCOUNT = f"{API}/accounts/<int:account_id>"
ACCOUNT_PAUSE = f"{ACCOUNT}/pause"
ACCOUNT_RESUME = f"{ACCOUNT}/resume"
CAMPAIGN = f"{API}/campaigns/<int:campaign_id>"
CLIENT = f"{API}/clients/<int:client_id>"
LIMIT = f"{API}/limits/<string:scope>/<path:key>"
SUPPRESSION = f"{API}/suppressions/<value>"

# Placeholders filled with objects that do not exist (and that no client uses).
MISSING: dict[str, Any] = {
    "account": MISSING_ID,
    "paused_account": MISSING_ID,
    "draft": MISSING_ID,
    "running": MISSING_ID,
    "paused": MISSING_ID,
    "client": MISSING_ID,
    "unsub": "nobody@people.example",
    "bounce": "nobody-bounced@people.example",
    "domain": "nowhere.example",
    "rdomain": "nowhere-people.example",
    "account_name": "nobody-sender",
    "shared": "nobody-shared@people.example",
    "shared_domain": "nowhere-shared.example",
}
MODES = ("other", "admin_own", "admin_as_b")
# Each client has its own row of these (neither client's marker).
SHARED = "shared@people.example"
SHARED_DOMAIN = "shared-people.example"


@dataclass(frozen=True)
class Call:
    """A request naming client B's objects by `{placeholder}` (in the path or the body).

    The expected status per caller: `other` is client A's key, `admin_own` an admin key of
    A without the header, `admin_as_b` the same key acting for B. `like_missing`: A's
    answer equals, but for the value, what the request gets for an object that does not
    exist (in the admin modes, where the expected status is 404 or 422)."""

    method: str
    rule: str
    path: str
    body: Any = None
    other: int = 404
    like_missing: bool = True
    admin_own: int = 404
    admin_as_b: int = 200
    owner: str | None = "client_id"  # the field of a 200 GET that names the client

    def expected(self, mode: str) -> int:
        return int(getattr(self, mode))  # the modes are the field names

    def compares_with_missing(self, mode: str) -> bool:
        if mode == "other":
            return self.like_missing
        return self.like_missing and self.expected(mode) in (404, 422)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


Markers = set[tuple[str, str]]


@dataclass(frozen=True)
class Listing:
    """A route that lists the acting client's objects (`{own}`: its id), and the (kind,
    value) markers of the objects it shows."""

    rule: str
    seen: Callable[[Any], Markers]
    kinds: tuple[str, ...]
    admin_sees_all: bool = False  # an admin key lists every client's (the clients)
    path: str | None = None  # default: the rule's
    method: str = "GET"

    def url(self, own: int) -> str:
        return API + self.path.format(own=own) if self.path else self.rule

    def __str__(self) -> str:
        return f"{self.method} {self.path or self.rule}"


@dataclass(frozen=True)
class OwnWrite:
    """A write on a name, address or domain key that B uses too: it touches the acting
    client's rows only; with `fresh`, a value nobody uses gets the same status (B's row
    stays unseen)."""

    method: str
    rule: str
    path: str
    body: Any
    status: int
    fresh: bool = True

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _items(kind: str, key: str = "id") -> Callable[[Any], Markers]:
    return lambda body: {(kind, str(item[key])) for item in body["items"]}


def _stats_seen(body: Any) -> Markers:
    return {("account", str(a["id"])) for a in body["per_account"]} | {
        ("client", str(body["client_id"]))
    }


def _limits_seen(body: Any) -> Markers:
    scopes = body["scopes"]
    seen = {("account", str(e["key"])) for e in scopes["account"]}
    seen |= {("client", str(e["key"])) for e in scopes["client"]} | {
        ("client", str(body["client_id"]))
    }
    for scope in ("sending_domain", "recipient_domain"):
        seen |= {("domain", e["key"]) for e in scopes[scope]}
    seen |= {("account", str(i)) for e in scopes["sending_domain"] for i in e.get("accounts", [])}
    return seen


ADD_RECIPIENTS = {"recipients": [{"email": "bravo-new@people.example"}]}
NEW_CAMPAIGN = {
    "name": "cross-client",
    "subject": "Hi",
    "body_text": "Hello",
    "account_ids": ["{account}"],
    "recipients": [{"email": "someone@people.example"}],
}

# Formatted by hand: one row per request reads as a table.
# fmt: off
CALLS: list[Call] = [
    Call("GET", ACCOUNT, "/accounts/{account}"),
    Call("PATCH", ACCOUNT, "/accounts/{account}", {"name": "renamed", "daily_limit": 5}),
    Call("POST", ACCOUNT_PAUSE, "/accounts/{account}/pause", {"reason": "isolation"}),
    Call("POST", ACCOUNT_RESUME, "/accounts/{paused_account}/resume"),
    Call("DELETE", ACCOUNT, "/accounts/{account}", admin_as_b=204),
    Call("GET", f"{ACCOUNT}/warmup", "/accounts/{account}/warmup"),
    Call("POST", f"{ACCOUNT}/check", "/accounts/{account}/check"),
    # A campaign may only send through its own client's accounts.
    Call("POST", f"{API}/campaigns", "/campaigns", NEW_CAMPAIGN, 422, admin_own=422,
         admin_as_b=201),
    Call("GET", CAMPAIGN, "/campaigns/{draft}"),
    Call("GET", f"{CAMPAIGN}/recipients", "/campaigns/{draft}/recipients", owner=None),
    Call("GET", f"{CAMPAIGN}/forecast", "/campaigns/{running}/forecast"),
    Call("POST", f"{CAMPAIGN}/recipients", "/campaigns/{draft}/recipients", ADD_RECIPIENTS,
         admin_as_b=201),
    Call("POST", f"{CAMPAIGN}/start", "/campaigns/{draft}/start"),
    Call("POST", f"{CAMPAIGN}/pause", "/campaigns/{running}/pause"),
    Call("POST", f"{CAMPAIGN}/resume", "/campaigns/{paused}/resume"),
    Call("POST", f"{CAMPAIGN}/cancel", "/campaigns/{draft}/cancel"),
    # /clients: another client is invisible to a non-admin key; the writes are admin-only
    # (403 before the id is looked at, for a missing id too). An admin reads and manages
    # every client, with or without the header.
    Call("GET", CLIENT, "/clients/{client}", admin_own=200, owner="id"),
    Call("GET", f"{CLIENT}/stats", "/clients/{client}/stats", admin_own=200),
    Call("PATCH", CLIENT, "/clients/{client}", {"name": "Bravo Renamed"}, 403, admin_own=200),
    Call("POST", f"{CLIENT}/pause", "/clients/{client}/pause", {"reason": "isolation"}, 403,
         admin_own=200),
    # B is active: an admin reaches it and hears that (409), where A's key hears 403.
    Call("POST", f"{CLIENT}/resume", "/clients/{client}/resume", None, 403, admin_own=409,
         admin_as_b=409),
    Call("POST", f"{API}/clients", "/clients", {"name": "Charlie"}, 403, like_missing=False,
         admin_own=201, admin_as_b=201),
    # /limits: an account key is the account's id; system and client scopes are admin-only.
    Call("PUT", LIMIT, "/limits/account/{account}", {"per_day": 7}),
    Call("DELETE", LIMIT, "/limits/account/{account}", admin_as_b=204),
    Call("PUT", LIMIT, "/limits/client/{client}", {"per_day": 7}, 403, admin_own=200),
    Call("DELETE", LIMIT, "/limits/client/{client}", None, 403, admin_own=204, admin_as_b=204),
    Call("PUT", LIMIT, "/limits/system/*", {"per_minute": 80}, 403, like_missing=False,
         admin_own=200),
    Call("DELETE", LIMIT, "/limits/system/*", None, 403, like_missing=False, admin_own=204,
         admin_as_b=204),
    # A's key has no override of B's sending or recipient domain (B's are B's own).
    Call("DELETE", LIMIT, "/limits/sending_domain/{domain}", admin_as_b=204),
    Call("DELETE", LIMIT, "/limits/recipient_domain/{rdomain}", admin_as_b=204),
    # /suppressions: B's unsubscribe is B's alone; a global row (a bounce) is honoured by
    # every client and lifted with an admin key only.
    Call("DELETE", SUPPRESSION, "/suppressions/{unsub}?confirm=true", admin_as_b=204),
    Call("DELETE", SUPPRESSION, "/suppressions/{bounce}?confirm=true", None, 403,
         like_missing=False, admin_own=204, admin_as_b=204),
]
# fmt: on

LISTINGS: list[Listing] = [
    Listing(f"{API}/accounts", _items("account"), ("account",)),
    Listing(f"{API}/campaigns", _items("campaign"), ("campaign",)),
    Listing(f"{API}/suppressions", _items("suppression", "value"), ("suppression",)),
    Listing(f"{API}/limits", _limits_seen, ("account", "client", "domain")),
    Listing(f"{API}/clients", _items("client"), ("client",), admin_sees_all=True),
    Listing(f"{CLIENT}/stats", _stats_seen, ("account", "client"), path="/clients/{own}/stats"),
    # Targets and domains are global; a key sees those of its client's accounts, an admin
    # key every one.
    Listing(
        f"{API}/blacklist",
        _items("sending_domain", "target"),
        ("sending_domain",),
        admin_sees_all=True,
    ),
    Listing(
        f"{API}/domains",
        _items("sending_domain", "domain"),
        ("sending_domain",),
        admin_sees_all=True,
    ),
]

# fmt: off
OWN_WRITES: list[OwnWrite] = [
    OwnWrite("POST", f"{API}/accounts", "/accounts", {"name": "{account_name}",
             "provider": "postfix", "host": "relay.example", "email": "new@alpha.example"},
             201),
    OwnWrite("POST", f"{API}/suppressions", "/suppressions",
             {"email": "{unsub}", "reason": "unsubscribed"}, 201),
    OwnWrite("PUT", LIMIT, "/limits/sending_domain/{domain}", {"per_day": 5}, 200),
    # Both clients have a row of these: a client's key lifts its own only.
    OwnWrite("DELETE", SUPPRESSION, "/suppressions/{shared}?confirm=true", None, 204,
             fresh=False),
    OwnWrite("DELETE", LIMIT, "/limits/recipient_domain/{shared_domain}", None, 204,
             fresh=False),
]
# fmt: on

TABLE: list[Call | Listing | OwnWrite] = [*CALLS, *LISTINGS, *OWN_WRITES]


# --- the world: two clients with one of everything -------------------------------------


@dataclass
class World:
    keys: dict[str, ApiClient]  # "a", "b", "admin"
    values: dict[str, Any]  # the placeholders, filled with B's objects
    a_markers: Markers
    b_markers: Markers

    def caller(self, mode: str) -> tuple[ApiClient, dict[str, str]]:
        if mode == "other":
            return self.keys["a"], {}
        if mode == "admin_own":
            return self.keys["admin"], {}
        return self.keys["admin"], {CLIENT_HEADER: str(self.values["client"])}


def _key(app: Flask, client: FlaskClient, name: str, client_id: int, **kw: Any) -> ApiClient:
    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, name, client_id=client_id, **kw)
    return ApiClient(client, key)


def _campaign(factory: Any, client_id: int, name: str, status: str, emails: list[str]) -> int:
    if status == "running":
        return int(factory.create_running_campaign(emails, client_id=client_id, name=name).id)
    campaign = factory.create_campaign(client_id=client_id, name=name, status=status)
    factory.create_recipients(campaign, emails)
    return int(campaign.id)


def _ok(response: Any) -> None:
    assert response.status_code in (200, 201, 204), response.get_json()


@pytest.fixture
def world(app: Flask, client: FlaskClient, factory: Any) -> World:
    b = int(factory.create_client(name="Bravo Brands").id)
    a_account = int(
        factory.create_account(client_id=A, name="alpha-sender", email="sender@alpha.example").id
    )
    b_account = int(
        factory.create_account(client_id=b, name="bravo-sender", email="sender@bravo.example").id
    )
    b_spare = int(
        factory.create_account(client_id=b, name="bravo-spare", email="spare@bravo.example").id
    )
    a_draft = _campaign(factory, A, "alpha-draft", "draft", ["alpha-1@people.example"])
    people = [f"bravo-{n}@people.example" for n in (1, 2)]
    b_draft = _campaign(factory, b, "bravo-draft", "draft", people)
    b_running = _campaign(factory, b, "bravo-running", "running", people)
    b_paused = _campaign(factory, b, "bravo-paused", "paused", people)
    factory.suppress("alpha-unsub@people.example", "unsubscribed", client_id=A)
    factory.suppress("bravo-unsub@people.example", "unsubscribed", client_id=b)
    factory.suppress("bounced@people.example", "bounced")
    for owner in (A, b):
        factory.suppress(SHARED, "unsubscribed", client_id=owner)
    for domain in ("alpha.example", "bravo.example"):  # one DNS check of each
        db.session.add(BlacklistCheck(target=domain, target_kind="domain", listed=False))
        db.session.add(SenderAuthCheck(domain=domain, spf="pass", dkim="pass", dmarc="pass",
                                       mx="pass"))  # fmt: skip
    db.session.commit()
    db.session.remove()  # the factories' session holds nothing open during the requests

    keys = {
        "a": _key(app, client, "alpha", A),
        "b": _key(app, client, "bravo", b),
        "admin": _key(app, client, "admin", A, is_admin=True),
    }
    _ok(keys["a"].put(f"{API}/limits/account/{a_account}", json={"per_minute": 5}))
    _ok(keys["a"].put(f"{API}/limits/recipient_domain/alpha-people.example", json={"per_day": 50}))
    _ok(keys["b"].put(f"{API}/limits/account/{b_account}", json={"per_minute": 6, "per_day": 60}))
    _ok(keys["b"].put(f"{API}/limits/sending_domain/bravo.example", json={"per_day": 500}))
    _ok(keys["b"].put(f"{API}/limits/recipient_domain/bravo-people.example", json={"per_day": 40}))
    for key in (keys["a"], keys["b"]):
        _ok(key.put(f"{API}/limits/recipient_domain/{SHARED_DOMAIN}", json={"per_day": 30}))
    _ok(keys["admin"].put(f"{API}/limits/client/{b}", json={"per_day": 900}))
    _ok(keys["admin"].put(f"{API}/limits/system/*", json={"per_minute": 90}))
    _ok(keys["b"].post(f"{API}/accounts/{b_spare}/pause", json={"reason": "spare"}))  # an event

    limiter = Limiter(app.extensions["redis"])
    for account, domain in ((a_account, "alpha.example"), (b_account, "bravo.example")):
        decision = limiter.reserve(
            [
                Window(Scope.ACCOUNT, str(account), DAY, 1000),
                Window(Scope.SENDING_DOMAIN, domain, DAY, 2000),
            ]
        )
        assert decision.allowed

    values = {
        "account": b_account,
        "paused_account": b_spare,
        "draft": b_draft,
        "running": b_running,
        "paused": b_paused,
        "client": b,
        "unsub": "bravo-unsub@people.example",
        "bounce": "bounced@people.example",
        "domain": "bravo.example",
        "rdomain": "bravo-people.example",
        "account_name": "bravo-sender",
        "shared": SHARED,
        "shared_domain": SHARED_DOMAIN,
    }
    a_markers = {
        ("account", str(a_account)),
        ("campaign", str(a_draft)),
        ("suppression", "alpha-unsub@people.example"),
        ("domain", "alpha.example"),
        ("domain", "alpha-people.example"),
        ("client", str(A)),
        ("sending_domain", "alpha.example"),
    }
    b_markers = {
        ("account", str(b_account)),
        ("account", str(b_spare)),
        *(("campaign", str(c)) for c in (b_draft, b_running, b_paused)),
        ("suppression", "bravo-unsub@people.example"),
        ("domain", "bravo.example"),
        ("domain", "bravo-people.example"),
        ("client", str(b)),
        ("sending_domain", "bravo.example"),
    }
    return World(keys, values, a_markers, b_markers)


# --- requests, snapshots, comparisons -------------------------------------------------


def _fill(template: Any, values: dict[str, Any]) -> Any:
    """`{name}` placeholders in a path or a body; a string that is one placeholder takes
    the value's type (an id stays an integer)."""
    if isinstance(template, str):
        whole = re.fullmatch(r"\{(\w+)\}", template)
        return values[whole.group(1)] if whole else template.format(**values)
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


def _placeholders(call: Call | OwnWrite) -> list[str]:
    return sorted(set(re.findall(r"\{(\w+)\}", json.dumps([call.path, call.body]))))


def _send(
    api: ApiClient, call: Call | OwnWrite, values: dict[str, Any], headers: dict[str, str]
) -> Any:
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if call.body is not None:
        kwargs["json"] = _fill(call.body, values)
    return getattr(api, call.method.lower())(API + _fill(call.path, values), **kwargs)


def _body(response: Any) -> Any:
    return response.get_json(silent=True) if response.data else None


def _modulo_values(response: Any, values: dict[str, Any], names: list[str]) -> tuple[int, str]:
    """Status and body with each filled-in value replaced by its placeholder's name."""
    text = json.dumps(_body(response), sort_keys=True)
    for name in names:
        value = re.escape(str(values[name]))
        text = re.sub(rf"(?<![\w@.-]){value}(?![\w@-])(?!\.\w)", f"<{name}>", text)
    return response.status_code, text


def _snapshot(app: Flask, tables: list[str]) -> dict[str, set[str]]:
    """Every row of every table (as JSON text) and every limiter window in Redis."""
    state: dict[str, set[str]] = {}
    with app.app_context(), db.engine.connect() as conn:
        for table in tables:
            row = "to_jsonb(t)" + "".join(f" - '{c}'" for c in IGNORED_COLUMNS.get(table, ()))
            rows = conn.exec_driver_sql(f"SELECT ({row})::text FROM {table} t").scalars()
            state[table] = set(rows)
    redis = app.extensions["redis"]
    keys = redis.scan_iter(match=REDIS_LIMITER)
    state[REDIS_LIMITER] = {_redis_entry(redis, key) for key in keys}
    return state


def _redis_entry(redis: Any, key: Any) -> str:
    kind = redis.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "zset":
        content: Any = redis.zrange(key, 0, -1, withscores=True)
    elif kind == "string":
        content = redis.get(key)
    elif kind == "hash":
        content = sorted(redis.hgetall(key).items())
    else:
        content = redis.dump(key)
    return repr((key, kind, content))


def _changes(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, Any]:
    changed = {}
    for name in sorted(before.keys() | after.keys()):
        gone = sorted(before.get(name, set()) - after.get(name, set()))
        new = sorted(after.get(name, set()) - before.get(name, set()))
        if gone or new:
            changed[name] = {"gone": gone, "new": new}
    return changed


def _in_order(calls: list[Call]) -> list[Call]:
    # Reads before writes, deletions last: a leaking write must not hide what follows.
    order = {"GET": 0, "PUT": 1, "PATCH": 1, "POST": 1, "DELETE": 2}
    return sorted(calls, key=lambda call: order[call.method])


def _sweep(app: Flask, tables: list[str], world: World, mode: str, calls: list[Call]) -> list[str]:
    """Each call in `mode`; returns what went wrong (nothing may change)."""
    api, headers = world.caller(mode)
    problems = []
    start = _snapshot(app, tables)
    for call in _in_order(calls):
        before = _snapshot(app, tables)
        response = _send(api, call, world.values, headers)
        label = f"{call} with {_fill(call.path, world.values)!r}"
        if response.status_code != call.expected(mode):
            problems.append(
                f"{label}: {response.status_code} (expected {call.expected(mode)}) "
                f"{_body(response)}"
            )
        if changed := _changes(before, _snapshot(app, tables)):
            problems.append(f"{label} changed data: {changed}")
        if call.compares_with_missing(mode):
            names = _placeholders(call)
            missing = _send(api, call, MISSING, headers)
            theirs = _modulo_values(response, world.values, names)
            nobodys = _modulo_values(missing, MISSING, names)
            if theirs != nobodys:
                problems.append(f"{label} answers unlike a missing object: {theirs} != {nobodys}")
    if changed := _changes(start, _snapshot(app, tables)):
        problems.append(f"the sweep changed data: {changed}")
    return problems


# --- the table covers the app's routes ------------------------------------------------


def _routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(f"{API}/")
        and rule.endpoint.split(".")[0] not in UNSCOPED_BLUEPRINTS
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def test_the_table_lists_every_route_and_no_other(app):
    routes = _routes(app)
    listed = {(entry.method, entry.rule) for entry in TABLE}
    assert sorted(routes - listed) == [], "routes the table does not say how to scope"
    assert sorted(listed - routes) == [], "table rows for routes the app no longer has"
    with_ids = {(method, rule) for method, rule in routes if "<" in rule}
    called = {(call.method, call.rule) for call in CALLS}
    assert sorted(with_ids - called) == [], "routes with ids but no call with another client's"


# --- another client's objects ---------------------------------------------------------


def test_another_clients_objects_answer_like_missing_ones_and_nothing_changes(
    app, table_names, world
):
    assert _snapshot(app, table_names)[REDIS_LIMITER], "the limiter has windows to compare"
    problems = _sweep(app, table_names, world, "other", CALLS)
    assert not problems, "\n".join(problems)


def test_an_admin_key_without_the_header_acts_for_its_own_client(app, table_names, world):
    refused = [call for call in CALLS if call.admin_own >= 400]
    problems = _sweep(app, table_names, world, "admin_own", refused)
    assert not problems, "\n".join(problems)


def _admin_cases() -> list[Any]:
    cases = [pytest.param("admin_as_b", call, id=f"as-b {call}") for call in CALLS]
    own = [pytest.param("admin_own", c, id=f"own {c}") for c in CALLS if c.admin_own < 400]
    return cases + own


@pytest.mark.parametrize(("mode", "call"), _admin_cases())
def test_an_admin_key_reaches_another_clients_objects(app, table_names, world, mode, call):
    """With the header, an admin key acts on B's objects as B's own key would; without it,
    only on what an admin manages anyway (clients, client and system limits, global rows)."""
    api, headers = world.caller(mode)
    before = _snapshot(app, table_names)
    response = _send(api, call, world.values, headers)
    assert response.status_code == call.expected(mode), _body(response)
    changed = _changes(before, _snapshot(app, table_names))
    if response.status_code >= 400 or call.method == "GET":
        assert changed == {}
    else:
        assert changed, f"{call} answered {response.status_code} and changed nothing"
        touched = [json.loads(r) for d in changed.values() for r in d["gone"] if r.startswith("{")]
        assert [r for r in touched if r.get("client_id") == A] == [], "client A's rows changed"
    if call.method == "GET" and response.status_code == 200:
        body = response.get_json()
        text = json.dumps(body).lower()
        assert B_WORD in text and A_WORD not in text, body
        if call.owner:
            assert body[call.owner] == world.values["client"], body


# --- lists ----------------------------------------------------------------------------


def _of_kinds(markers: Markers, kinds: tuple[str, ...]) -> Markers:
    return {m for m in markers if m[0] in kinds}


@pytest.mark.parametrize("listing", LISTINGS, ids=str)
def test_a_list_shows_only_the_acting_clients_objects(world, listing):
    a_own = _of_kinds(world.a_markers, listing.kinds)
    b_own = _of_kinds(world.b_markers, listing.kinds)
    for mode in MODES:
        api, headers = world.caller(mode)
        own = world.values["client"] if mode == "admin_as_b" else A
        response = api.get(listing.url(own), headers=headers)
        assert response.status_code == 200, (mode, response.get_json())
        body = response.get_json()
        seen, text = listing.seen(body), json.dumps(body).lower()
        as_b = mode == "admin_as_b"
        mine, theirs, word = (b_own, a_own, A_WORD) if as_b else (a_own, b_own, B_WORD)
        assert mine <= seen, (mode, body)
        if listing.admin_sees_all and mode != "other":
            assert theirs <= seen, (mode, body)
            continue
        assert seen & theirs == set(), (mode, body)
        assert word not in text, (mode, body)


# --- a name or value another client uses ----------------------------------------------


@pytest.mark.parametrize("write", OWN_WRITES, ids=str)
def test_a_write_on_a_value_both_clients_use_touches_the_keys_rows_only(
    app, table_names, world, write
):
    before = _snapshot(app, table_names)
    response = _send(world.keys["a"], write, world.values, {})
    assert response.status_code == write.status, _body(response)
    changed = _changes(before, _snapshot(app, table_names))
    assert REDIS_LIMITER not in changed, changed
    rows = [json.loads(r) for diff in changed.values() for r in diff["gone"] + diff["new"]]
    assert rows and all(row.get("client_id") == A for row in rows), changed
    if write.fresh:
        fresh = _send(world.keys["a"], write, MISSING, {})
        assert fresh.status_code == write.status, _body(fresh)
