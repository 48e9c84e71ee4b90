"""``tally users`` (dashboard logins), ``tally demo`` and the first-run hint of ``tally serve``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
from click.testing import CliRunner

from support import ServerFactory
from tally.catalog import Catalog, sqlite_url
from tally.cli import main
from tally.config import Settings
from tally.serve import first_run_hint


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.output


def catalog_of(data: str) -> Catalog:
    return Catalog(sqlite_url(Path(data)))


def test_create_list_delete_and_change_passwords(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out = run("users", "list", "--data", data)
    assert code == 0 and "tally users create EMAIL" in out

    code, out = run(
        "users", "create", "Ann@Example.com", "--data", data, input="correct horse\ncorrect horse\n"
    )
    assert code == 0 and "created dashboard user ann@example.com" in out
    assert "correct horse" not in out  # the prompt hides the input
    code, out = run(
        "users", "create", "bob@example.com", "--password-stdin", "--data", data,
        input="battery staple\n",
    )  # fmt: skip
    assert code == 0
    code, out = run(
        "users", "create", "ANN@example.com", "--password-stdin", "--data", data,
        input="another password\n",
    )  # fmt: skip
    assert code == 1 and "exists already" in out

    code, out = run("users", "list", "--data", data, "--json")
    listed = json.loads(out)
    assert [u["email"] for u in listed] == ["ann@example.com", "bob@example.com"]
    assert set(listed[0]) == {"email", "created_at", "last_login_at"}
    code, out = run("users", "list", "--data", data)
    assert "ann@example.com" in out and "never" in out and "$argon2" not in out

    catalog = catalog_of(data)
    try:
        assert catalog.users.authenticate("ann@example.com", "correct horse") is not None
        session = catalog.users.start_session(catalog.users.get("ann@example.com"))  # type: ignore[arg-type]
        code, out = run(
            "users", "password", "ann@example.com", "--password-stdin", "--data", data,
            input="a new password\n",
        )  # fmt: skip
        assert code == 0 and "sessions have ended" in out
        assert catalog.users.session(session.token) is None
        assert catalog.users.authenticate("ann@example.com", "a new password") is not None
    finally:
        catalog.close()
    code, out = run("users", "list", "--data", data)
    assert re.search(r"ann@example\.com\s+\S+\s+20\d\d-", out)  # the last login is shown

    code, out = run("users", "delete", "BOB@example.com", "--data", data)
    assert code == 0 and "deleted dashboard user bob@example.com" in out
    code, out = run("users", "delete", "bob@example.com", "--data", data)
    assert code == 1 and "no dashboard user" in out
    code, out = run("users", "password", "bob@example.com", "--password-stdin", "--data", data)
    assert code == 1 and "no dashboard user" in out


def test_bad_emails_and_passwords_are_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out = run("users", "create", "not-an-email", "--password-stdin", "--data", data)
    assert code == 2 and "not an email address" in out
    code, out = run(
        "users", "create", "ann@example.com", "--password-stdin", "--data", data, input="short\n"
    )
    assert code == 1 and "at least 8 characters" in out
    # Prompting: a short password is asked again, and the two entries must match.
    code, out = run(
        "users", "create", "ann@example.com", "--data", data,
        input="short\nlong enough\ndifferent\nlong enough\nlong enough\n",
    )  # fmt: skip
    assert code == 0, out
    assert "at least 8 characters" in out and "do not match" in out.lower()


def test_forget_is_a_top_level_command(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    created = json.loads(run("apps", "create", "Shop", "--data", data, "--json")[1])
    code, out = run("forget", "--app", created["id"], "cust-1", "--yes", "--json", "--data", data)
    assert code == 0
    assert json.loads(out)["ids"] == ["cust-1"]
    code, out = run("users", "forget", "--app", created["id"], "cust-1", "--data", data)
    assert code == 2  # the users group is for dashboard logins now


def test_demo_creates_an_app_with_events_and_a_user_once(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out = run("demo", "--days", "3", "--data", data)
    assert code == 0, out
    events = int(re.search(r"Created the demo app 'Demo' with (\d+) events", out)[1])  # type: ignore[index]
    assert events > 50
    password = re.search(r"demo@tally\.local with password (\S+)", out)[1]  # type: ignore[index]
    catalog = catalog_of(data)
    try:
        (app,) = catalog.list_apps()
        assert app.name == "Demo"
        assert {d.name for d in catalog.definitions.list(app.id)} >= {
            "product.buy",
            "signup.complete",
        }
        assert catalog.users.authenticate("demo@tally.local", password) is not None
    finally:
        catalog.close()
    store = duckdb.connect(str(Path(data) / "events.duckdb"))
    try:
        stored = store.execute("SELECT count(*) FROM events WHERE app_id = ?", [app.id]).fetchone()
        failed = store.execute("SELECT count(*) FROM failed_events").fetchone()
    finally:
        store.close()
    assert stored == (events,) and failed == (0,)

    code, out = run("demo", "--data", data)
    assert code == 0
    assert "exists already" in out and "tally users password demo@tally.local" in out
    assert "with password" not in out
    catalog = catalog_of(data)
    try:
        assert len(catalog.list_apps()) == 1
    finally:
        catalog.close()


def test_the_first_run_hint_until_a_user_exists(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", catalog=None)
    run("migrate", "--data", str(settings.data_dir))
    hint = first_run_hint(settings)
    assert hint is not None
    assert "tally users create EMAIL" in hint and "tally demo" in hint
    assert str(settings.data_dir) in hint
    catalog = catalog_of(str(settings.data_dir))
    catalog.users.create("ann@example.com", "correct horse")
    catalog.close()
    assert first_run_hint(settings) is None


def test_serve_prints_the_hint_on_a_fresh_data_folder(
    tmp_path: Path, servers: ServerFactory
) -> None:
    data = tmp_path / "d"
    server = servers.start(data, workers=1)
    lines = [line for line in server.output().splitlines() if "No dashboard user yet" in line]
    assert len(lines) == 1
    assert "tally users create EMAIL" in lines[0] and "tally demo" in lines[0]
    server.terminate()

    catalog = catalog_of(str(data))
    catalog.users.create("ann@example.com", "correct horse")
    catalog.close()
    again = servers.start(data, workers=1)
    assert "No dashboard user yet" not in again.output()
