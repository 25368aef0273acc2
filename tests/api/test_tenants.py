"""Tenants: the migration from user-owned rows, membership and X-Tenant-ID, admins, limits, API keys, and an
isolation matrix across two tenants, a member of both and a key of each."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from cryptography.fernet import Fernet

from api.errors import Unauthorized
from api.tenancy import Tenants
from core.secrets import SecretBox
from core.settings import Settings
from core.store import apikeys as apikeys_repo
from core.store import migrations
from core.store import sessions as sessions_repo
from core.store import tenants as tenants_repo
from core.store.db import Store
from core.store.tenants import personal_tenant_id
from tests.api.seed import AGENT_WIRE, seed_call, tenant_of
from tests.api.test_ownership import SAMPLE_BODIES, owned_routes
from tests.conftest import assert_error, table_snapshot
from tests.harness.sip import eventually

ADMIN = "root"


@pytest.fixture
def settings(settings):
    return settings.with_(admin_users=(ADMIN,))


def _h(auth, user: str, tenant: str | None = None) -> dict[str, str]:
    headers = auth(user)
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    return headers


async def _json(resp, status: int = 200):
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _tenant(client, auth, owner: str, **body) -> dict:
    return await _json(
        await client.post(
            "/tenants", json={"name": f"{owner}'s team", "owner_user_id": owner, **body}, headers=auth(ADMIN)
        ),
        201,
    )


# ---- the migration ----


def test_rows_owned_by_users_move_into_their_personal_tenants(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for version, _name, sql in migrations.MIGRATIONS:
        if version > 4:
            break
        conn.executescript(f"BEGIN;\n{sql}\nINSERT INTO _migrations VALUES ({version}, 'v', 'now');\nCOMMIT;")
    stamp = "2026-01-01T00:00:00.000000Z"
    for user, name in (("alice", "Support"), ("alice", "Support"), ("bob", "Sales Bot")):
        conn.execute(
            "INSERT INTO agents (id, owner_id, name, system_prompt, stt_provider, llm_provider, tts_provider, "
            "created_at, updated_at) VALUES (?, ?, ?, 'p', 'deepgram', 'gemini', 'elevenlabs', ?, ?)",
            [f"{user}-{name}-{conn.execute('SELECT COUNT(*) FROM agents').fetchone()[0]}", user, name, stamp, stamp],
        )
    agent = conn.execute("SELECT id FROM agents WHERE owner_id = 'bob'").fetchone()[0]
    conn.execute(
        "INSERT INTO sessions (id, owner_id, agent_id, status, started_at, last_activity_at, created_at) "
        "VALUES ('s1', 'bob', ?, 'ended', ?, ?, ?)",
        [agent, stamp, stamp, stamp],
    )
    conn.execute("INSERT INTO user_secrets VALUES ('bob', 'secret', ?)", [stamp])
    conn.close()

    store = Store(path, secrets=SecretBox(Fernet.generate_key()))  # migrates (and seals bob's callback secret)
    try:
        rows = store.read_sync(lambda db: list(db.query("SELECT owner_id, name, slug FROM agents ORDER BY id")))
        assert rows == [
            {"owner_id": personal_tenant_id("alice"), "name": "Support", "slug": "support"},
            {"owner_id": personal_tenant_id("alice"), "name": "Support", "slug": "support-2"},
            {"owner_id": personal_tenant_id("bob"), "name": "Sales Bot", "slug": "sales-bot"},
        ]

        def owners(db):
            return {
                t: [r[0] for r in db.execute(f"SELECT DISTINCT owner_id FROM {t}")]
                for t in ("sessions", "user_secrets")
            }

        assert store.read_sync(owners) == {
            "sessions": [personal_tenant_id("bob")],
            "user_secrets": [personal_tenant_id("bob")],
        }
        members = store.read_sync(
            lambda db: sorted(
                db.execute(
                    "SELECT m.user_id, m.role, t.personal_of, t.status FROM tenant_members m JOIN tenants t "
                    "ON t.id = m.tenant_id"
                ).fetchall()
            )
        )
        assert members == [("alice", "owner", "alice", "active"), ("bob", "owner", "bob", "active")]
    finally:
        store.close()


async def test_migrated_rows_answer_their_user_and_no_one_else(client, auth, store):
    agent_id, sid = seed_call(store, "alice")
    assert (await _json(await client.get(f"/api/sessions/{sid}", headers=auth("alice"))))["agentId"] == agent_id
    await assert_error(await client.get(f"/api/sessions/{sid}", headers=auth("bob")), 404, "not_found")


# ---- tenants and members ----


async def test_admins_create_tenants_with_003s_shape_and_others_may_not(client, auth, settings):
    body = {
        "name": "Acme Corporation",
        "subdomain": "acme",
        "max_agents": 50,
        "max_concurrent_calls": 200,
        "billing_email": "billing@acme.example",
    }
    before = table_snapshot(settings)
    await assert_error(await client.post("/tenants", json=body, headers=auth("alice")), 403, "forbidden")
    await assert_error(await client.get("/tenants", headers=auth("alice")), 403, "forbidden")
    assert table_snapshot(settings) == before
    tenant = await _json(await client.post("/tenants", json=body, headers=auth(ADMIN)), 201)
    assert tenant["id"].startswith("ten_") and tenant["status"] == "trial"
    assert {k: tenant[k] for k in ("name", "subdomain")} == {"name": "Acme Corporation", "subdomain": "acme"}
    assert tenant["limits"] == {"max_agents": 50, "max_concurrent_calls": 200}
    await assert_error(await client.post("/tenants", json={**body, "name": "Other"}, headers=auth(ADMIN)), 409)
    await assert_error(await client.post("/tenants", json={**body, "subdomain": "no way"}, headers=auth(ADMIN)), 422)
    listed = await _json(await client.get("/tenants", headers=auth(ADMIN)))
    assert [t["id"] for t in listed] == [tenant["id"]]
    patched = await _json(
        await client.patch(
            f"/tenants/{tenant['id']}", json={"max_agents": 100, "status": "active"}, headers=auth(ADMIN)
        )
    )
    assert patched["limits"]["max_agents"] == 100 and patched["status"] == "active"
    assert await _json(await client.get(f"/tenants/{tenant['id']}", headers=auth(ADMIN))) == patched


async def test_members_pick_a_tenant_with_the_header_and_owners_cannot_lift_their_limits(client, auth):
    team = await _tenant(client, auth, "alice", max_agents=5)
    await _json(
        await client.post(
            f"/tenants/{team['id']}/members", json={"user_id": "carol", "role": "member"}, headers=auth("alice")
        ),
        201,
    )
    carol_team = _h(auth, "carol", team["id"])
    made = await _json(await client.post("/api/agents", json=AGENT_WIRE, headers=carol_team), 201)
    # the team's agent is the team's: alice sees it in the team, not in her personal tenant; carol's own is empty
    assert [
        a["id"] for a in (await _json(await client.get("/api/agents", headers=_h(auth, "alice", team["id"]))))["agents"]
    ] == [made["id"]]
    assert (await _json(await client.get("/api/agents", headers=auth("alice"))))["total"] == 0
    assert (await _json(await client.get("/api/agents", headers=auth("carol"))))["total"] == 0
    # not a member: the tenant does not exist for you
    await assert_error(await client.get("/api/agents", headers=_h(auth, "mallory", team["id"])), 404, "not_found")
    await assert_error(await client.get(f"/tenants/{team['id']}", headers=auth("mallory")), 404, "not_found")
    # a member reads the tenant but cannot change it; the owner renames it but cannot lift its limits
    assert (await _json(await client.get(f"/tenants/{team['id']}", headers=auth("carol"))))["id"] == team["id"]
    await assert_error(await client.patch(f"/tenants/{team['id']}", json={"name": "x"}, headers=auth("carol")), 403)
    renamed = await _json(await client.patch(f"/tenants/{team['id']}", json={"name": "Renamed"}, headers=auth("alice")))
    assert renamed["name"] == "Renamed"
    await assert_error(
        await client.patch(f"/tenants/{team['id']}", json={"max_agents": 500}, headers=auth("alice")), 403, "forbidden"
    )
    members = await _json(await client.get(f"/tenants/{team['id']}/members", headers=auth("alice")))
    assert sorted((m["user_id"], m["role"]) for m in members["members"]) == [("alice", "owner"), ("carol", "member")]
    await assert_error(await client.delete(f"/tenants/{team['id']}/members/alice", headers=auth("alice")), 409)
    assert (await client.delete(f"/tenants/{team['id']}/members/carol", headers=auth("alice"))).status == 200
    await assert_error(await client.get("/api/agents", headers=carol_team), 404)


async def test_a_users_personal_tenant_is_stored_on_first_use_and_readable_by_them(client, auth):
    mine = await _json(await client.get(f"/tenants/{tenant_of('alice')}", headers=auth("alice")))
    assert mine["personal"] is True and mine["status"] == "active" and mine["limits"]["max_agents"] is None
    await assert_error(await client.get(f"/tenants/{tenant_of('alice')}", headers=auth("bob")), 404)


def _calls(monkeypatch, repo, name: str) -> list[str]:
    """The argument of each call of a repository's read `name(db, value)` from now on (it still reads)."""
    calls: list[str] = []
    read = getattr(repo, name)

    def counted(db, value):
        calls.append(value)
        return read(db, value)

    monkeypatch.setattr(repo, name, counted)
    return calls


