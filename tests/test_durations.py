"""Durations and counts: the accepted spellings, and bounds that refuse what PostgreSQL would
misread (a lock_timeout of 0 is "no timeout") or what no operator means, as one-line
ConfigErrors. No database needed."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.config import Settings, parse_duration
from migrator.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("7", 7.0), ("1.5", 1.5),
    (" 3 s ", 3.0), (10, 10.0), (0.5, 0.5), ("24h", 86_400.0),
])
def test_accepted_spellings(text: str | float, seconds: float) -> None:
    assert parse_duration(text, what="--lock-wait") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1e400", "nan", "inf", "-1s", "5 minutes", "", "0x10",
                                  float("inf"), float("nan"), True])
def test_not_durations(text: Any) -> None:
    with pytest.raises(ConfigError) as error:
        parse_duration(text, what="--lock-wait")
    assert str(error.value).startswith("--lock-wait: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["99999999999h", "25h", "86401", "9" * 400])
def test_more_than_a_day_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        parse_duration(text, what="--connect-timeout")


@pytest.mark.parametrize(("flags", "said"), [
    ({"lock_timeout": "0"}, "--lock-timeout"),
    ({"lock_timeout": "0.0001"}, "from 1ms to 1h"),
    ({"lock_timeout": "0.5ms"}, "from 1ms to 1h"),
    ({"lock_timeout": "61m"}, "from 1ms to 1h"),
    ({"lock_wait": "25h"}, "--lock-wait"),
    ({"connect_timeout": "1e400"}, "--connect-timeout"),
    ({"retries": "101"}, "from 0 to 100"),
    ({"retries": "-1"}, "from 0 to 100"),
    ({"retries": "1.5"}, "not a whole number"),
    ({"jobs": "0"}, "from 1 to 64"),
    ({"jobs": "65"}, "from 1 to 64"),
    ({"retries": "9" * 30}, "out of range"),
])
def test_settings_bounds(flags: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_sources(flags, environ={})
    assert said in str(error.value), str(error.value)


def test_settings_edges_accepted() -> None:
    low = Settings.from_sources({"lock_timeout": "1ms", "retries": "0", "jobs": "1",
                                 "connect_timeout": "0"}, environ={})
    assert (low.lock_timeout, low.retries, low.jobs, low.connect_timeout) == (0.001, 0, 1, 0.0)
    high = Settings.from_sources({"lock_timeout": "1h", "retries": "100", "jobs": "64",
                                  "lock_wait": "24h", "connect_timeout": "24h"}, environ={})
    assert (high.lock_timeout, high.retries, high.jobs) == (3600.0, 100, 64)


def test_variables_are_bounded_like_flags() -> None:
    with pytest.raises(ConfigError, match="MIGRATOR_LOCK_TIMEOUT"):
        Settings.from_sources({}, environ={"MIGRATOR_LOCK_TIMEOUT": "0"})
