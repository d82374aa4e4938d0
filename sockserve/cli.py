"""Command line: argv, environment and TOML file become a Config; the only sys.exit.

Precedence: command line > environment (SOCKSERVE_<KEY>) > config file > defaults.
Every error is one line on stderr and an exit code systemd understands:
2 for a bad setting, 6 when the application cannot be loaded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import EXIT_FAILURE, EXIT_USAGE, Config, ConfigError, make_config

ENV_PREFIX = "SOCKSERVE_"
ENV_INTERNAL = {"SOCKSERVE_WORKER_ID", "SOCKSERVE_CHANNEL_FD", "SOCKSERVE_WORKER_CONFIG", "SOCKSERVE_CONFIG"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        fail(f"{message} (see sockserve --help)", EXIT_USAGE)


def fail(message: str, code: int) -> NoReturn:
    print(f"sockserve: error: {message}", file=sys.stderr)
    sys.exit(code)


def serve_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sockserve", description="Serve an ASGI, WSGI or asyncio-stream app with a "
                "master and worker processes, like Node's cluster; socket-activated under systemd.",
                epilog="Subcommands: 'sockserve status' and 'sockserve reload [--wait]' talk to a "
                "running master over its control socket; 'sockserve check [options]' validates "
                "the settings and imports the app as a start would, and exits (0 ok, 2, 6).",
                argument_default=argparse.SUPPRESS)
    p.add_argument("app", nargs="?", help="MODULE:ATTR of the app (default: built-in hello app)")
    p.add_argument("-b", "--bind", action="append", metavar="ADDR",
                   help="HOST:PORT, [IPv6]:PORT or unix:/PATH (repeatable; default 127.0.0.1:8000)")
    p.add_argument("-w", "--workers", type=int, metavar="N", help="worker processes (default: CPUs)")
    p.add_argument("--policy", metavar="rr|shared|reuseport", help="scheduling policy (default rr)")
    p.add_argument("--interface", metavar="auto|asgi|wsgi|stream", help="app interface (default auto)")
    p.add_argument("-c", "--config", dest="config_file", metavar="FILE", help="TOML config file")
    p.add_argument("--backlog", type=int, metavar="N", help="listen backlog (default 511)")
    p.add_argument("--graceful-timeout", type=float, metavar="S", help="drain time per worker (30)")
    p.add_argument("--worker-timeout", type=float, metavar="S", help="heartbeat timeout (30)")
    p.add_argument("--boot-timeout", type=float, metavar="S", help="time for workers to listen (30)")
    p.add_argument("--rr-window", type=int, metavar="N", help="un-acked hand-offs per worker (8)")
    p.add_argument("--hooks", metavar="MOD:ATTR", help="function called with the Master before start")
    p.add_argument("--worker-python", metavar="PATH", help="interpreter for workers (default: "
                   "the master's)")
    p.add_argument("--control-socket", metavar="PATH", help="control socket (default "
                   "$RUNTIME_DIRECTORY/control.sock)")
    p.add_argument("--log-target", metavar="auto|journal|stderr")
    p.add_argument("--log-level", metavar="debug|info|warning|error")
    p.add_argument("-V", "--version", action="version", version=f"sockserve {__version__}")
    return p


def gather(argv: Sequence[str], environ: Mapping[str, str],
           parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """Settings from every source, merged by precedence (not yet validated)."""
    cli = vars((parser or serve_parser()).parse_args(argv))
    path = cli.pop("config_file", None) or environ.get("SOCKSERVE_CONFIG")
    values = read_file(path) if path else {}
    values.update(from_env(environ))
    values.update(cli)
    if path:
        values["config_file"] = path
    return values


def read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    section = data.get("sockserve", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [sockserve] must be a table")
    return {key.replace("-", "_"): value for key, value in section.items()}


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {name[len(ENV_PREFIX):].lower(): value for name, value in environ.items()
            if name.startswith(ENV_PREFIX) and name not in ENV_INTERNAL and value != ""}


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Config, dict[str, Any]]:
    values = gather(argv, environ)
    return make_config(values, os.cpu_count() or 1), values


def reread(argv: Sequence[str]) -> tuple[Config, bool]:
    """The settings again (for a reload): (config, whether ``bind`` was given)."""
    config, values = load_config(argv, os.environ)
    return config, "bind" in values


def main(argv: Sequence[str] | None = None) -> NoReturn:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("status", "reload"):
        from .ctl import main as ctl_main

        sys.exit(ctl_main(argv))
    if argv and argv[0] == "check":
        from .check import main as check_main

        sys.exit(check_main(argv[1:], os.environ))
    from .master.serve import serve

    try:
        config, values = load_config(argv, os.environ)
        code = serve(config, explicit_bind="bind" in values, reread=lambda: reread(argv))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        code = EXIT_FAILURE
    sys.exit(code)