async def test_a_user_whose_personal_tenant_is_not_stored_is_not_looked_up_on_every_request(client, auth, monkeypatch):
    """Before: the tenant cache kept only found rows, so each request of a user with no stored personal tenant (most
    users) read the store in a thread: `GET /api/agents` served 0.21x a bare aiohttp server's rate (bench section 5)."""
    lookups = _calls(monkeypatch, tenants_repo, "find")
    for _ in range(20):
        await _json(await client.get("/api/agents", headers=auth("alice")))
    assert lookups == [tenant_of("alice")]
    # stored on its first key: a change of it is seen at once, not after the cache's seconds
    key = (await _json(await client.post("/api/keys", json={"name": "k"}, headers=auth("alice")), 201))["key"]
    await _json(await client.patch(f"/tenants/{tenant_of('alice')}", json={"name": "Alice Ltd"}, headers=auth("alice")))
    assert (await _json(await client.get(f"/tenants/{tenant_of('alice')}", headers={"X-API-Key": key})))[
        "name"
    ] == "Alice Ltd"


async def test_an_owner_sets_whether_the_tenants_calls_are_recorded_by_default(client, auth, store):
    team = await _tenant(client, auth, "alice")
    assert team["recording_default"] is None  # the product's default
    await _json(
        await client.post(
            f"/tenants/{team['id']}/members", json={"user_id": "carol", "role": "member"}, headers=auth("alice")
        ),
        201,
    )
    await assert_error(
        await client.patch(f"/tenants/{team['id']}", json={"recording_default": True}, headers=auth("carol")), 403
    )
    await assert_error(
        await client.patch(f"/tenants/{team['id']}", json={"recording_default": "yes"}, headers=auth("alice")), 422
    )
    assert store.read_sync(tenants_repo.recording_default, team["id"]) is None
    for value in (True, False, None):
        changed = await _json(
            await client.patch(f"/tenants/{team['id']}", json={"recording_default": value}, headers=auth("alice"))
        )
        assert changed["recording_default"] is value
        assert (await _json(await client.get(f"/tenants/{team['id']}", headers=auth("carol"))))[
            "recording_default"
        ] is value
        assert store.read_sync(tenants_repo.recording_default, team["id"]) is value  # what the job reads
    # a personal tenant with no row yet: the product's default
    assert store.read_sync(tenants_repo.recording_default, tenant_of("nobody")) is None


