"""Database URLs: every accepted form is parsed by libpq's own rules into the keywords psycopg
connects with, the password exactly as written; no text form of the value shows a secret, and
every form of it is registered for redaction. No database needed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from psycopg.conninfo import conninfo_to_dict

from migrator import logs
from migrator.config import DatabaseUrl, Settings
from migrator.errors import ConfigError

PASSWORD = "Sekr3t/pa ss@%word"  # distinctive, and full of characters a URL treats specially
BASE = {"user": "app", "host": "db.example", "port": "6432", "dbname": "platform"}


def parse(text: str) -> DatabaseUrl:
    return DatabaseUrl.parse(text, source="--database-url")


@pytest.mark.parametrize("text", [
    f"postgresql://app:{quote(PASSWORD, safe='')}@db.example:6432/platform",
    f"postgres://app:{quote(PASSWORD, safe='')}@db.example:6432/platform",
    f"postgresql+psycopg://app:{quote(PASSWORD, safe='')}@db.example:6432/platform",
    f"postgresql+asyncpg://app:{quote(PASSWORD, safe='')}@db.example:6432/platform",
    f"postgresql://app:{PASSWORD}@db.example:6432/platform",  # '/', ' ', '@', '%' unencoded
    f"postgresql://app@db.example:6432/platform?password={quote(PASSWORD, safe='')}",
    f"host=db.example port=6432 dbname=platform user=app password='{PASSWORD}'",
    f"  postgresql://app:{quote(PASSWORD, safe='')}@db.example:6432/platform\n",
], ids=["postgresql", "postgres", "+psycopg", "+asyncpg", "raw userinfo", "?password=",
        "keyword/value", "whitespace"])
def test_every_form_reaches_the_driver_with_the_exact_password(text: str) -> None:
    url = parse(text)
    assert dict(url.params) == {**BASE, "password": PASSWORD}
    assert url.password == PASSWORD
    # What psycopg is handed parses back to the same keywords: nothing re-encoded.
    assert conninfo_to_dict(url.conninfo) == {**BASE, "password": PASSWORD}
    assert url.target == "app@db.example:6432/platform"
    for shown in (str(url), repr(url), url.safe, url.target):
        assert "Sekr3t" not in shown and "pa ss" not in shown, shown
    assert url.safe == "postgresql://app:***@db.example:6432/platform"


def test_percent_20_is_a_space_and_plus_is_a_plus() -> None:
    spaced = parse("postgresql://app@db/x?password=two%20words")
    assert spaced.params["password"] == "two words"
    assert conninfo_to_dict(spaced.conninfo)["password"] == "two words"
    assert parse("postgresql://app:two%20words@db/x").password == "two words"
    assert parse("postgresql://app:a+b@db/x").password == "a+b"
    assert parse("postgresql://app@db/x?password=a+b").password == "a+b"


def test_the_sqlalchemy_url_carries_the_password_and_hides_it_when_shown() -> None:
    url = parse(f"postgresql+asyncpg://app:{quote(PASSWORD, safe='')}@db.example:6432/platform"
                "?sslmode=require")
    engine_url = url.sqlalchemy_url()
    assert engine_url.drivername == "postgresql+psycopg"
    assert engine_url.password == PASSWORD
    assert (engine_url.username, engine_url.host, engine_url.port, engine_url.database) == (
        "app", "db.example", 6432, "platform")
    assert engine_url.query == {"sslmode": "require"}
    assert "Sekr3t" not in str(engine_url) and "Sekr3t" not in repr(engine_url)


def test_every_secret_keyword_is_hidden_and_registered() -> None:
    url = parse("host=db user=app password=first-secret sslpassword=second-secret "
                "options='-c statement_timeout=5s'")
    assert "first-secret" not in url.safe and "second-secret" not in url.safe
    assert "sslpassword=***" in url.safe and "options=-c%20statement_timeout%3D5s" in url.safe
    assert {"first-secret", "second-secret"} <= set(url.passwords)


def test_redact_removes_every_form_of_the_password() -> None:
    url = parse(f"postgresql://app:{quote(PASSWORD, safe='')}@db/x")
    forms = {PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD)}
    assert forms <= set(url.passwords)
    logs.configure(log_format="json", secrets=url.passwords)
    try:
        for form in forms:
            assert logs.redact(f"failed: postgresql://app:{form}@db/x") == \
                "failed: postgresql://app:***@db/x"
    finally:
        logs.configure(log_format="json")


def test_pgpassword_is_a_secret_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    settings = Settings.from_sources({"database_url": "postgresql://app@db/x"}, environ={})
    assert PASSWORD in settings.secrets and quote_plus(PASSWORD) in settings.secrets


def test_asyncpg_ssl_is_libpq_sslmode() -> None:
    assert parse("postgresql+asyncpg://app@db/x?ssl=true").params["sslmode"] == "require"
    assert parse("postgresql+asyncpg://app@db/x?ssl=verify-full").params["sslmode"] == \
        "verify-full"


@pytest.mark.parametrize(("text", "said"), [
    ("postgresql://app@db/x?bogus=1", "unknown parameter 'bogus'"),
    ("postgresql://app@db/x?zeta=1&sslmode=require&alpha=2",
     "unknown parameters 'alpha', 'zeta'"),
    ("host=db bogus=1", "unknown parameter 'bogus'"),
    ("mysql://app@db/x", "unsupported database URL scheme 'mysql'"),
    ("   ", "empty"),
    ("not a url", "unsupported database URL scheme"),
])
def test_unusable_urls_are_config_errors_naming_the_problem(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(text)
    assert said in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_a_bad_url_never_echoes_its_password() -> None:
    with pytest.raises(ConfigError) as error:
        parse(f"host=db password='{PASSWORD}' port='unterminated")
    assert "Sekr3t" not in str(error.value)


def test_url_file_stripped_and_non_utf8_refused(tmp_path: Path) -> None:
    file = tmp_path / "url"
    file.write_text(f"\n  postgresql://app:{quote(PASSWORD, safe='')}@db/x  \n")
    settings = Settings.from_sources({}, environ={"MIGRATOR_DATABASE_URL_FILE": str(file)})
    assert settings.database_url is not None and settings.database_url.password == PASSWORD
    file.write_bytes(b"postgresql://app:\xff\xfe@db/x")
    with pytest.raises(ConfigError) as error:
        Settings.from_sources({}, environ={"MIGRATOR_DATABASE_URL_FILE": str(file)})
    assert str(file) in str(error.value) and "not UTF-8" in str(error.value)
