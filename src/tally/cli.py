"""The ``tally`` command. Every command takes ``--data`` (or TALLY_DATA)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
import msgspec

from tally.config import DEFAULT_PORT, Settings, default_workers

if TYPE_CHECKING:
    from datetime import datetime

data_option = click.option(
    "--data",
    "data_dir",
    envvar="TALLY_DATA",
    default="tally-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Data folder (DuckDB event store, SQLite catalog).",
)
catalog_option = click.option(
    "--catalog",
    envvar="TALLY_CATALOG",
    default=None,
    metavar="URL",
    help="Catalog database URL, e.g. postgresql://user@host/db "
    "(default: SQLite in the data folder).",
)


store_option = click.option(
    "--store",
    envvar="TALLY_STORE",
    default=None,
    metavar="URL",
    help="Event store URL, e.g. clickhouse://127.0.0.1:9000/tally "
    "(default: DuckDB in the data folder).",
)
log_option = click.option(
    "--log",
    "log_url",
    envvar="TALLY_LOG",
    default=None,
    metavar="URL",
    help="Log between collectors and the store, e.g. nats://127.0.0.1:4222 (needs --store; "
    "`tally loader` moves it into the store). See docs/scaling.md.",
)


def _settings(data_dir: str, catalog: str | None, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, catalog=catalog, **extra)  # type: ignore[arg-type]


def _catalog(settings: Settings):  # type: ignore[no-untyped-def]
    from tally.catalog import Catalog

    settings.ensure_data_dir()
    catalog = Catalog(settings.catalog_url)
    catalog.migrate()
    return catalog


def _print_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


@click.group()
@click.version_option(package_name="tally")
def main() -> None:
    """Tally: self-hosted event tracking and product analytics."""


@main.command()
@data_option
@catalog_option
@store_option
@log_option
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TALLY_HOST")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, envvar="TALLY_PORT")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    envvar="TALLY_WORKERS",
    help="HTTP worker processes (default: one per core). With more than one, a separate "
    "store process owns the event store.",
)
@click.option(
    "--max-body-bytes", type=int, default=None, help="Largest request body (default 1048576)."
)
@click.option("--max-event-bytes", type=int, default=None, help="Largest event (default 32768).")
@click.option(
    "--max-events-per-request", type=int, default=None, help="Events per request (default 10000)."
)
@click.option(
    "--dedup-window-days",
    type=int,
    default=None,
    help="How long client event ids are remembered for deduplication (default 7).",
)
@click.option(
    "--dedup-max-ids",
    type=int,
    default=None,
    help="Client event ids the embedded store remembers at most, the newest (default 0: as "
    "many as a quarter of TALLY_STORE_MEMORY holds, ~64 bytes an id).",
)
@click.option(
    "--rate-limit-ip",
    type=float,
    default=None,
    metavar="PER_SECOND",
    help="Ingest requests per second per client address, per worker (default 0: no limit).",
)
@click.option(
    "--rate-limit-ip-burst", type=int, default=None, help="Burst per address (default 2 x rate)."
)
@click.option(
    "--rate-limit-app",
    type=float,
    default=None,
    metavar="PER_SECOND",
    help="Ingest requests per second per app, per worker (default 0: no limit).",
)
@click.option(
    "--rate-limit-app-burst", type=int, default=None, help="Burst per app (default 2 x rate)."
)
@click.option(
    "--rate-limit-exempt",
    default=None,
    metavar="NETWORKS",
    help="Comma-separated client networks without a per-address limit, or 'none' "
    "(default 127.0.0.0/8,::1).",
)
@click.option(
    "--header-timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Time a connection has to send a request's headers, and to stay idle (default 30).",
)
@click.option(
    "--body-timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Time an ingest request has to send its body (default 60).",
)
def serve(
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
    host: str,
    port: int,
    workers: int | None,
    **limit_options: Any,
) -> None:
    """Run the server (embedded DuckDB + SQLite in the data folder by default).

    Scale-out (docs/scaling.md): --store clickhouse://... --log nats://... makes this a collector
    that acknowledges events once JetStream has them and reads from ClickHouse.

    Every limit can also be set with a TALLY_* variable (TALLY_MAX_BODY_BYTES,
    TALLY_RATE_LIMIT_IP, ...): see docs/limits.md.
    """
    from tally.limits import Limits
    from tally.serve import serve as run_server

    try:
        limits = Limits.from_env()
        overrides = {k: v for k, v in limit_options.items() if v is not None}
        if "rate_limit_exempt" in overrides:
            overrides["rate_limit_exempt"] = Limits.parse_field(
                "--rate-limit-exempt", "rate_limit_exempt", overrides["rate_limit_exempt"]
            )
        limits = msgspec.structs.replace(limits, **overrides).checked()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = _settings(
        data_dir,
        catalog,
        store=store,
        log=log_url,
        host=host,
        port=port,
        workers=workers or default_workers(),
        limits=limits,
    )
    try:
        settings.check()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    from tally.serve import PrepareError

    try:
        run_server(settings)
    except PrepareError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("clickhouse_driver"):
            raise click.ClickException(f"cannot use the event store {store}: {exc}") from exc
        raise


@main.command("loader")
@click.option(
    "--log",
    "log_url",
    envvar="TALLY_LOG",
    required=True,
    metavar="URL",
    help="The log to read, e.g. nats://127.0.0.1:4222 (as given to tally serve).",
)
@click.option(
    "--store",
    envvar="TALLY_STORE",
    required=True,
    metavar="URL",
    help="The event store to fill, e.g. clickhouse://127.0.0.1:9000/tally.",
)
@click.option(
    "--batch",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Most messages per insert.",
)
@click.option(
    "--max-wait",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 60.0),
    help="Seconds to gather a batch after its first message.",
)
@click.option(
    "--ack-wait",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1.0),
    help="Seconds before JetStream redelivers what a loader took and did not "
    "acknowledge (set when the consumer is created).",
)
def loader_command(log_url: str, store: str, batch: int, max_wait: float, ack_wait: float) -> None:
    """Move events from the log (NATS JetStream) into the event store (ClickHouse).

    Run one or more per deployment: they share one durable consumer. Stops on SIGTERM or
    Ctrl-C after storing and acknowledging the batch in hand.
    """
    from tally.log.loader import run_loader

    try:
        run_loader(log_url, store, batch=batch, max_wait=max_wait, ack_wait=ack_wait)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@data_option
@catalog_option
@store_option
def migrate(data_dir: str, catalog: str | None, store: str | None) -> None:
    """Bring the catalog and the event store schemas up to date (tally serve also does this)."""
    import duckdb

    from tally.serve import prepare

    try:
        done = prepare(_settings(data_dir, catalog, store=store))
    except duckdb.IOException as exc:
        raise click.ClickException(
            f"the event store is in use (is tally serve running on this data folder?): {exc}"
        ) from exc
    for line in done or ["everything is up to date"]:
        click.echo(line)


@main.group()
def apps() -> None:
    """Create and inspect apps and their keys."""


@apps.command("create")
@click.argument("name")
@data_option
@catalog_option
@click.option("--json", "as_json", is_flag=True, help="Print the app as JSON.")
def apps_create(name: str, data_dir: str, catalog: str | None, as_json: bool) -> None:
    """Create an app. Its API secret is printed this once; only a hash is kept."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        created = store.create_app(name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    if as_json:
        _print_json(created.to_dict())
        return
    app = created.app
    click.echo(f"Created app {app.name!r}")
    click.echo(f"  id          {app.id}")
    click.echo(f"  app key     {app.app_key}    (public: browsers and SDKs)")
    click.echo(f"  API key     {app.api_key}    (server-side writes and reads)")
    click.echo(f"  API secret  {created.api_secret}")
    click.echo("The API secret is shown only now; Tally keeps only a hash of it.")


