import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from tests.harness.servers import PG_ADMIN_URL, REDIS_BASE

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
        REDIS_URL="redis://127.0.0.1:6379/0",
        DJANGO_SECRET_KEY="x" * 20 + Fernet.generate_key().decode(),
        PLAYGROUND_KEY_SECRETS=Fernet.generate_key().decode(),
        DJANGO_ALLOWED_HOSTS="playground.example.com",
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_production_refuses_to_start_without_secrets():
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "PLAYGROUND_KEY_SECRETS")}
    env.update(DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres", REDIS_URL="redis://127.0.0.1:6379/0")
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "ImproperlyConfigured" in out.stderr


# --- docker/.env.example as compose would pass it --------------------------------------------

DOCKER = ROOT / "docker"
_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _dotenv(path: Path) -> dict[str, str]:
    """The VAR=value lines of an env file (comments and blank lines skipped, quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and name.isidentifier(), f"not VAR=value: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def _interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, from `values` (docker/.env)."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match.groups()
        value = values.get(name, "")
        assert value or op != "?", f"compose would refuse to start: {arg}"
        return value or (arg if op == "-" else "")

    return _COMPOSE_VAR.sub(substitute, text)


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _example_app_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    """What compose passes the app containers for a docker/.env copied from .env.example with
    its required secrets filled in (env_file, overridden by x-app-env), plus `changes`, with
    DATABASE_URL and REDIS_URL pointing at the test servers."""
    dotenv = _dotenv(DOCKER / ".env.example")
    compose_text = re.sub(r"(?m)^\s*#.*$", "", (DOCKER / "compose.yaml").read_text())  # comments name ${VAR:?...} too
    required = {m.group(1) for m in _COMPOSE_VAR.finditer(compose_text) if m.group(2) == "?"}
    assert required and required <= set(dotenv), f".env.example must name every required secret: {required - set(dotenv)}"
    generated = {"PLAYGROUND_KEY_SECRETS": Fernet.generate_key().decode(), "POSTGRES_PASSWORD": secrets.token_hex(24)}
    for name in required:
        if not dotenv[name]:
            dotenv[name] = generated.get(name) or secrets.token_urlsafe(50)
    dotenv.update(changes)
    app_env = {**dotenv, **{name: _interpolate(str(value), dotenv) for name, value in _compose()["x-app-env"].items()}}
    app_env.update(DATABASE_URL=PG_ADMIN_URL, REDIS_URL=f"{REDIS_BASE}/0", PLAYGROUND_DATA_DIR=str(tmp_path / "var"))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PLAYGROUND_", "SIMULATOR_"))}
    return {**inherited, **app_env}


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_the_example_env_file(tmp_path):
    out = _check_deploy(_example_app_env(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_the_documented_https_opt_out_is_what_check_deploy_flags(tmp_path):
    """The opt-out really turns HTTPS off (so the clean run above proves the default is on)."""
    out = _check_deploy(_example_app_env(tmp_path, PLAYGROUND_HTTPS="false"))
    assert out.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in out.stderr + out.stdout, out.stdout + out.stderr


def test_the_example_env_file_keeps_https_on_and_documents_the_opt_out():
    https = _dotenv(DOCKER / ".env.example").get("PLAYGROUND_HTTPS", "")
    assert https.strip().lower() in {"", "1", "true", "yes", "on"}, f"PLAYGROUND_HTTPS={https} turns HTTPS off"
    assert re.search(r"^#PLAYGROUND_HTTPS=false$", (DOCKER / ".env.example").read_text(), re.M)
    for readme in (ROOT / "README.md", DOCKER / "README.md"):
        assert "PLAYGROUND_HTTPS=false" in readme.read_text(), readme


def test_the_simulator_service_stays_off_public_networks():
    compose = _compose()
    simulator = compose["services"]["simulator"]
    assert "ports" not in simulator and "network_mode" not in simulator
    networks = list(simulator.get("networks") or [])
    assert networks, "without networks it would join compose's default network"
    for name in networks:
        assert (compose.get("networks") or {}).get(name, {}).get("internal") is True, name
    for client in ("web", "worker"):  # the app reaches it
        assert set(networks) & set(compose["services"][client].get("networks") or ["default"]), client
    # Bound to 0.0.0.0 in its container, so its control API requires a token: the operator's.
    assert "--host" in simulator["command"] and "SIMULATOR_CONTROL_TOKEN" in simulator["environment"]