# ---- limits ----


async def test_limits_refuse_agents_calls_and_suspended_tenants_writing_nothing(client, auth, settings):
    team = await _tenant(client, auth, "alice", max_agents=1, max_concurrent_calls=1)
    h = _h(auth, "alice", team["id"])
    agent = await _json(await client.post("/api/agents", json=AGENT_WIRE, headers=h), 201)
    before = table_snapshot(settings)
    await assert_error(await client.post("/api/agents", json=AGENT_WIRE, headers=h), 403, "tenant_limit")
    await assert_error(await client.post("/api/v1/agents", json={"name": "two"}, headers=h), 403, "tenant_limit")
    assert table_snapshot(settings) == before

    first = await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h)
    assert first.status == 200, await first.text()
    before = table_snapshot(settings)
    second = await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h)
    await assert_error(second, 429, "concurrency_limit")
    assert int(second.headers["Retry-After"]) >= 1
    assert table_snapshot(settings) == before

    await _json(await client.patch(f"/tenants/{team['id']}", json={"status": "suspended"}, headers=auth(ADMIN)))
    before = table_snapshot(settings)
    for method, path in (("GET", "/api/agents"), ("POST", "/api/agents"), ("GET", f"/api/agents/{agent['id']}")):
        await assert_error(await client.request(method, path, json=AGENT_WIRE, headers=h), 403, "tenant_suspended")
    assert table_snapshot(settings) == before
    # the owner can still see that it is suspended; the admin lifts it
    assert (await _json(await client.get(f"/tenants/{team['id']}", headers=auth("alice"))))["status"] == "suspended"
    await _json(await client.patch(f"/tenants/{team['id']}", json={"status": "active"}, headers=auth(ADMIN)))
    assert (await client.get("/api/agents", headers=h)).status == 200