@apps.command("list")
@data_option
@catalog_option
@click.option("--json", "as_json", is_flag=True)
def apps_list(data_dir: str, catalog: str | None, as_json: bool) -> None:
    """List apps."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        found = store.list_apps()
    finally:
        store.close()
    if as_json:
        _print_json([app.public() for app in found])
        return
    if not found:
        click.echo("No apps yet. Create one with: tally apps create NAME")
        return
    click.echo(f"{'ID':<24}  {'APP KEY':<40}  NAME")
    for app in found:
        click.echo(f"{app.id:<24}  {app.app_key:<40}  {app.name}")


@apps.command("set")
@click.argument("app")
@data_option
@catalog_option
@click.option(
    "--countly-salt",
    default=None,
    metavar="SALT",
    help="Require Countly checksums made with this salt ('' turns the check off).",
)
@click.option("--json", "as_json", is_flag=True)
def apps_set(
    app: str, data_dir: str, catalog: str | None, countly_salt: str | None, as_json: bool
) -> None:
    """Change an app's settings, by id or app key. Running servers see it within a second."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        found = store.get_app(app) or store.app_by_key(app)
        if found is None:
            raise click.ClickException(f"no app with id or app key {app!r}")
        changes: dict[str, Any] = {}
        if countly_salt is not None:
            changes["countly_salt"] = countly_salt or None
        updated = store.update_settings(found.id, **changes) if changes else found
    finally:
        store.close()
    if as_json:
        _print_json(updated.public())
        return
    settings = msgspec.json.encode(updated.public().settings).decode()
    click.echo(f"settings of {updated.name!r}: {settings}")


