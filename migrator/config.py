"""Settings from command-line flags, `MIGRATOR_*` variables and mounted secret files.

A flag wins over its variable; a variable wins over the default. The database URL is
held in `DatabaseUrl`, whose text form never shows the password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from migrator.errors import ConfigError

ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str | float | int, *, what: str) -> float:
    """Seconds from `250ms`, `5s`, `2m`, `1h` or a bare number of seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ConfigError(f"{what} must not be negative, got {text}")
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(
            f"{what}: {text!r} is not a duration; write it like 250ms, 5s, 2m or a number "
            "of seconds"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A PostgreSQL URL normalised for psycopg; `str()` and `repr()` hide the password."""

    conninfo: str = field(repr=False)
    passwords: tuple[str, ...] = field(repr=False, default=())  # userinfo and ?password=

    @property
    def password(self) -> str | None:
        return self.passwords[0] if self.passwords else None

    @classmethod
    def parse(cls, raw: str, *, source: str) -> DatabaseUrl:
        text = raw.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - validates the port; urlsplit alone does not
        except ValueError as exc:
            # The message names what is wrong, never the URL: it may hold a password.
            raise ConfigError(f"{source}: the database URL cannot be parsed ({exc}); write it "
                              "like postgresql://user:password@host:5432/database") from None
        if parts.scheme not in ACCEPTED_SCHEMES or not text.startswith(parts.scheme + "://"):
            shown = parts.scheme or text.split(":", 1)[0][:30]
            raise ConfigError(
                f"{source}: unsupported database URL scheme {shown!r}; use one of "
                + ", ".join(s + "://" for s in ACCEPTED_SCHEMES)
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        # asyncpg spells sslmode as `ssl`; psycopg only knows `sslmode`.
        query = [("sslmode" if key == "ssl" else key, value) for key, value in query]
        normalised = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(query), parts.fragment)
        )
        passwords = [unquote(parts.password)] if parts.password else []
        passwords += [value for key, value in query if key == "password" and value]
        return cls(conninfo=normalised, passwords=tuple(passwords))

    @property
    def safe(self) -> str:
        """The URL with its password replaced by `***`."""
        parts = urlsplit(self.conninfo)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo = quote(unquote(parts.username or ""), safe="") + ":***"
            netloc = f"{userinfo}@{netloc.rsplit('@', 1)[1]}"
        query = "&".join(
            f"{key}=***" if key == "password" else f"{key}={quote(value, safe='/')}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True))
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    def with_database(self, name: str) -> DatabaseUrl:
        parts = urlsplit(self.conninfo)
        return DatabaseUrl(
            conninfo=urlunsplit(parts._replace(path="/" + quote(name, safe=""))),
            passwords=self.passwords,
        )

    def __str__(self) -> str:
        return self.safe


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: DatabaseUrl | None = None
    migrations_dir: Path = Path("plugin_migrations")
    embedded: bool = False
    connect_timeout: float = 60.0
    log_format: str = "auto"
    log_level: str = "info"
    lock_wait: float = 300.0
    lock_timeout: float = 5.0
    retries: int = 5
    isolate_roles: bool = False
    jobs: int = 1

    @classmethod
    def from_sources(
        cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: each flag that is not None wins over its `MIGRATOR_*` variable."""
        env = os.environ if environ is None else environ

        def pick(name: str, variable: str) -> Any:
            value = flags.get(name)
            if value is not None:
                return value
            return env.get(variable) or None

        return cls(
            database_url=_database_url(flags.get("database_url"), env),
            migrations_dir=Path(
                pick("migrations_dir", "MIGRATOR_MIGRATIONS_DIR") or "plugin_migrations"),
            embedded=_flag(pick("embedded", "MIGRATOR_EMBEDDED"), "MIGRATOR_EMBEDDED"),
            connect_timeout=_duration(pick("connect_timeout", "MIGRATOR_CONNECT_TIMEOUT"), 60.0,
                                      "--connect-timeout / MIGRATOR_CONNECT_TIMEOUT"),
            log_format=_choice(pick("log_format", "MIGRATOR_LOG_FORMAT") or "auto", LOG_FORMATS,
                               "--log-format / MIGRATOR_LOG_FORMAT"),
            log_level=_choice((pick("log_level", "MIGRATOR_LOG_LEVEL") or "info").lower(),
                              LOG_LEVELS, "--log-level / MIGRATOR_LOG_LEVEL"),
            lock_wait=_duration(pick("lock_wait", "MIGRATOR_LOCK_WAIT"), 300.0,
                                "--lock-wait / MIGRATOR_LOCK_WAIT"),
            lock_timeout=_duration(pick("lock_timeout", "MIGRATOR_LOCK_TIMEOUT"), 5.0,
                                   "--lock-timeout / MIGRATOR_LOCK_TIMEOUT"),
            retries=_count(pick("retries", "MIGRATOR_RETRIES"), 5, "--retries / MIGRATOR_RETRIES",
                           minimum=0),
            isolate_roles=_flag(pick("isolate_roles", "MIGRATOR_ISOLATE_ROLES"),
                                "MIGRATOR_ISOLATE_ROLES"),
            jobs=_count(pick("jobs", "MIGRATOR_JOBS"), 1, "--jobs / MIGRATOR_JOBS", minimum=1),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output."""
        if self.database_url:
            return self.database_url.passwords
        return ()


def _database_url(flag: str | None, env: Mapping[str, str]) -> DatabaseUrl | None:
    if flag:
        return DatabaseUrl.parse(flag, source="--database-url")
    if env.get("MIGRATOR_DATABASE_URL"):
        return DatabaseUrl.parse(env["MIGRATOR_DATABASE_URL"], source="MIGRATOR_DATABASE_URL")
    secret_file = env.get("MIGRATOR_DATABASE_URL_FILE")
    if secret_file:
        try:
            text = Path(secret_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"MIGRATOR_DATABASE_URL_FILE: cannot read {secret_file} ({exc.strerror}); "
                "check the secret is mounted at that path"
            ) from None
        if not text.strip():
            raise ConfigError(
                f"MIGRATOR_DATABASE_URL_FILE: {secret_file} is empty; put the database URL in it"
            )
        return DatabaseUrl.parse(text, source=f"MIGRATOR_DATABASE_URL_FILE ({secret_file})")
    return None


def _flag(value: Any, variable: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{variable}={value!r} is not a boolean; use 1 or 0")


def _duration(value: Any, default: float, what: str) -> float:
    return default if value is None else parse_duration(value, what=what)


def _count(value: Any, default: int, what: str, *, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {value!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"{what}: {number} is below the minimum of {minimum}")
    return number


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(choices)}")
    return value
