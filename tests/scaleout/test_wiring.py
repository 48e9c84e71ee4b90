"""``tally serve`` options for the scale-out setup: what is refused, and how settings combine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tally.cli import main
from tally.config import Settings
from tally.log.url import NatsUrl


def test_log_without_store_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--data", str(tmp_path), "--log", "nats://127.0.0.1:4222"], env={}
    )
    assert result.exit_code != 0
    assert "--log needs --store" in result.output


def test_log_from_the_environment_is_refused_without_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--data", str(tmp_path)], env={"TALLY_LOG": "nats://127.0.0.1:4222"}
    )
    assert result.exit_code != 0
    assert "--log needs --store" in result.output


@pytest.mark.parametrize(
    ("store", "log", "message"),
    [
        ("postgresql://x/y", None, "--store takes a clickhouse:// URL"),
        ("clickhouse://127.0.0.1:9000/t", "redis://x", "--log takes a nats:// URL"),
    ],
)
def test_wrong_schemes_are_refused(store: str, log: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(store=store, log=log).check()


def test_no_options_is_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TALLY_STORE", "TALLY_LOG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    settings.check()
    assert settings.store is None and settings.log is None and not settings.external_store


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_STORE", "clickhouse://127.0.0.1:9000/tally")
    monkeypatch.setenv("TALLY_LOG", "nats://127.0.0.1:4222")
    settings = Settings()
    settings.check()
    assert settings.external_store
    assert settings.log == "nats://127.0.0.1:4222"


def test_log_url() -> None:
    url = NatsUrl.parse("nats://a:4222,b:4223?stream=EVENTS&duplicate_window=600")
    assert url.servers == ("nats://a:4222", "nats://b:4223")
    assert url.stream == "EVENTS" and url.durable == "EVENTS_loader"
    assert url.duplicate_window == 600
    assert url.subject("event") == "EVENTS.event"
    with pytest.raises(ValueError, match="unknown log URL option"):
        NatsUrl.parse("nats://a:4222?streem=X")
    with pytest.raises(ValueError, match="must not contain"):
        NatsUrl.parse("nats://a:4222?stream=a.b")