@apps.command("rotate")
@click.argument("app")
@data_option
@catalog_option
@click.option("--app-key", is_flag=True, help="Replace the public app key too.")
@click.option(
    "--overlap",
    type=click.IntRange(0, 30 * 24 * 3600),
    default=24 * 3600,
    show_default=True,
    metavar="SECONDS",
    help="How long the old secret (and app key) keep working; 0 stops them at once.",
)
@click.option("--json", "as_json", is_flag=True)
def apps_rotate(
    app: str, data_dir: str, catalog: str | None, app_key: bool, overlap: int, as_json: bool
) -> None:
    """Give an app a new API secret (and with --app-key a new app key), by id or app key. The new
    secret is printed this once; the old one keeps working for the overlap."""
    from datetime import timedelta

    store = _catalog(_settings(data_dir, catalog))
    try:
        found = store.get_app(app) or store.app_by_key(app)
        if found is None:
            raise click.ClickException(f"no app with id or app key {app!r}")
        rotated = store.rotate_secret(found.id, app_key=app_key, overlap=timedelta(seconds=overlap))
    finally:
        store.close()
    until = rotated.app.previous_secret_until
    if as_json:
        _print_json({**rotated.to_dict(), "previous_valid_until": until})
        return
    new = rotated.app
    click.echo(f"Rotated the keys of {new.name!r}")
    if app_key:
        click.echo(f"  app key     {new.app_key}")
    click.echo(f"  API key     {new.api_key}")
    click.echo(f"  API secret  {rotated.api_secret}")
    replaced = "secret and app key" if app_key else "secret"
    if until is None:
        click.echo(f"The old {replaced} stopped working now.")
    else:
        click.echo(f"The old {replaced} keep working until {until.isoformat()}.")
    click.echo("The API secret is shown only now; Tally keeps only a hash of it.")