async def test_a_suspended_tenants_owners_and_members_change_nothing_of_it_and_an_admin_still_may(
    client, auth, settings
):
    team = await _tenant(client, auth, "alice")
    tid = team["id"]
    await _json(
        await client.post(f"/tenants/{tid}/members", json={"user_id": "bob", "role": "member"}, headers=auth("alice")),
        201,
    )
    await _json(await client.patch(f"/tenants/{tid}", json={"status": "suspended"}, headers=auth(ADMIN)))
    before = table_snapshot(settings)
    for user, method, path, body in (
        ("alice", "PATCH", f"/tenants/{tid}", {"name": "renamed"}),
        ("alice", "PATCH", f"/tenants/{tid}", {"billing_email": "a@example.com"}),
        ("alice", "POST", f"/tenants/{tid}/members", {"user_id": "mallory", "role": "owner"}),
        ("alice", "POST", f"/tenants/{tid}/members", {"user_id": "bob", "role": "owner"}),
        ("alice", "DELETE", f"/tenants/{tid}/members/bob", None),
        ("bob", "DELETE", f"/tenants/{tid}/members/bob", None),
    ):
        await assert_error(await client.request(method, path, json=body, headers=auth(user)), 403, "tenant_suspended")
    assert table_snapshot(settings) == before
    assert (await _json(await client.get(f"/tenants/{tid}", headers=auth("alice"))))["name"] == team["name"]
    renamed = await _json(
        await client.patch(f"/tenants/{tid}", json={"name": "renamed", "status": "active"}, headers=auth(ADMIN))
    )
    assert renamed["name"] == "renamed" and renamed["status"] == "active"
    await _json(await client.patch(f"/tenants/{tid}", json={"name": "ours again"}, headers=auth("alice")))


async def test_a_disabled_or_inactive_agent_takes_no_calls(client, auth):
    h = auth("alice")
    for change in ({"enabled": False}, {"status": "inactive"}):
        agent = await _json(await client.post("/api/agents", json={**AGENT_WIRE, **change}, headers=h), 201)
        await assert_error(await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h), 409)


# ---- API keys ----


