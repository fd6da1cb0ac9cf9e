"""Settings from flags, `MIGRATOR_*` variables and secret files; durations; database URLs.

No database: these call `migrator.config` directly with an explicit environment mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from migrator.config import DatabaseUrl, Settings, default_jobs, parse_duration
from migrator.errors import ConfigError

PASSWORD = "hunter2-Sekret"


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("7", 7.0), ("1.5", 1.5), ("0", 0.0),
     ("1500ms", 1.5), ("0.5m", 30.0)],
)
def test_duration_units(text: str, seconds: float) -> None:
    """A duration is milliseconds, seconds or minutes by suffix, and bare numbers are seconds."""
    assert parse_duration(text, what="--lock-wait") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "-1s", "soon", "1.2.3s", "ms", "5 minutes", "1e3"])
def test_bad_duration_is_a_config_error_naming_option_and_value(text: str) -> None:
    """An unreadable duration is refused with the option, the value and the accepted forms."""
    with pytest.raises(ConfigError) as caught:
        parse_duration(text, what="--lock-timeout / MIGRATOR_LOCK_TIMEOUT")
    message = str(caught.value)
    assert message.startswith("--lock-timeout / MIGRATOR_LOCK_TIMEOUT: ")
    assert repr(text) in message
    assert "250ms, 5s, 2m or a number of seconds" in message
    assert caught.value.exit_code == 2


def test_negative_numeric_duration_is_refused() -> None:
    """A negative number of seconds given in code is refused rather than treated as zero."""
    with pytest.raises(ConfigError, match="out of range"):
        parse_duration(-1, what="pause")


def test_bad_duration_variable_is_refused_by_settings() -> None:
    """A malformed duration in a variable stops Settings with the flag and variable named."""
    with pytest.raises(ConfigError, match=r"--connect-timeout / MIGRATOR_CONNECT_TIMEOUT: '5 sec'"):
        Settings.from_sources({}, {"MIGRATOR_CONNECT_TIMEOUT": "5 sec"})


# -- precedence -----------------------------------------------------------------------------

# option, variable, flag value, variable value, (parsed flag, parsed variable, default)
OPTIONS: list[tuple[str, str, Any, str, tuple[Any, Any, Any]]] = [
    ("migrations_dir", "MIGRATOR_MIGRATIONS_DIR", "from_flag", "from_env",
     (Path("from_flag"), Path("from_env"), Path("plugin_migrations"))),
    ("embedded", "MIGRATOR_EMBEDDED", True, "0", (True, False, False)),
    ("connect_timeout", "MIGRATOR_CONNECT_TIMEOUT", "3s", "2m", (3.0, 120.0, 60.0)),
    ("log_format", "MIGRATOR_LOG_FORMAT", "console", "json", ("console", "json", "auto")),
    ("log_level", "MIGRATOR_LOG_LEVEL", "debug", "WARNING", ("debug", "warning", "info")),
    ("lock_wait", "MIGRATOR_LOCK_WAIT", "10s", "1m", (10.0, 60.0, 300.0)),
    ("lock_timeout", "MIGRATOR_LOCK_TIMEOUT", "250ms", "2", (0.25, 2.0, 5.0)),
    ("retries", "MIGRATOR_RETRIES", 2, "7", (2, 7, 5)),
    ("isolate_roles", "MIGRATOR_ISOLATE_ROLES", True, "0", (True, False, False)),
    ("jobs", "MIGRATOR_JOBS", 4, "3", (4, 3, default_jobs())),
]


@pytest.mark.parametrize(
    ("option", "variable", "flag", "env_value", "expected"), OPTIONS, ids=[o[0] for o in OPTIONS]
)
def test_flag_beats_variable_beats_default(
    option: str, variable: str, flag: Any, env_value: str, expected: tuple[Any, Any, Any]
) -> None:
    """For every option, a flag wins over its MIGRATOR_* variable, which wins over the default."""
    from_flag, from_env, default = expected
    environ = {variable: env_value}
    assert getattr(Settings.from_sources({option: flag}, environ), option) == from_flag
    assert getattr(Settings.from_sources({option: None}, environ), option) == from_env
    assert getattr(Settings.from_sources({}, {}), option) == default


def test_boolean_variables_read_one_and_zero() -> None:
    """MIGRATOR_EMBEDDED=1 and MIGRATOR_ISOLATE_ROLES=1 switch the options on without a flag."""
    settings = Settings.from_sources({}, {"MIGRATOR_EMBEDDED": "1", "MIGRATOR_ISOLATE_ROLES": "1"})
    assert settings.embedded is True
    assert settings.isolate_roles is True


def test_empty_variable_means_unset() -> None:
    """An empty MIGRATOR_* variable (as Kubernetes renders an unset value) falls back to the
    default instead of being parsed."""
    settings = Settings.from_sources({}, {"MIGRATOR_LOCK_WAIT": "", "MIGRATOR_JOBS": ""})
    assert settings.lock_wait == 300.0
    assert settings.jobs == default_jobs()


def test_jobs_default_to_the_usable_cpus_but_at_most_two() -> None:
    assert default_jobs() == min(len(os.sched_getaffinity(0)), 2)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [({"MIGRATOR_EMBEDDED": "maybe"}, "MIGRATOR_EMBEDDED='maybe' is not a boolean; use 1 or 0"),
     ({"MIGRATOR_JOBS": "0"},
      "--jobs / MIGRATOR_JOBS: 0 is out of range; give a number from 1 to 64"),
     ({"MIGRATOR_RETRIES": "-1"},
      "--retries / MIGRATOR_RETRIES: -1 is out of range; give a number from 0 to 100"),
     ({"MIGRATOR_RETRIES": "many"}, "--retries / MIGRATOR_RETRIES: 'many' is not a whole number"),
     ({"MIGRATOR_LOG_FORMAT": "xml"},
      "--log-format / MIGRATOR_LOG_FORMAT: 'xml' is not one of auto, json, console"),
     ({"MIGRATOR_LOG_LEVEL": "loud"}, "--log-level / MIGRATOR_LOG_LEVEL: 'loud' is not one of")],
)
def test_bad_option_values_are_config_errors(environ: dict[str, str], fragment: str) -> None:
    """A bad boolean, count or choice is refused with the option named and what is accepted."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_sources({}, environ)
    assert fragment in str(caught.value)


