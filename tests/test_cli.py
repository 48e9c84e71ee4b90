"""The ``tally`` command line, run in-process with click's runner on real files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from click.testing import CliRunner

from tally.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_apps_create_list_show_json(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out = run("apps", "create", "Shop", "--data", data, "--json")
    assert code == 0
    created = json.loads(out)
    assert set(created) == {
        "id",
        "name",
        "app_key",
        "api_key",
        "api_secret",
        "created_at",
        "settings",
        "catalog_version",
        "previous_app_key",
        "previous_app_key_until",
        "previous_secret_until",
    }
    assert created["name"] == "Shop"

    code, out = run("apps", "list", "--data", data, "--json")
    listed = json.loads(out)
    assert [a["id"] for a in listed] == [created["id"]]
    assert "api_secret" not in listed[0]

    for ref in (created["id"], created["app_key"]):
        code, out = run("apps", "show", ref, "--data", data, "--json")
        assert code == 0 and json.loads(out)["id"] == created["id"]

    code, out = run("apps", "show", "missing", "--data", data)
    assert code == 1 and "no app" in out


def test_human_output_shows_the_secret_once(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out = run("apps", "create", "Shop", "--data", data)
    assert code == 0 and "API secret" in out and "shown only now" in out
    code, out = run("apps", "list", "--data", data)
    assert "Shop" in out and "secret" not in out.lower()


def test_data_dir_from_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TALLY_DATA", str(tmp_path / "env-data"))
    assert run("apps", "create", "Env")[0] == 0
    assert (tmp_path / "env-data" / "catalog.sqlite").exists()


def test_migrate_creates_both_stores_and_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = run("migrate", "--data", str(data))
    assert code == 0 and "catalog schema -> version 1" in out and "event store" in out
    assert (data / "events.duckdb").exists() and (data / "catalog.sqlite").exists()
    code, out = run("migrate", "--data", str(data))
    assert code == 0 and "up to date" in out


def test_migrate_explains_a_locked_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run("migrate", "--data", str(data))
    # Another process holding the file is what a running server looks like; DuckDB allows one
    # writer per file, so a second process must be refused with a clear message.
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('ok',flush=True); "
            "time.sleep(30)",
            str(data / "events.duckdb"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
        result = CliRunner().invoke(main, ["migrate", "--data", str(data)])
        assert result.exit_code == 1
        assert "in use" in result.output
        result = CliRunner().invoke(main, ["serve", "--data", str(data), "--port", "0"])
        assert result.exit_code == 1
        assert "in use by another process" in result.output
    finally:
        holder.kill()
        holder.wait()
    assert duckdb.connect(str(data / "events.duckdb")).execute("select 1").fetchone() == (1,)


def test_limits_from_the_environment_and_options(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tally.limits import Limits

    monkeypatch.setenv("TALLY_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("TALLY_DEDUP_WINDOW_DAYS", "30")
    limits = Limits.from_env()
    assert (limits.max_body_bytes, limits.dedup_window_days) == (2048, 30)
    assert limits.max_event_bytes == Limits().max_event_bytes
    monkeypatch.setenv("TALLY_MAX_EVENT_BYTES", "lots")
    code, out = run("serve", "--port", "0")
    assert code == 1 and "TALLY_MAX_EVENT_BYTES must be a whole number" in out
    monkeypatch.delenv("TALLY_MAX_EVENT_BYTES")
    code, out = run("serve", "--port", "0", "--max-body-bytes", "0")
    assert code == 1 and "max_body_bytes must be at least 1" in out


def test_apps_set_changes_settings(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    created = json.loads(run("apps", "create", "Shop", "--data", data, "--json")[1])
    code, out = run(
        "apps", "set", created["app_key"], "--countly-salt", "pepper", "--data", data, "--json"
    )
    assert code == 0 and json.loads(out)["settings"] == {"countly_salt": "set"}
    shown = json.loads(run("apps", "show", created["id"], "--data", data, "--json")[1])
    assert shown["settings"] == {"countly_salt": "set"}
    code, out = run("apps", "set", created["id"], "--countly-salt", "", "--data", data, "--json")
    assert json.loads(out)["settings"] == {}
    assert run("apps", "set", "nope", "--countly-salt", "x", "--data", data)[0] == 1


def test_start_up_failures_name_their_cause(tmp_path: Path) -> None:
    """A DuckDB error whose text says "block" (out of memory) is not a lock held elsewhere."""
    from types import SimpleNamespace

    from tally.serve import _explain

    settings = SimpleNamespace(data_dir=tmp_path, store=None)
    memory = duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
    said = _explain(memory, settings)  # type: ignore[arg-type]
    assert said is not None and "TALLY_STORE_MEMORY" in said and "in use" not in said
    locked = duckdb.IOException('Could not set lock on file "x": Conflicting lock is held')
    said = _explain(locked, settings)  # type: ignore[arg-type]
    assert said is not None and "in use by another process" in said
    assert _explain(duckdb.IOException("Could not read from file"), settings) is None  # type: ignore[arg-type]
