"""Settings from command-line flags, `MIGRATOR_*` variables and mounted secret files.

A flag wins over its variable; a variable wins over the default. The database URL is
held in `DatabaseUrl`, whose text form never shows the password.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from migrator.errors import ConfigError

ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DAY = 86_400.0
# libpq keywords a URL or a keyword/value string may not carry: migrator sets them itself.
_OWN_KEYWORDS = ("application_name",)
# libpq keywords whose values are secrets: never shown, redacted in every form.
SECRET_KEYWORDS = ("password", "sslpassword", "oauth_client_secret", "scram_client_key",
                   "scram_server_key")
# asyncpg's `ssl=` values as libpq's `sslmode`.
_ASYNCPG_SSL = {"true": "require", "1": "require", "false": "disable", "0": "disable"}
# Shorter secrets are not redacted by text replacement (it would garble every line).
MIN_REDACTED_LENGTH = 3


def parse_duration(text: str | float | int, *, what: str, minimum: float = 0.0,
                   maximum: float = DAY) -> float:
    """Seconds from `250ms`, `5s`, `2m`, `1h` or a bare number of seconds, within
    [minimum, maximum]; anything else is a one-line ConfigError naming `what`."""
    if isinstance(text, bool):
        raise ConfigError(f"{what}: {text!r} is not a duration")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ConfigError(
                f"{what}: {text[:40]!r} is not a duration; write it like 250ms, 5s, 2m or a "
                "number of seconds")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
        raise ConfigError(f"{what}: {text!r} is out of range; give a duration from "
                          f"{_shown(minimum)} to {_shown(maximum)}")
    return seconds


def _shown(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """Where the database is, as libpq keywords (parsed by psycopg's own `conninfo_to_dict`,
    so a password reaches the driver exactly as written: `%20` is a space, `+` a plus).

    Accepted: URLs (`postgres://`, `postgresql://`, `postgresql+psycopg://`,
    `postgresql+asyncpg://`; the password in the userinfo, percent-encoded or not, or in
    `?password=`) and libpq keyword/value strings (`host=db dbname=platform password=...`).
    `str()`, `repr()`, `.safe` and `.target` never show the password; `passwords` holds every
    form of it that could appear in a message, for redaction."""

    params: Mapping[str, str] = field(repr=False)
    passwords: tuple[str, ...] = field(repr=False, default=())

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def conninfo(self) -> str:
        """The libpq keyword/value string psycopg connects with (password included)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **self.params)

    @classmethod
    def parse(cls, raw: str, *, source: str) -> DatabaseUrl:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        text = raw.strip()
        if not text:
            raise ConfigError(f"{source}: the database URL is empty; write it like "
                              "postgresql://user@host:5432/database")
        try:
            if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
                params = conninfo_to_dict(_libpq_url(text, source))
            elif "=" in text:
                params = conninfo_to_dict(text)
            else:  # neither a URL nor keyword=value pairs: most likely a mistyped scheme
                raise ConfigError(
                    f"{source}: unsupported database URL scheme "
                    f"{text.split(':', 1)[0][:30]!r}; use one of "
                    + ", ".join(s + "://" for s in ACCEPTED_SCHEMES)
                    + ", or libpq's 'host=... dbname=...'")
        except ProgrammingError as exc:
            # libpq's message names the offending option or character, never the password.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ConfigError(
                f"{source}: the database URL cannot be used ({_without(reason, text)}); write "
                "it like postgresql://user:password@host:5432/database or "
                "'host=... dbname=... user=...'") from None
        clean = {key: str(value) for key, value in params.items() if value is not None}
        for key in _OWN_KEYWORDS:
            clean.pop(key, None)
        forms = {form for key in SECRET_KEYWORDS for form in _secret_forms(clean.get(key))}
        return cls(params=clean, passwords=tuple(sorted(forms, key=len, reverse=True)))

    @property
    def user(self) -> str:
        return self.params.get("user") or os.environ.get("PGUSER") or getpass_user()

    @property
    def target(self) -> str:
        """user@host:port/database, for messages (no password)."""
        host = self.params.get("host") or self.params.get("hostaddr") or "localhost"
        port = self.params.get("port") or "5432"
        return f"{self.user}@{host}:{port}/{self.params.get('dbname') or self.user}"

    @property
    def safe(self) -> str:
        """A URL with its password replaced by `***`."""
        host = self.params.get("host") or self.params.get("hostaddr") or ""
        if "," not in host and ":" in host:
            host = f"[{host}]"  # an IPv6 address
        port = f":{self.params['port']}" if self.params.get("port") else ""
        user = quote(self.params.get("user", ""), safe="")
        userinfo = (user + (":***" if self.password else "") + "@") if user or self.password \
            else ""
        rest = "&".join(f"{key}=***" if key in SECRET_KEYWORDS else
                        f"{key}={quote(value, safe='/')}" for key, value in
                        sorted(self.params.items())
                        if key not in ("host", "hostaddr", "port", "user", "password", "dbname"))
        dbname = quote(self.params.get("dbname", ""), safe="")
        return f"postgresql://{userinfo}{quote(host, safe='/,[]:')}{port}/{dbname}" + (
            f"?{rest}" if rest else "")

    def with_database(self, name: str) -> DatabaseUrl:
        return DatabaseUrl(params={**self.params, "dbname": name}, passwords=self.passwords)

    def sqlalchemy_url(self) -> Any:
        """SQLAlchemy's URL for this database, driver psycopg, password included."""
        from sqlalchemy.engine import URL

        query = {key: value for key, value in self.params.items()
                 if key not in ("host", "port", "user", "password", "dbname")}
        host = self.params.get("host")
        port = self.params.get("port")
        return URL.create("postgresql+psycopg", username=self.params.get("user"),
                          password=self.params.get("password"), host=host,
                          port=int(port) if port and port.isdigit() else None,
                          database=self.params.get("dbname"), query=query)

    def __str__(self) -> str:
        return self.safe


