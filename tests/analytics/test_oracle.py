"""The oracle of dataset.py on its own (no server): its buckets across daylight-saving changes and
odd offsets, its people, and whether the dataset exercises what test_queries.py relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics_dataset import KOLKATA, WARSAW, Oracle, bound, bucket_starts, generate

EVENTS = generate()
ORACLE = Oracle(EVENTS)


def starts(from_: str, to: str, tz, interval: str) -> list[str]:
    return [b.isoformat() for b in bucket_starts(bound(from_, tz), bound(to, tz), tz, interval)]


def test_generation_is_deterministic() -> None:
    assert [e.payload() for e in generate()] == [e.payload() for e in EVENTS]
    assert len(EVENTS) > 2500
    assert len({e.id for e in EVENTS}) == len(EVENTS)


def test_days_across_the_spring_forward() -> None:
    assert starts("2026-03-28", "2026-03-31", WARSAW, "day") == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert starts("2026-03-23", "2026-04-06", WARSAW, "week") == [
        "2026-03-23T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert starts("2026-10-01", "2026-12-01", WARSAW, "month") == [
        "2026-10-01T00:00:00+02:00",
        "2026-11-01T00:00:00+01:00",
    ]


def test_hours_across_daylight_saving_changes() -> None:
    spring = starts("2026-03-29", "2026-03-30", WARSAW, "hour")
    assert len(spring) == 23
    assert spring[1:3] == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"]
    autumn = starts("2026-10-25", "2026-10-26", WARSAW, "hour")
    assert len(autumn) == 25
    assert autumn[2:4] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


def test_hours_of_a_half_hour_zone() -> None:
    hours = bucket_starts(
        bound("2026-03-28", KOLKATA), bound("2026-03-29", KOLKATA), KOLKATA, "hour"
    )
    assert len(hours) == 24
    assert hours[0].isoformat() == "2026-03-28T00:00:00+05:30"
    assert all(h.astimezone(UTC).minute == 30 for h in hours)


def test_people() -> None:
    assert ORACLE.ids_of("d-02-1") == {"d-02-0", "d-02-1", "u-02"}  # two devices, one user
    assert ORACLE.ids_of("d-03-1") == {"d-03-1"}  # the user id never came with this device
    assert ORACLE.ids_of("u-03") == {"d-03-0", "u-03"}
    assert ORACLE.ids_of("d-00-0") == {"d-00-0", "d-01-0", "u-01"}  # u-01 logged in on d-00-0


def test_the_data_covers_the_tricky_instants() -> None:
    def near(instant: datetime, minutes: int) -> int:
        window = timedelta(minutes=minutes)
        return sum(1 for e in EVENTS if instant - window <= e.time < instant + window)

    # Both copies of Warsaw's repeated hour, and the hours next to the spring-forward.
    assert near(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 30) > 0
    assert near(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 30) > 0
    assert near(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 30) > 0
    assert near(datetime(2026, 3, 29, 1, 30, tzinfo=UTC), 30) > 0
    # Right at (and around) local midnights.
    midnights = [datetime(2026, 3, d, tzinfo=WARSAW).astimezone(UTC) for d in range(1, 32)] + [
        datetime(2026, 10, d, tzinfo=WARSAW).astimezone(UTC) for d in range(5, 32)
    ]
    assert sum(near(m, 10) for m in midnights) > 20
    assert any(e.time in midnights for e in EVENTS)


def test_the_first_value_of_each_property_has_its_type() -> None:
    """Tally defines properties on first sight with the type of the first value."""
    first: dict[tuple[str, str], type] = {}
    for event in EVENTS:
        for key, value in event.properties.items():
            kind = bool if isinstance(value, bool) else (float if key == "amount" else type(value))
            first.setdefault((event.name, key), kind)
            assert first[(event.name, key)] is kind, (event.name, key, value)


def test_users_queries_are_meaningful() -> None:
    """Somebody is new and somebody returns, also where the filters hide someone's first event."""
    weeks = {"kind": "users", "from": "2026-03-02", "to": "2026-04-27", "tz": "Europe/Warsaw"}
    weeks["interval"] = "week"
    unfiltered = ORACLE.answer(weeks)["points"]
    pro = [{"field": "properties.plan", "op": "eq", "value": "pro"}]
    filtered = ORACLE.answer({**weeks, "filters": pro})["points"]
    assert any(p["new"] for p in unfiltered) and any(p["returning"] for p in unfiltered)
    assert 0 < sum(p["new"] for p in filtered) < sum(p["new"] for p in unfiltered)
    assert sum(p["returning"] for p in filtered) > 0
