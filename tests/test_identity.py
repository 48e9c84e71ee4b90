"""Identity links: events that tie ids together make one person for reads by user."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import duckdb
import httpx
import pytest

from tally.catalog import NewApp
from tally.http.services import Services
from tally.ids import uuid7
from tally.model import LINK_EVENT, LINK_PREVIOUS, Event
from tally.sink import AppendBatch
from tally.store.columns import events_table
from tally.store.duckdb_store import DuckDBStore
from tally.store.known_links import KnownLinks
from tally.store.query import EventQuery
from tally.store.rows import event_rows

APP = "c" * 24
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ev(name: str, **fields) -> Event:  # type: ignore[no-untyped-def]
    return Event(
        index=0,
        protocol="native",
        name=name,
        id=uuid7(),
        time=NOW,
        received_at=NOW,
        count=1,
        **fields,
    )


def links(db: DuckDBStore) -> set[tuple[str, str]]:
    rows = db.conn.execute("SELECT from_id, to_id FROM identity_links").fetchall()
    return {(a, b) for a, b in rows}


def person(db: DuckDBStore, user: str) -> list[str]:
    return sorted(r["name"] for r in db.fetch_events(EventQuery(app_id=APP, user=user)))


def test_events_with_device_and_user_link_them(data_dir) -> None:  # type: ignore[no-untyped-def]
    db = DuckDBStore(data_dir)
    db.migrate()
    db.commit_group(
        [
            AppendBatch(
                events=event_rows(
                    APP,
                    [
                        ev("anonymous browse", device_id="laptop"),
                        ev("login", device_id="laptop", user_id="alice"),
                        ev("login again", device_id="laptop", user_id="alice"),
                        ev("phone browse", device_id="phone"),
                        ev("stranger", device_id="other"),
                    ],
                )
            )
        ]
    )
    assert links(db) == {("laptop", "alice")}
    assert person(db, "alice") == ["anonymous browse", "login", "login again"]
    assert person(db, "laptop") == ["anonymous browse", "login", "login again"]

    # The phone is merged into the laptop later: the person now spans three ids.
    db.commit_group(
        [
            AppendBatch(
                events=event_rows(
                    APP,
                    [
                        ev(
                            LINK_EVENT,
                            device_id="laptop",
                            internal=True,
                            properties={LINK_PREVIOUS: "phone"},
                        ),
                    ],
                )
            )
        ]
    )
    assert ("phone", "laptop") in links(db)
    assert "phone browse" in person(db, "alice")
    assert "stranger" not in person(db, "alice")
    assert person(db, "other") == ["stranger"]
    db.close()


def test_a_link_event_that_is_not_internal_links_nothing(data_dir) -> None:  # type: ignore[no-untyped-def]
    db = DuckDBStore(data_dir)
    db.migrate()
    db.commit_group(
        [
            AppendBatch(
                events=event_rows(
                    APP,
                    [
                        ev(
                            LINK_EVENT, device_id="a", properties={LINK_PREVIOUS: "b"}
                        ),  # a user's own event
                    ],
                )
            )
        ]
    )
    assert links(db) == set()
    db.close()


def test_the_migration_links_what_was_stored_before(data_dir) -> None:  # type: ignore[no-untyped-def]
    from tally.store.duckdb_schema import MIGRATIONS

    db = DuckDBStore(data_dir)
    db.conn.execute("CREATE TABLE tally_schema (component VARCHAR PRIMARY KEY, version INTEGER)")
    db.conn.execute("INSERT INTO tally_schema VALUES ('events', 2)")
    MIGRATIONS[0].apply(db.conn)
    MIGRATIONS[1].apply(db.conn)
    db.conn.execute(
        "INSERT INTO events (app_id, id, name, time, received_at, count, protocol, device_id, "
        "user_id) VALUES (?, 'e1', 'old', now(), now(), 1, 'native', 'd1', 'u1')",
        [APP],
    )
    assert db.migrate() == [3, 4, 5, 6, 7]
    assert links(db) == {("d1", "u1")}
    db.close()


def _count_links(db: DuckDBStore) -> int:
    row = db.conn.execute("SELECT count(*) FROM identity_links").fetchone()
    return int(row[0]) if row else 0


def test_a_link_is_stored_once_however_often_it_comes(data_dir) -> None:  # type: ignore[no-untyped-def]
    db = DuckDBStore(data_dir)
    db.migrate()
    for _ in range(3):  # in one load twice, then in two more loads
        db.commit_group(
            [
                AppendBatch(
                    events=event_rows(
                        APP,
                        [
                            ev("login", device_id="laptop", user_id="alice"),
                            ev("login", device_id="laptop", user_id="alice"),
                            # same strings split differently: another link
                            ev("login", device_id="lapto", user_id="palice"),
                        ],
                    )
                )
            ]
        )
    assert _count_links(db) == 2
    assert links(db) == {("laptop", "alice"), ("lapto", "palice")}
    db.close()


def test_version_7_keeps_the_links_and_stores_repeats_once(data_dir) -> None:  # type: ignore[no-untyped-def]
    """A store made before version 7 (links under a primary key) keeps its links, now keyed."""
    from tally.store.duckdb_schema import MIGRATIONS

    db = DuckDBStore(data_dir)
    db.conn.execute("CREATE TABLE tally_schema (component VARCHAR PRIMARY KEY, version INTEGER)")
    db.conn.execute("INSERT INTO tally_schema VALUES ('events', 6)")
    for migration in MIGRATIONS[:6]:
        migration.apply(db.conn)
    db.conn.execute("INSERT INTO identity_links VALUES (?, 'laptop', 'alice', now())", [APP])
    assert db.migrate() == [7]
    db.commit_group(
        [AppendBatch(events=event_rows(APP, [ev("login", device_id="laptop", user_id="alice")]))]
    )
    assert _count_links(db) == 1
    assert person(db, "alice") == ["login"]
    db.close()


def test_a_million_links_fit_a_small_store(data_dir) -> None:  # type: ignore[no-untyped-def]
    """The links' former primary key (an in-memory index, ~80 bytes a link) could not hold a
    million links in 64 MB: the insert below failed, as every load with a link did once a store
    had ~3M links at the default 256 MB."""
    from tally.store.duckdb_schema import LINK_KEY_SQL

    db = DuckDBStore(data_dir, memory_limit="64MB")
    db.migrate()
    db.conn.execute(
        f"INSERT INTO identity_links SELECT app_id, from_id, to_id, now(), {LINK_KEY_SQL} "
        "FROM (SELECT ? AS app_id, 'device-' || md5(i::VARCHAR) AS from_id, "
        "'user-' || i AS to_id FROM range(1000000) t(i))",
        [APP],
    )
    db.commit_group(
        [
            AppendBatch(
                events=event_rows(
                    APP,
                    [  # a link stored before and a new one
                        ev(
                            "login",
                            device_id=f"device-{hashlib.md5(b'7').hexdigest()}",
                            user_id="user-7",
                        ),
                        ev("login", device_id="new-device", user_id="user-7"),
                    ],
                )
            )
        ]
    )
    assert _count_links(db) == 1_000_001
    assert person(db, "user-7") == ["login", "login"]
    db.close()


async def test_countly_old_device_id_merges_devices(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    key = new_app.app.app_key
    for device, extra in (("temp-device", {}), ("real-device", {"old_device_id": "temp-device"})):
        response = await client.post(
            "/i",
            data={
                "app_key": key,
                "device_id": device,
                "events": f'[{{"key":"on {device}"}}]',
                **extra,
            },
        )
        assert response.json() == {"result": "Success"}
    events = await services.store.fetch_events(
        EventQuery(app_id=new_app.app.id, user="real-device")
    )
    assert sorted(e["name"] for e in events) == sorted(
        ["on temp-device", "on real-device", LINK_EVENT]
    )
    [link] = [e for e in events if e["name"] == LINK_EVENT]
    assert link["internal"] is True and link["properties"] == {LINK_PREVIOUS: "temp-device"}
    assert link["device_id"] == "real-device"


def _load(db: DuckDBStore, *events: Event) -> None:
    db.commit_group([AppendBatch(events=event_rows(APP, list(events)))])


def _stated(*events: Event) -> frozenset[int] | None:
    return KnownLinks.stated(events_table(event_rows(APP, list(events))))


def test_links_known_to_the_store_are_not_searched_for_again(data_dir) -> None:  # type: ignore[no-untyped-def]
    """A load that only restates stored links skips the search of identity_links; one new link
    among known ones is still stored, and so is a link event's."""
    db = DuckDBStore(data_dir)
    db.migrate()
    _load(db, ev("login", device_id="laptop", user_id="alice"))
    restated = KnownLinks.stated(
        events_table(event_rows(APP, [ev("x", device_id="laptop", user_id="alice")]))
    )
    assert restated and db.known_links.all_known(restated)
    _load(
        db,
        ev("page", device_id="laptop", user_id="alice"),
        ev("page", device_id="phone", user_id="alice"),
        ev("anonymous", device_id="tablet"),
    )
    assert links(db) == {("laptop", "alice"), ("phone", "alice")}
    _load(db, ev(LINK_EVENT, device_id="phone", internal=True, properties={LINK_PREVIOUS: "old"}))
    assert ("old", "phone") in links(db)
    assert _count_links(db) == 3
    db.close()


