"""A password with a space, `/`, `@` and `%` in it, in each URL form, appears in no output of a
failing run — errors, retry logs at debug level, the termination message."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

PASSWORD = "Sekr3t/pa ss@%word"
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


@pytest.mark.parametrize("url", [
    f"postgresql://app:{PASSWORD}@{CLOSED}/db",
    f"postgresql+psycopg://app:{quote(PASSWORD, safe='')}@{CLOSED}/db",
    f"postgresql://app@{CLOSED}/db?password={quote(PASSWORD, safe='')}&sslmode=disable",
    f"host=127.0.0.1 port=1 dbname=db user=app password='{PASSWORD}'",
], ids=["raw userinfo", "encoded userinfo", "?password=", "keyword/value"])
@pytest.mark.parametrize("command", ["status", "upgrade"])
def test_the_password_is_in_no_output(
    url: str, command: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
    platform: Path,
) -> None:
    termination = tmp_path / "termination-log"
    result = run_cli("--database-url", url, "--migrations-dir", platform, "--connect-timeout",
                     "1s", "--log-level", "debug", command,
                     env={**cli_env, "MIGRATOR_TERMINATION_LOG": str(termination)})
    assert result.returncode == 4, result.stderr
    output = result.stdout + result.stderr + (
        termination.read_text() if termination.exists() else "")
    assert "db.connect_retry" in output  # the retries were logged, at debug level
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD),
                 "Sekr3t", "pa ss"):
        assert form not in output, form