async def test_keys_act_for_their_tenant_through_both_headers_and_stop_at_once_when_revoked(client, auth, store):
    h = auth("alice")
    agent = await _json(await client.post("/api/agents", json=AGENT_WIRE, headers=h), 201)
    made = await _json(await client.post("/api/keys", json={"name": "wordpress"}, headers=h), 201)
    key = made["key"]
    assert key.startswith("vxa_") and made["prefix"] == key[:12]
    stored = store.read_sync(lambda db: [tuple(r) for r in db.execute("SELECT * FROM api_keys").fetchall()])
    assert not any(key in map(str, row) for row in stored)  # only its hash is kept
    listed = await _json(await client.get("/api/keys", headers=h))
    assert [k["id"] for k in listed["keys"]] == [made["id"]] and "key" not in listed["keys"][0]

    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        agents = await _json(await client.get("/api/agents", headers=headers))
        assert [a["id"] for a in agents["agents"]] == [agent["id"]]
        v1 = await _json(await client.get("/api/v1/agents", headers=headers))
        assert [a["id"] for a in v1] == [agent["id"]]
    # a key cannot leave its tenant, name a client its tenant does not have, or mint keys
    await assert_error(
        await client.get("/api/agents", headers={"X-API-Key": key, "X-Tenant-ID": tenant_of("bob")}), 404
    )
    await assert_error(await client.get("/api/agents", headers={"X-API-Key": key, "X-Client-ID": "nope"}), 401)
    await assert_error(await client.post("/api/keys", json={"name": "x"}, headers={"X-API-Key": key}), 403)
    # bob cannot revoke alice's key
    await assert_error(await client.delete(f"/api/keys/{made['id']}", headers=auth("bob")), 404)

    assert (await client.delete(f"/api/keys/{made['id']}", headers=h)).status == 200
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        body = await assert_error(await client.get("/api/agents", headers=headers), 401, "unauthorized")
        assert "revoked" in body["detail"]
    for bad in ("vxa_" + "A" * 43, "vxa_short", "not-a-key"):
        await assert_error(await client.get("/api/agents", headers={"X-API-Key": bad}), 401, "unauthorized")
    assert (await _json(await client.get("/api/keys", headers=h)))["total"] == 0


async def test_a_live_key_is_looked_up_once_on_sqlite_and_on_every_request_on_postgresql(
    client, auth, settings, monkeypatch
):
    """Each lookup is a hop to a reader thread (an API-key request ran at under half a JWT's rate, bench section 5);
    on SQLite this process is the only one serving the store, so it may remember a live key, never past a revocation;
    on PostgreSQL another node may revoke it at any moment."""
    key = (await _json(await client.post("/api/keys", json={"name": "k"}, headers=auth("alice")), 201))["key"]
    made = await _json(await client.get("/api/keys", headers=auth("alice")))
    lookups = _calls(monkeypatch, apikeys_repo, "resolve")
    for _ in range(20):
        await _json(await client.get("/api/agents", headers={"X-API-Key": key}))
    if settings.database_url:  # each request (and the rate limiter's first look at the key)
        assert len(lookups) >= 20
    else:
        assert len(lookups) == 1
    assert (await client.delete(f"/api/keys/{made['keys'][0]['id']}", headers=auth("alice"))).status == 200
    await assert_error(await client.get("/api/agents", headers={"X-API-Key": key}), 401, "unauthorized")


async def test_a_key_lookup_begun_before_a_revocation_does_not_keep_the_key(tmp_path):
    """The lookup saw the key live, the revocation landed while it was on its way back: it answers its own request
    (begun before the revocation) but the next request looks the key up again."""
    key = "vxa_" + "k" * 43
    gate = asyncio.Event()
    reads: list[str] = []

    class Store:
        async def read(self, fn, value):
            reads.append(value)
            if len(reads) == 1:
                await gate.wait()
                return {"id": "key_1", "owner_id": tenant_of("alice")}
            return None  # revoked

        def submit(self, fn, *args):  # the key's last use, written by the store's writer
            pass

    store = Store()
    tenants = Tenants(lambda: store, Settings(data_dir=tmp_path))
    first = asyncio.create_task(tenants.verify_key(key, None))
    await eventually(lambda: reads, timeout=5, what="the first lookup begun")
    tenants.keys_revoked()
    gate.set()
    assert (await first).key_id == "key_1"
    with pytest.raises(Unauthorized):
        await tenants.verify_key(key, None)
    assert len(reads) == 2


