"""Command line: ``python -m playground.simulator [--port 8100] [--reply-mode ...]``.

Every :class:`~.state.Config` field is a flag (``reply_tokens`` -> ``--reply-tokens``),
so the flags never drift from the config. ``--port 0`` picks a free port; the first
line printed always carries the real base URL, which is how
``SimulatorServer(subprocess=True)`` finds a subprocess's port.

The control API (``/_sim``) can reset, reconfigure and fault the simulator, so it needs a
token (``SIMULATOR_CONTROL_TOKEN``, or ``--control-token``) unless the server listens on
loopback only. Bound elsewhere without one (e.g. ``--host 0.0.0.0`` in a container), a
token is generated and printed once, on the second line.
"""

import argparse
import dataclasses
import ipaddress
import os
import secrets
import socket

import uvicorn

from .app import create_app
from .replies import REPLY_MODES
from .state import Config, SimulatorState


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_flags(config: Config) -> list[str]:
    """The flags that reproduce ``config`` (only fields that differ from the defaults)."""
    flags = []
    defaults = Config()
    for item in dataclasses.fields(Config):
        value = getattr(config, item.name)
        if value == getattr(defaults, item.name):
            continue
        if isinstance(value, bool):
            flags.append(_flag(item.name) if value else f"--no-{_flag(item.name)[2:]}")
        else:
            flags += [_flag(item.name), str(value)]
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m playground.simulator",
        description="OpenAI-wire simulator: Chat Completions and Responses with a prompt-cache model, no key needed.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
    parser.add_argument(
        "--control-token",
        default=None,
        help=f"token the /_sim control API requires (prefer ${CONTROL_TOKEN_ENV}: arguments are visible "
        "to other local users); default: none on a loopback-only bind, else generated and printed",
    )
    for item in dataclasses.fields(Config):
        if item.type is bool:
            parser.add_argument(_flag(item.name), action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = float if item.type is float else str if item.type is str else int
            parser.add_argument(
                _flag(item.name),
                type=kind,
                default=None,
                choices=REPLY_MODES if item.name == "reply_mode" else None,
                help=f"default: {item.default}",
            )
    return parser


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; binding here (not in uvicorn) makes port 0 usable."""
    return socket.create_server((host, port))


CONTROL_TOKEN_ENV = "SIMULATOR_CONTROL_TOKEN"


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP, as bound) is reachable from this machine only.

    Anything else, a host name included, counts as reachable from the network.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def control_token(address: str, configured: str | None = None) -> tuple[str | None, bool]:
    """The token the control API will require, and whether it was generated here.

    A configured token (the argument, else ``$SIMULATOR_CONTROL_TOKEN``) is always
    required. Without one, a loopback-only bind leaves the control API open (tests,
    benchmarks, ``make simulator``) and any other bind gets a fresh random token.
    """
    configured = configured or os.environ.get(CONTROL_TOKEN_ENV) or None
    if configured or is_loopback(address):
        return configured, False
    return secrets.token_urlsafe(32), True


def uvicorn_config(app: object, *, log_config: dict | None) -> uvicorn.Config:
    """Quiet uvicorn: warnings only and no access log (it could show request details).

    Hung test streams would stall a graceful shutdown forever, so it is cut after 1 s.
    """
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        log_config=log_config,
    )


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    changes = {
        item.name: getattr(args, item.name)
        for item in dataclasses.fields(Config)
        if getattr(args, item.name) is not None
    }
    try:
        config = Config(**changes)
    except ValueError as error:
        parser.error(str(error))
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"OpenAI-wire simulator on http://{host}:{port}/v1", flush=True)
    token, generated = control_token(host, args.control_token)
    if generated:
        print(f"Control API (/_sim) token, send it as 'X-Sim-Control-Token: <token>': {token}", flush=True)
    elif token:
        print("Control API (/_sim) requires the configured control token.", flush=True)
    app = create_app(SimulatorState(config), control_token=token)
    server = uvicorn.Server(uvicorn_config(app, log_config=uvicorn.config.LOGGING_CONFIG))
    server.run(sockets=[sock])