def test_links_deleted_with_a_person_are_stored_again_when_restated(data_dir) -> None:  # type: ignore[no-untyped-def]
    db = DuckDBStore(data_dir)
    db.migrate()
    _load(db, ev("login", device_id="laptop", user_id="alice"))
    db.delete_person(APP, "alice")
    assert links(db) == set()
    _load(db, ev("login", device_id="laptop", user_id="alice"))
    assert links(db) == {("laptop", "alice")}
    db.close()


def test_a_failed_load_leaves_its_links_unknown(data_dir) -> None:  # type: ignore[no-untyped-def]
    db = DuckDBStore(data_dir)
    db.migrate()
    db.conn.execute("ALTER TABLE identity_links RENAME TO identity_links_away")
    with pytest.raises(duckdb.Error):
        _load(db, ev("login", device_id="laptop", user_id="alice"))
    db.conn.execute("ALTER TABLE identity_links_away RENAME TO identity_links")
    _load(db, ev("login", device_id="laptop", user_id="alice"))
    assert links(db) == {("laptop", "alice")}
    db.close()


def test_stated_links_are_the_device_to_customer_pairs() -> None:
    def stated(*events: Event) -> frozenset[int] | None:
        return KnownLinks.stated(events_table(event_rows(APP, list(events))))

    assert (
        stated(ev("a", device_id="d"), ev("b", user_id="u"), ev("c", device_id="x", user_id="x"))
        == frozenset()
    )
    pair = stated(ev("a", device_id="d", user_id="u"))
    assert pair and len(pair) == 1
    assert stated(ev("a", device_id="d", user_id="u"), ev("b", device_id="d", user_id="u")) == pair
    assert stated(ev("a", device_id="du", user_id="")) != stated(
        ev("a", device_id="d", user_id="u")
    )
    assert stated(ev(LINK_EVENT, device_id="d", internal=True)) is None  # always searched
    known = KnownLinks(most=2)
    assert not known.all_known(pair) and not known.all_known(None)
    known.stored(pair)
    assert known.all_known(pair)
    known.stored(stated(ev("a", device_id="e", user_id="u"), ev("a", device_id="f", user_id="u")))
    assert not known.all_known(pair)  # more than most: started over
    known.stored(pair)
    known.forget()
    assert not known.all_known(pair)