def getpass_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        return "postgres"


def _libpq_url(text: str, source: str) -> str:
    """A URL of any accepted scheme as a `postgresql://` URL libpq parses exactly: the userinfo
    split at its last `@` (an unencoded `/`, `@` or `:` in the password is kept), user and
    password percent-encoded once, asyncpg's `ssl` spelled `sslmode`."""
    scheme, rest = text.split("://", 1)
    if scheme.lower() not in ACCEPTED_SCHEMES:
        raise ConfigError(f"{source}: unsupported database URL scheme {scheme[:30]!r}; use one "
                          "of " + ", ".join(s + "://" for s in ACCEPTED_SCHEMES))
    before_query, question, query = rest.partition("?")
    userinfo, at, location = before_query.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        userinfo = quote(unquote(user), safe="") + (
            ":" + quote(unquote(password), safe="") if colon else "") + "@"
    if query:
        pairs = [part.partition("=") for part in query.split("&") if part]
        pairs = [("sslmode", eq, _ASYNCPG_SSL.get(value.lower(), value)) if key == "ssl"
                 else (key, eq, value) for key, eq, value in pairs]
        unknown = sorted({unquote(key) for key, _, _ in pairs} - libpq_keywords())
        if unknown:
            names = ", ".join(repr(key[:40]) for key in unknown)
            raise ConfigError(
                f"{source}: the database URL cannot be used (unknown "
                f"parameter{'s' if len(unknown) > 1 else ''} {names}; libpq knows no such "
                "option)")
        query = "&".join(key + eq + value for key, eq, value in pairs)
    return "postgresql://" + userinfo + location + (question + query if query else "")


def libpq_keywords() -> frozenset[str]:
    """The connection options this libpq knows."""
    from psycopg import pq

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def _secret_forms(password: str | None) -> tuple[str, ...]:
    """Every way `password` could be written in a message: as is, and percent- or
    plus-encoded as in a URL."""
    if not password or len(password) < MIN_REDACTED_LENGTH:
        return ()
    forms = {password, quote(password, safe=""), quote(password), quote_plus(password)}
    return tuple(sorted(forms, key=len, reverse=True))


def _without(reason: str, text: str) -> str:
    """libpq's complaint without anything it quoted from the input, which may hold a password
    — except the name of an unknown option or URL parameter, which is the point of it."""
    unknown = re.match(r'^(invalid connection option|invalid URI query parameter:) '
                       r'"([a-z_]{1,40})"$', reason)
    if unknown:
        return f"unknown parameter {unknown.group(2)!r}; libpq knows no such option"
    cleaned = re.sub(r'"[^"]*"', '"…"', reason.replace(text, "…"))
    return cleaned[:200]


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: DatabaseUrl | None = None
    migrations_dir: Path = Path("plugin_migrations")
    embedded: bool = False
    connect_timeout: float = 60.0
    log_format: str = "auto"
    log_level: str = "info"
    verbose: bool = False  # console output: also a line for each plugin already at head
    lock_wait: float = 300.0
    lock_timeout: float = 5.0
    retries: int = 5
    isolate_roles: bool = False
    jobs: int = 1  # from_sources: default_jobs()

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
            verbose=_flag(pick("verbose", "MIGRATOR_VERBOSE"), "MIGRATOR_VERBOSE"),
            lock_wait=_duration(pick("lock_wait", "MIGRATOR_LOCK_WAIT"), 300.0,
                                "--lock-wait / MIGRATOR_LOCK_WAIT"),
            # 0 would mean "no timeout" to PostgreSQL: the opposite of what was asked.
            lock_timeout=_duration(pick("lock_timeout", "MIGRATOR_LOCK_TIMEOUT"), 5.0,
                                   "--lock-timeout / MIGRATOR_LOCK_TIMEOUT", minimum=0.001,
                                   maximum=3600.0),
            retries=_count(pick("retries", "MIGRATOR_RETRIES"), 5, "--retries / MIGRATOR_RETRIES",
                           minimum=0, maximum=100),
            isolate_roles=_flag(pick("isolate_roles", "MIGRATOR_ISOLATE_ROLES"),
                                "MIGRATOR_ISOLATE_ROLES"),
            jobs=_count(pick("jobs", "MIGRATOR_JOBS"), default_jobs(),
                        "--jobs / MIGRATOR_JOBS", minimum=1, maximum=64),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output: the URL's password in every form,
        and libpq's PGPASSWORD."""
        found = self.database_url.passwords if self.database_url else ()
        return found + _secret_forms(os.environ.get("PGPASSWORD"))


def default_jobs() -> int:
    """min(CPUs this process may use, 2): two workers already overlap one's client work with
    the other's server work; more mostly add lock and WAL contention on the server."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable, 2))


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
        except UnicodeDecodeError:
            raise ConfigError(
                f"MIGRATOR_DATABASE_URL_FILE: {secret_file} is not UTF-8 text; write the "
                "database URL in it as plain text") from None
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


def _duration(value: Any, default: float, what: str, *, minimum: float = 0.0,
              maximum: float = DAY) -> float:
    return default if value is None else parse_duration(value, what=what, minimum=minimum,
                                                        maximum=maximum)


def _count(value: Any, default: int, what: str, *, minimum: int, maximum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what}: {str(value)[:40]!r} is not a whole number") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{what}: {number} is out of range; give a number from {minimum} "
                          f"to {maximum}")
    return number


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(choices)}")
    return value