@apps.command("show")
@click.argument("app")
@data_option
@catalog_option
@click.option("--json", "as_json", is_flag=True)
def apps_show(app: str, data_dir: str, catalog: str | None, as_json: bool) -> None:
    """Show one app, by id or app key."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        found = store.get_app(app) or store.app_by_key(app)
    finally:
        store.close()
    if found is None:
        raise click.ClickException(f"no app with id or app key {app!r}")
    if as_json:
        _print_json(found.public())
        return
    click.echo(f"name        {found.name}")
    click.echo(f"id          {found.id}")
    click.echo(f"app key     {found.app_key}")
    click.echo(f"API key     {found.api_key}")
    click.echo(f"created     {found.created_at.isoformat()}")
    click.echo(f"settings    {msgspec.json.encode(found.public().settings).decode()}")
    old_key_until = found.previous_app_key_until
    if old_key_until is not None:
        click.echo(f"old app key {found.previous_app_key} (until {old_key_until.isoformat()})")
    if found.previous_secret_until is not None:
        click.echo(f"old secret  accepted until {found.previous_secret_until.isoformat()}")


# Dashboard users (docs/dashboard-auth.md).


@main.group("users")
def users_group() -> None:
    """Dashboard logins: create, list, delete, change a password. Every user may manage every
    app (no per-app roles yet)."""


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


def _password(password_stdin: bool) -> str:
    from tally.catalog.users import UserError, check_password

    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")

    def valid(value: str) -> str:
        try:
            check_password(value)
        except UserError as exc:
            raise click.UsageError(str(exc)) from None
        return value

    return str(
        click.prompt("Password", hide_input=True, confirmation_prompt=True, value_proc=valid)
    )


@users_group.command("create")
@click.argument("email")
@password_stdin_option
@data_option
@catalog_option
def users_create(email: str, password_stdin: bool, data_dir: str, catalog: str | None) -> None:
    """Create a dashboard user who logs in with EMAIL (any case) and a password."""
    from tally.catalog.users import UserError, check_email

    try:
        email = check_email(email)
    except UserError as exc:
        raise click.BadParameter(str(exc), param_hint="'EMAIL'") from None
    store = _catalog(_settings(data_dir, catalog))
    try:
        if store.users.get(email) is not None:
            raise click.ClickException(f"a user with email {email!r} exists already")
        user = store.users.create(email, _password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"created dashboard user {user.email}")


@users_group.command("list")
@data_option
@catalog_option
@click.option("--json", "as_json", is_flag=True)
def users_list(data_dir: str, catalog: str | None, as_json: bool) -> None:
    """List dashboard users (never password hashes)."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        found = store.users.list()
    finally:
        store.close()
    if as_json:
        _print_json([{k: v for k, v in msgspec.to_builtins(u).items() if k != "id"} for u in found])
        return
    if not found:
        click.echo("No dashboard users yet. Create one with: tally users create EMAIL")
        return
    width = max(len("EMAIL"), *(len(u.email) for u in found))
    click.echo(f"{'EMAIL':<{width}}  {'CREATED':<25}  LAST LOGIN")
    for user in found:
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        created = user.created_at.isoformat(timespec="seconds")
        click.echo(f"{user.email:<{width}}  {created:<25}  {last}")


@users_group.command("delete")
@click.argument("email")
@data_option
@catalog_option
def users_delete(email: str, data_dir: str, catalog: str | None) -> None:
    """Delete a dashboard user; their sessions end at once."""
    store = _catalog(_settings(data_dir, catalog))
    try:
        deleted = store.users.delete(email)
    finally:
        store.close()
    if not deleted:
        raise click.ClickException(f"no dashboard user with email {email!r}")
    click.echo(f"deleted dashboard user {email.strip().lower()}")