# -- the database URL -----------------------------------------------------------------------


def test_database_url_flag_beats_variable_beats_file(tmp_path: Path) -> None:
    """--database-url beats MIGRATOR_DATABASE_URL, which beats MIGRATOR_DATABASE_URL_FILE."""
    secret = tmp_path / "url"
    secret.write_text("postgresql://file@db/app")
    environ = {"MIGRATOR_DATABASE_URL": "postgresql://env@db/app",
               "MIGRATOR_DATABASE_URL_FILE": str(secret)}

    def url(flags: dict[str, Any], env: dict[str, str]) -> str:
        settings = Settings.from_sources(flags, env)
        assert settings.database_url is not None
        return settings.database_url.params["user"]

    assert url({"database_url": "postgresql://flag@db/app"}, environ) == "flag"
    assert url({}, environ) == "env"
    assert url({}, {"MIGRATOR_DATABASE_URL_FILE": str(secret)}) == "file"
    assert Settings.from_sources({}, {}).database_url is None


def test_database_url_file_whitespace_is_stripped(tmp_path: Path) -> None:
    """A mounted secret's surrounding whitespace and trailing newline are not part of the URL."""
    secret = tmp_path / "database-url"
    secret.write_text(f"  \n postgresql://app:{PASSWORD}@db:5432/platform \n\n")
    settings = Settings.from_sources({}, {"MIGRATOR_DATABASE_URL_FILE": str(secret)})
    assert settings.database_url is not None
    assert dict(settings.database_url.params) == {
        "user": "app", "password": PASSWORD, "host": "db", "port": "5432", "dbname": "platform"}


def test_missing_database_url_file_names_the_path(tmp_path: Path) -> None:
    """A secret file that is not there is a ConfigError naming the path and the likely cause."""
    missing = tmp_path / "secrets" / "database-url"
    with pytest.raises(ConfigError) as caught:
        Settings.from_sources({}, {"MIGRATOR_DATABASE_URL_FILE": str(missing)})
    message = str(caught.value)
    assert f"cannot read {missing}" in message
    assert "check the secret is mounted at that path" in message


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_database_url_file_names_the_path(tmp_path: Path, content: str) -> None:
    """An empty (or whitespace-only) secret file is a ConfigError naming the path."""
    secret = tmp_path / "database-url"
    secret.write_text(content)
    with pytest.raises(ConfigError) as caught:
        Settings.from_sources({}, {"MIGRATOR_DATABASE_URL_FILE": str(secret)})
    assert str(caught.value) == (
        f"MIGRATOR_DATABASE_URL_FILE: {secret} is empty; put the database URL in it")


