"""Run a test module again with PostgreSQL as its database (pytest-django's test database).

The unit-level tests run on SQLite; the production stack runs on PostgreSQL, which differs
where it matters (NUL bytes in text, transactions aborted by an error, locking). A wrapper
test marked `integration` calls `pytest_on_postgresql(__file__, ...)`: the module's other
tests run in a pytest subprocess whose DATABASE_URL names a fresh database on the harness's
PostgreSQL server (pytest-django creates `test_<name>` there and drops it afterwards), and the
wrapper fails when any of them fails or is skipped.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.harness.servers import PG_ADMIN_URL, ROOT


def pytest_on_postgresql(test_file: str, tmp_path: Path, *, env: dict[str, str] | None = None, timeout: float = 280) -> str:
    """Run `test_file`'s tests except those with "postgresql" in their name; returns the verbose output."""
    database = f"pcp_pytest_{secrets.token_hex(4)}"
    run_env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    run_env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    run_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", test_file, "-v", "-p", "no:cacheprovider", "-k", "not postgresql",
         f"--basetemp={tmp_path / 'pg'}"],
        env=run_env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout.lower(), result.stdout[-3000:]
    return result.stdout