@users_group.command("password")
@click.argument("email")
@password_stdin_option
@data_option
@catalog_option
def users_password(email: str, password_stdin: bool, data_dir: str, catalog: str | None) -> None:
    """Set a dashboard user's password; their sessions end at once (they log in again)."""
    from tally.catalog.users import UserError

    store = _catalog(_settings(data_dir, catalog))
    try:
        if store.users.get(email) is None:
            raise click.ClickException(f"no dashboard user with email {email!r}")
        user = store.users.set_password(email, _password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyError:
        raise click.ClickException(f"no dashboard user with email {email!r}") from None
    finally:
        store.close()
    click.echo(f"changed the password of {user.email}; their sessions have ended")


DEMO_APP = "Demo"
DEMO_USER = "demo@tally.local"


def _demo_definitions() -> list[Any]:
    from tally.catalog.definitions import EventDefinition, PropertyDefinition, PropertyType

    return [
        EventDefinition(
            name="product.buy",
            display_name="Purchase",
            description="A customer bought a product (demo data).",
            label_template="Bought {{item}}",
            properties=[
                PropertyDefinition(name="item", required=True),
                PropertyDefinition(name="price", type=PropertyType.NUMBER),
            ],
        ),
        EventDefinition(
            name="signup.complete",
            display_name="Sign-up",
            description="A visitor created an account (demo data).",
            properties=[PropertyDefinition(name="plan")],
        ),
    ]


def demo_events(days: int, now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """Native events of a small shop over the last ``days`` days: sessions, page visits, sign-ups
    and purchases by a few dozen people, reproducible for a seed."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    pages = [("/", "Home"), ("/shop", "Shop"), ("/pricing", "Pricing"), ("/blog", "Blog")]
    items = [("rolex", 120.5), ("casio", 35.0), ("seiko", 89.9), ("strap", 12.0)]
    agents = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    ]
    events: list[dict[str, Any]] = []
    start = now - timedelta(days=days)
    for person in range(40):
        device = f"demo-device-{person}"
        user = f"demo-customer-{person}" if person % 3 else None
        agent = agents[person % len(agents)]
        signed_up = False
        for day in range(days):
            if rng.random() > 0.55:
                continue
            at = start + timedelta(days=day, hours=rng.uniform(7, 22))
            steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("session.start", {}, {})]
            for url, title in rng.sample(pages, rng.randint(1, 3)):
                steps.append(("page.visit", {"url": url, "title": title}, {}))
            if user is not None and not signed_up and rng.random() < 0.5:
                signed_up = True
                steps.append(("signup.complete", {"plan": rng.choice(["free", "pro"])}, {}))
            if rng.random() < 0.35:
                item, price = rng.choice(items)
                steps.append(("product.buy", {"item": item, "price": price}, {"sum": price}))
            steps.append(("session.end", {}, {}))
            for name, properties, extra in steps:
                at += timedelta(seconds=rng.uniform(5, 120))
                if at >= now:
                    break
                event = {
                    "id": f"demo-{len(events)}",
                    "name": name,
                    "time": at.isoformat(),
                    "device": device,
                    "session": f"demo-s-{person}-{day}",
                    "properties": properties,
                    "user_agent": agent,
                    **extra,
                }
                if user is not None:
                    event["user"] = user
                events.append(event)
    return events


@main.command("demo")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 90))
@data_option
@catalog_option
@store_option
@log_option
def demo_command(
    days: int, data_dir: str, catalog: str | None, store: str | None, log_url: str | None
) -> None:
    """Create a demo app with a few days of events and a demo dashboard user. Running it again
    leaves what exists as it is and says so."""
    import asyncio
    import secrets
    from datetime import UTC, datetime

    from tally.http.services import Services
    from tally.transfer.importer import Importer, Row

    settings = _settings(data_dir, catalog, store=store, log=log_url)
    store = _catalog(settings)
    try:
        existing = [a for a in store.list_apps() if a.name == DEMO_APP]
        if existing:
            click.echo(
                f"The demo app {DEMO_APP!r} exists already (id {existing[0].id}); "
                "its events are left as they are."
            )
        else:

            async def load():  # type: ignore[no-untyped-def]
                # The event store first: if a server holds it, nothing is created.
                events = await _transfer_store(settings, "stop it to load the demo")
                try:
                    created = store.create_app(DEMO_APP)
                    for definition in _demo_definitions():
                        store.definitions.put(created.app.id, definition)
                    generated = demo_events(days, datetime.now(UTC))
                    rows = [Row(i, msgspec.json.encode(e), e) for i, e in enumerate(generated)]
                    services = Services(catalog=store, store=events)
                    importer = Importer(services, created.app)
                    return created, await importer.run(iter(rows), text=False)
                finally:
                    await events.close()

            created, summary = asyncio.run(load())
            app = created.app
            click.echo(f"Created the demo app {app.name!r} with {summary.imported} events")
            click.echo(f"  id          {app.id}")
            click.echo(f"  app key     {app.app_key}")
            click.echo(f"  API key     {app.api_key}")
            click.echo(f"  API secret  {created.api_secret}    (shown only now)")
        if store.users.get(DEMO_USER) is not None:
            click.echo(
                f"The demo user {DEMO_USER} exists already; give it a new password with: "
                f"tally users password {DEMO_USER}"
            )
        else:
            password = secrets.token_urlsafe(12)
            store.users.create(DEMO_USER, password)
            click.echo(f"Created the dashboard user {DEMO_USER} with password {password}")
    finally:
        store.close()


@main.group("catalog")
def catalog_group() -> None:
    """Keep an app's settings, event definitions and aliases in a YAML file (catalog as code)."""


app_option = click.option(
    "--app", "app_ref", required=True, metavar="APP", help="The app's id or app key."
)


def _find_app(store, app_ref: str):  # type: ignore[no-untyped-def]
    found = store.get_app(app_ref) or store.app_by_key(app_ref)
    if found is None:
        raise click.ClickException(f"no app with id or app key {app_ref!r}")
    return found


def _count(items: list[Any], noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{len(items)} {noun if len(items) == 1 else plural}"


@catalog_group.command("export")
@app_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@data_option
@catalog_option
def catalog_export(app_ref: str, file: str, data_dir: str, catalog: str | None) -> None:
    """Write an app's catalog to FILE ('-': standard output)."""
    from tally.catalog.catalog_file import dump_yaml, export_catalog

    store = _catalog(_settings(data_dir, catalog))
    try:
        found = _find_app(store, app_ref)
        exported = export_catalog(store, found.id)
    finally:
        store.close()
    text = dump_yaml(exported)
    if file == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(file, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror or exc}") from exc
    click.echo(
        f"exported {_count(exported.events, 'event')} and {_count(exported.aliases, 'alias')} "
        f"of {found.name!r} to {file}"
    )


@catalog_group.command("apply")
@app_option
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--dry-run", is_flag=True, help="Only print the changes.")
@data_option
@catalog_option
def catalog_apply(
    app_ref: str, file: Any, dry_run: bool, data_dir: str, catalog: str | None
) -> None:
    """Make an app's catalog what FILE says ('-': standard input), and print the changes.

    Events and aliases the file leaves out are deleted, and settings it leaves out go back to
    their defaults. Running servers see the new catalog within a second.
    """
    from tally.catalog.catalog_file import apply_catalog, diff, export_catalog, load_yaml

    try:
        wanted = load_yaml(file.read())
    except ValueError as exc:  # UnicodeDecodeError included
        raise click.BadParameter(str(exc), param_hint="'FILE'") from exc
    store = _catalog(_settings(data_dir, catalog))
    try:
        found = _find_app(store, app_ref)
        if dry_run:
            changes = diff(export_catalog(store, found.id), wanted)
        else:
            changes = apply_catalog(store, found.id, wanted)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    if not changes:
        click.echo("no changes")
        return
    for line in changes:
        click.echo(line)
    count = _count(changes, "change")
    if dry_run:
        click.echo(f"dry run: {count} to {found.name!r} not applied")
    else:
        click.echo(f"applied {count} to {found.name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


@main.command("query")
@app_option
@click.argument("file", type=click.File("rb"))
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@data_option
@catalog_option
@store_option
@log_option
def query_command(
    app_ref: str,
    file: Any,
    output: str,
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
) -> None:
    """Run an analytics QUERY file (JSON, see docs/queries.md; - reads standard input)."""
    import asyncio

    from tally.query.dialects import dialect_of
    from tally.query.model import QueryError, decode_query
    from tally.query.output import rows_of
    from tally.query.run import Runner

    settings = _settings(data_dir, catalog, store=store, log=log_url)
    store = _catalog(settings)
    app = _find_app(store, app_ref)
    try:
        query = decode_query(file.read())
    except QueryError as exc:
        raise click.BadParameter(exc.message, param_hint="FILE") from None

    async def answer() -> dict[str, Any]:
        from tally.pipeline.app_rules import AppRules

        rules = AppRules(app, store.definitions.list(app.id), store.definitions.aliases(app.id))
        events = await _open_event_store(settings)
        try:
            return await Runner(events.run_sql, rules, dialect_of(events)).run(query)
        finally:
            await events.close()

    try:
        result = asyncio.run(answer())
    except QueryError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    if output == "json":
        _print_json(result)
        return
    header, rows = rows_of(result)
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        return
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        click.echo("  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)))


async def _open_event_store(settings: Settings):  # type: ignore[no-untyped-def]
    """With ``--store`` (scale-out): that store, appends through ``--log`` when given. Else the
    running server's store process if there is one, else the DuckDB file itself."""
    import duckdb

    from tally.sink import StoreUnavailable
    from tally.store.embedded import EmbeddedStore
    from tally.store.remote import RemoteStore

    if settings.external_store:
        from tally.serve import external_store, prepare

        try:
            settings.check()
            prepare(settings)
            return external_store(settings)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    socket_path = settings.run_dir / "store.sock"
    if socket_path.exists():
        remote = RemoteStore(socket_path, connect_timeout=2.0)
        try:
            await remote.check_writable()
            return remote
        except StoreUnavailable:
            await remote.close()  # a socket left by a server that is gone
    try:
        return EmbeddedStore(settings.data_dir, migrate=True)
    except duckdb.IOException as exc:
        raise click.ClickException(
            "the event store is in use by a running server with one worker: query it with "
            f"POST /api/v1/apps/APP_ID/query instead ({exc})"
        ) from None


# Data in and out (docs/export-import.md): export, import, a person's erasure, retention.


async def _transfer_store(settings: Settings, instead: str):  # type: ignore[no-untyped-def]
    """The event store for a transfer command (see ``_open_event_store``), or a hint of what to
    do instead when a one-worker server holds the file."""
    if settings.external_store:
        return await _open_event_store(settings)
    try:
        return await _open_event_store(settings)
    except click.ClickException:
        raise click.ClickException(
            f"the event store is in use by a running server with one worker: {instead}; or stop "
            "the server (with --workers 2 or more the command goes through its store process)"
        ) from None


def _lookup_app(settings: Settings, app_ref: str):  # type: ignore[no-untyped-def]
    store = _catalog(settings)
    try:
        return _find_app(store, app_ref)
    finally:
        store.close()


def _progress(length: int, label: str):  # type: ignore[no-untyped-def]
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


@main.command("export")
@app_option
@click.option("--from", "since", metavar="TIME", help="Events at or after (ISO 8601, date, epoch).")
@click.option("--to", "until", metavar="TIME", help="Events before this time.")
@click.option("--user", default=None, metavar="ID", help="Only this person's events (linked ids).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="Default: from the output file's name, else jsonl.",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The file to write ('-': standard output).",
)
@data_option
@catalog_option
@store_option
@log_option
def export_command(
    app_ref: str,
    since: str | None,
    until: str | None,
    user: str | None,
    fmt: str | None,
    output: str,
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
) -> None:
    """Export an app's events, oldest first, with their stored column names (CSV, JSON lines,
    Parquet). Works with or without a running server; the file is written as it goes."""
    import asyncio
    import os

    from tally.pipeline.timeparse import TimeError
    from tally.store.base import ExportQuery
    from tally.transfer.export import check_range, export_chunks, parse_bound
    from tally.transfer.formats import format_of

    fmt = fmt or (format_of(output) if output != "-" else None) or "jsonl"
    try:
        first = parse_bound(since) if since else None
        last = parse_bound(until) if until else None
        check_range(first, last)
    except (TimeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--from' / '--to'") from None
    settings = _settings(data_dir, catalog, store=store, log=log_url)
    app = _lookup_app(settings, app_ref)
    query = ExportQuery(app_id=app.id, since=first, until=last, user=user)
    partial = f"{output}.partial"

    async def run() -> int:
        events = await _transfer_store(
            settings, f"download GET /api/v1/apps/{app.id}/export instead"
        )
        exported = 0
        try:
            total = await events.count_events(query)
            out = sys.stdout.buffer if output == "-" else open(partial, "wb")  # noqa: SIM115
            try:
                with _progress(total, f"exporting {app.name}") as bar:
                    async for chunk, rows in export_chunks(events, query, fmt):
                        out.write(chunk)
                        exported += rows
                        bar.update(rows)
                out.flush()
            finally:
                if output != "-":
                    out.close()
        finally:
            await events.close()
        return exported

    try:
        exported = asyncio.run(run())
        if output != "-":
            os.replace(partial, output)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if output != "-" and os.path.exists(partial):
            os.unlink(partial)
    where = "standard output" if output == "-" else output
    click.echo(f"exported {exported} events of {app.name!r} as {fmt} to {where}", err=True)


@main.command("import")
@app_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="Default: from the file's name (.jsonl/.ndjson, .csv, .parquet).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@data_option
@catalog_option
@store_option
@log_option
def import_command(
    app_ref: str,
    file: str,
    fmt: str | None,
    as_json: bool,
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
) -> None:
    """Import events from FILE (as tally export writes them, or JSON lines of native events)
    through the app's rules. Rejected rows become failed events; rows with ids already stored
    count as duplicates, so importing a file twice stores it once."""
    import asyncio
    import os

    from tally.http.services import Services
    from tally.limits import Limits
    from tally.transfer.formats import format_of
    from tally.transfer.importer import Importer, open_rows

    fmt = fmt or format_of(file)
    if fmt is None:
        raise click.BadParameter(
            "cannot tell the format from the name; pass --format", param_hint="'FILE'"
        )
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = _settings(data_dir, catalog, store=store, log=log_url)
    catalog_store = _catalog(settings)
    app = _find_app(catalog_store, app_ref)

    async def run():  # type: ignore[no-untyped-def]
        events = await _transfer_store(settings, "stop it to import")
        services = Services(catalog=catalog_store, store=events, limits=limits)
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                size = pq.ParquetFile(file).metadata.num_rows
                with _progress(size, f"importing into {app.name}") as bar:
                    rows = open_rows(file, fmt, None, bar.update)
                    return await Importer(services, app).run(rows, text=False)
            with (
                open(file, "rb") as handle,
                _progress(os.path.getsize(file), f"importing into {app.name}") as bar,
            ):
                rows = open_rows(file, fmt, handle, bar.update)
                return await Importer(services, app).run(rows, text=fmt == "csv")
        finally:
            await events.close()

    try:
        summary = asyncio.run(run())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    finally:
        catalog_store.close()
    if as_json:
        _print_json(summary)
        return
    click.echo(
        f"imported {summary.imported} events into {app.name!r} from {summary.rows} rows: "
        f"{summary.duplicates} duplicates, {summary.discarded} discarded, "
        f"{summary.rejected} rejected"
    )
    for reason, count in summary.reasons.items():
        click.echo(f"  {reason}: {count}")
    for example in summary.examples:
        click.echo(f"  row {example.row}: {example.code}: {example.message}")
    if summary.rejected:
        click.echo(
            "rejected rows are kept as failed events: "
            f"GET /api/v1/apps/{app.id}/failed-events?reason=..."
        )


@main.command("forget")
@app_option
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the deletion record as JSON.")
@data_option
@catalog_option
@store_option
@log_option
def forget_command(
    app_ref: str,
    user: str,
    yes: bool,
    as_json: bool,
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
) -> None:
    """Erase a person (GDPR): delete every event and identity link of USER and every id linked
    to it, whatever the events' time, and record the deletion. Export it first with
    tally export --user USER."""
    import asyncio

    settings = _settings(data_dir, catalog, store=store, log=log_url)
    app = _lookup_app(settings, app_ref)
    if not yes:
        click.confirm(
            f"Delete every event of {user!r} (and the ids linked to it) in {app.name!r}?",
            abort=True,
        )

    async def run():  # type: ignore[no-untyped-def]
        events = await _transfer_store(
            settings, f"send DELETE /api/v1/apps/{app.id}/users/USER instead"
        )
        try:
            return await events.delete_person(app.id, user)
        finally:
            await events.close()

    record = asyncio.run(run())
    if as_json:
        _print_json(record)
        return
    click.echo(
        f"deleted {record.events_deleted} events and {record.links_deleted} identity links of "
        f"{user!r} (ids: {', '.join(record.ids)}); deletion record {record.id}"
    )


@main.command("retention")
@click.option(
    "--app",
    "app_ref",
    default=None,
    metavar="APP",
    help="Only this app (default: every app with retention_days set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the deletions as JSON.")
@data_option
@catalog_option
@store_option
@log_option
def retention_command(
    app_ref: str | None,
    as_json: bool,
    data_dir: str,
    catalog: str | None,
    store: str | None,
    log_url: str | None,
) -> None:
    """Delete events whose time is older than their app's retention_days, now."""
    import asyncio

    from tally.transfer.retention import apply_retention

    settings = _settings(data_dir, catalog, store=store, log=log_url)
    catalog_store = _catalog(settings)
    try:
        apps = [_find_app(catalog_store, app_ref)] if app_ref else catalog_store.list_apps()
    except click.ClickException:
        catalog_store.close()
        raise
    kept = [a for a in apps if a.settings.retention_days is None]
    if app_ref and kept:
        catalog_store.close()
        click.echo(f"{kept[0].name!r} keeps its events forever (retention_days is not set)")
        return

    async def run():  # type: ignore[no-untyped-def]
        events = await _transfer_store(settings, "stop it to apply retention")
        try:
            return await apply_retention(catalog_store, events, apps)
        finally:
            await events.close()

    try:
        done = asyncio.run(run())
    finally:
        catalog_store.close()
    if as_json:
        _print_json(done)
        return
    names = {a.id: a.name for a in apps}
    for deletion in done:
        assert deletion.cutoff is not None
        click.echo(
            f"{names[deletion.app_id]!r}: deleted {deletion.events_deleted} events before "
            f"{deletion.cutoff.isoformat()}"
        )
    if not done:
        click.echo("no app has retention_days set")