@pytest.mark.parametrize(
    "scheme", ["postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg"]
)
def test_accepted_schemes_normalise_to_postgresql(scheme: str) -> None:
    """All four documented schemes are accepted and handed to psycopg as libpq parameters."""
    url = DatabaseUrl.parse(f"{scheme}://app:{PASSWORD}@db:5432/platform?connect_timeout=3",
                            source="--database-url")
    assert dict(url.params) == {"user": "app", "password": PASSWORD, "host": "db",
                                "port": "5432", "dbname": "platform", "connect_timeout": "3"}
    assert url.password == PASSWORD


def test_asyncpg_ssl_parameter_becomes_sslmode() -> None:
    """An asyncpg-style `ssl=require` is translated to psycopg's `sslmode=require`."""
    url = DatabaseUrl.parse("postgresql+asyncpg://app@db/platform?ssl=require", source="x")
    assert url.params["sslmode"] == "require" and "ssl" not in url.params


@pytest.mark.parametrize(
    "raw",
    [f"mysql://app:{PASSWORD}@db/platform", "sqlite:///platform.db",
     f"http://app:{PASSWORD}@db/platform", f"postgresql+pg8000://app:{PASSWORD}@db/platform",
     f"postgresql:app:{PASSWORD}@db/platform", "db.example.com:5432/platform"],
)
def test_other_schemes_are_refused_without_the_password(raw: str) -> None:
    """Any other scheme is a ConfigError that lists the accepted ones and never echoes the URL's
    password."""
    with pytest.raises(ConfigError) as caught:
        DatabaseUrl.parse(raw, source="--database-url")
    message = str(caught.value)
    assert message.startswith("--database-url: unsupported database URL scheme ")
    assert ("use one of postgres://, postgresql://, postgresql+psycopg://, "
            "postgresql+asyncpg://") in message
    assert PASSWORD not in message


def test_malformed_url_is_a_config_error() -> None:
    """A URL that cannot even be split (an unclosed IPv6 bracket) is a ConfigError, not a crash."""
    with pytest.raises(ConfigError) as caught:
        DatabaseUrl.parse(f"postgresql://app:{PASSWORD}@[::1/platform", source="--database-url")
    assert "--database-url" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [(f"postgresql://app:{PASSWORD}@db:5432/platform", PASSWORD),
     ("postgresql://app:p%40ss%3Aw%2Fd%25x@db/platform", "p@ss:w/d%x"),
     ("postgresql+asyncpg://we%20ird%40user:s%23cr%3Ft@db/platform", "s#cr?t")],
)
def test_text_forms_of_a_url_never_show_the_password(raw: str, decoded: str) -> None:
    """str(), repr(), f-strings, `safe` and with_database() hide the password, whether it was
    written plainly or percent-encoded."""
    url = DatabaseUrl.parse(raw, source="--database-url")
    encoded = raw.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    assert url.password == decoded
    other = url.with_database("elsewhere")
    settings = Settings.from_sources({"database_url": raw}, {})
    for text in (str(url), repr(url), f"{url}", url.safe, str(other), repr(other), other.safe,
                 repr(settings)):
        assert decoded not in text
        assert encoded not in text
    assert url.safe.endswith(":***@db/platform") or url.safe.endswith(":***@db:5432/platform")
    assert decoded in settings.secrets and encoded in settings.secrets


def test_password_in_query_string_is_hidden() -> None:
    """A password given as `?password=...` (a libpq URL parameter) is hidden like one in the
    user info: not in str(), `safe`, and listed among the secrets the logs redact."""
    url = DatabaseUrl.parse(f"postgresql://app@db/platform?password={PASSWORD}&sslmode=require",
                            source="--database-url")
    assert PASSWORD not in str(url)
    assert PASSWORD not in url.safe
    assert PASSWORD not in repr(url)
    settings = Settings.from_sources({"database_url": url.conninfo}, {})
    assert PASSWORD in settings.secrets


def test_url_without_password_is_shown_whole() -> None:
    """A URL with no password (trust or peer auth) is shown as given, nothing to hide."""
    url = DatabaseUrl.parse("postgres://app@db:5432/platform", source="x")
    assert url.safe == "postgresql://app@db:5432/platform"
    assert Settings.from_sources({"database_url": "postgres://app@db/p"}, {}).secrets == ()