# ---- the isolation matrix ----


async def test_every_credential_sees_exactly_its_tenants_objects(client, auth, store, settings):
    t1 = await _tenant(client, auth, "alice")
    t2 = await _tenant(client, auth, "bob")
    for team in (t1, t2):
        await _json(
            await client.post(f"/tenants/{team['id']}/members", json={"user_id": "carol"}, headers=auth(ADMIN)), 201
        )
    objects: dict[str, dict[str, str]] = {}
    keys: dict[str, str] = {}
    for team, owner in ((t1, "alice"), (t2, "bob")):
        h = _h(auth, owner, team["id"])
        agent = await _json(await client.post("/api/agents", json=AGENT_WIRE, headers=h), 201)
        key = await _json(await client.post("/api/keys", json={"name": "k"}, headers=h), 201)
        sid = store.write_sync(
            lambda db, a=agent["id"], t=team["id"]: sessions_repo.create(db, owner_id=t, agent_id=a, status="ended")
        )
        objects[team["id"]] = {"agent": agent["id"], "session": sid, "key": key["id"]}
        keys[team["id"]] = key["key"]
    credentials = {
        "alice in t1": (_h(auth, "alice", t1["id"]), t1["id"]),
        "bob in t2": (_h(auth, "bob", t2["id"]), t2["id"]),
        "carol in t1": (_h(auth, "carol", t1["id"]), t1["id"]),
        "carol in t2": (_h(auth, "carol", t2["id"]), t2["id"]),
        "key of t1": ({"X-API-Key": keys[t1["id"]]}, t1["id"]),
        "key of t2": ({"Authorization": f"Bearer {keys[t2['id']]}"}, t2["id"]),
    }
    reads = [
        "/api/agents/{agent}",
        "/api/v1/agents/{agent}",
        "/api/sessions/{session}",
        "/api/sessions/{session}/transcripts",
        "/api/sessions/{session}/analysis",
        "/api/sessions/{session}/cost-breakdown",
    ]
    checked = 0
    for name, (headers, home) in credentials.items():
        listed = await _json(await client.get("/api/agents", headers=headers))
        assert [a["id"] for a in listed["agents"]] == [objects[home]["agent"]], name
        sessions = await _json(await client.get("/api/sessions", headers=headers))
        assert [s["id"] for s in sessions["sessions"]] == [objects[home]["session"]], name
        for tenant_id, ids in objects.items():
            for template in reads:
                resp = await client.get(template.format(**ids), headers=headers)
                assert resp.status == (200 if tenant_id == home else 404), (name, template, await resp.text())
                checked += 1
            if tenant_id != home and not name.startswith("key"):  # another tenant's key cannot be revoked
                resp = await client.delete(f"/api/keys/{ids['key']}", headers={**headers, "X-Tenant-ID": home})
                assert resp.status == 404, (name, await resp.text())
    # outsiders name neither tenant
    for team in (t1, t2):
        await assert_error(await client.get("/api/agents", headers=_h(auth, "mallory", team["id"])), 404)
    assert checked == len(credentials) * 2 * len(reads)

    # every tenant-scoped route of the table naming an object, every method: the other tenant's object is a 404
    # and nothing changes
    before = table_snapshot(settings)
    tried = 0
    for route in owned_routes():
        if not route.tenant_scoped:
            continue
        kind = {"agent": "agent", "session": "session", "api_key": "key"}.get(route.owns)
        if kind is None:
            continue  # clients: none made here (tests/api/test_ownership.py covers them)
        methods = [route.method] + (["PATCH"] if route.method == "PUT" else [])
        body = SAMPLE_BODIES.get(route.body.__name__) if route.body is not None else None
        for _name, (headers, home) in credentials.items():
            other = next(t for t in objects if t != home)
            path = route.path.replace("{" + route.owned_param + "}", objects[other][kind])
            for method in methods:
                await assert_error(await client.request(method, path, json=body, headers=headers), 404)
                tried += 1
    assert tried >= len(credentials) * 12
    assert table_snapshot(settings) == before
