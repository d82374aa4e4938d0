"""Command line: argv, environment and TOML file become a Config; the only sys.exit.

Precedence: command line > environment (SOCKSERVE_<KEY>) > config file > defaults
(for workers, WEB_CONCURRENCY comes just before the default, as in gunicorn and uvicorn).
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

from . import __version__, apploader
from .config import EXIT_FAILURE, EXIT_USAGE, Config, ConfigError, make_config
from .settings import SETTINGS, Setting

ENV_PREFIX = "SOCKSERVE_"
ENV_INTERNAL = {"SOCKSERVE_WORKER_ID", "SOCKSERVE_CHANNEL_FD", "SOCKSERVE_WORKER_CONFIG", "SOCKSERVE_CONFIG"}
ENV_INTERNAL |= {"SOCKSERVE_NATIVE"}  # 0: the pure-Python hand-off path (master/native.py), not a setting
ENV_INTERNAL |= {"SOCKSERVE_WORKER_CHECK"}  # sockserve check's app probe (check.py), not a setting
ENV_INTERNAL |= {"SOCKSERVE_SCHED_POLICY"}  # sockserve.cluster's (NODE_CLUSTER_SCHED_POLICY), not a setting


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        fail(f"{message} (see sockserve --help)", EXIT_USAGE)


def fail(message: str, code: int) -> NoReturn:
    print(f"sockserve: error: {message}", file=sys.stderr)
    sys.exit(code)


def serve_parser() -> argparse.ArgumentParser:
    """The parser of ``sockserve [OPTIONS] [APP]``, one option per row of settings.SETTINGS."""
    p = _Parser(prog="sockserve", description="Serve an ASGI, WSGI or asyncio-stream app with a "
                "master and worker processes, like Node's cluster; socket-activated under systemd.",
                epilog="Subcommands: 'sockserve status' and 'sockserve reload [--wait|--no-wait]' "
                "talk to a running master over its control socket (see 'sockserve status --help'); "
                "'sockserve check [OPTIONS]' validates the settings and loads the app as a start "
                "would, then exits (0 ok, 2 bad setting, 6 app). "
                "Every option is also a key of the TOML file and a SOCKSERVE_<KEY> variable.",
                argument_default=argparse.SUPPRESS,
                allow_abbrev=False)  # gunicorn's --timeout must not pass as --timeout-keep-alive
    p.add_argument("app_positional", nargs="?", metavar="APP", help="MODULE:ATTR of the app for "
                   "every listener (as --app MODULE:ATTR; default: built-in hello app)")
    p.add_argument("-c", "--config", dest="config_file", metavar="FILE", help="TOML config file "
                   "(also SOCKSERVE_CONFIG)")
    groups: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.section not in groups:
            groups[setting.section] = p.add_argument_group(SECTION_TITLES[setting.section])
        _add_option(groups[setting.section], setting)
    p.add_argument("-V", "--version", action="version", version=f"sockserve {__version__}")
    return p


SECTION_TITLES = {"server": "server and cluster", "control": "control socket", "logging": "logging",
                  "http": "HTTP (uvicorn's protocol options)", "tls": "TLS (stdlib ssl)",
                  "wsgi": "WSGI (a2wsgi)", "unix": "unix sockets",
                  "app": "app loading (where the app and hooks are imported from)",
                  "guards": "guards: recycling, request timeout, metrics, reload, idle exit",
                  "balancer": "load balancer (HAProxy agent-check, drain before a stop)"}


def _add_option(group: Any, s: Setting) -> None:
    default = s.default if s.name != "workers" else None
    shown = "" if default in (None, "", ()) else f" (default: {_shown(default)})"
    text = s.help.replace("%", "%%") + shown
    if s.kind == "bool":
        group.add_argument(*s.flags, s.flag, action=argparse.BooleanOptionalAction, dest=s.name,
                           help=text)
        return
    kwargs: dict[str, Any] = {"dest": s.name, "help": text,
                              "metavar": s.metavar or "|".join(s.choices) or "VALUE"}
    if s.kind in ("list", "apps"):
        kwargs["action"] = "append"
    elif s.kind in ("int", "float"):
        kwargs["type"] = int if s.kind == "int" else float
    group.add_argument(*s.flags, s.flag, **kwargs)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def gather(argv: Sequence[str], environ: Mapping[str, str], base: str | None = None,
           parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """Settings from every source, merged by precedence (not yet validated).

    ``base``: the directory a relative config file path is relative to (the start
    directory, so a reload after ``chdir`` reads the same file)."""
    cli = vars((parser or serve_parser()).parse_args(argv))
    apps = ([cli.pop("app_positional")] if "app_positional" in cli else []) + cli.pop("app", [])
    if apps:  # APP and --app [NAME=]MODULE:ATTR: one mapping (appmap.parse)
        cli["app"] = apps
    path = cli.pop("config_file", None) or environ.get("SOCKSERVE_CONFIG")
    if path and base:
        path = os.path.join(base, path)
    values = read_file(path) if path else {}
    file_keys = set(values)
    values.update(from_env(environ))
    values.update(cli)
    if file_keys - set(from_env(environ)) - set(cli):  # for messages naming the file
        values["file_keys"] = tuple(sorted(file_keys - set(from_env(environ)) - set(cli)))
    if values.get("workers") is None and environ.get("WEB_CONCURRENCY", "").strip():
        values["workers"] = web_concurrency(environ["WEB_CONCURRENCY"])
    if values.get("forwarded_allow_ips") is None and environ.get("FORWARDED_ALLOW_IPS", "").strip():
        # uvicorn's and gunicorn's default for --forwarded-allow-ips: below every sockserve source
        values["forwarded_allow_ips"] = environ["FORWARDED_ALLOW_IPS"].strip()
    if path:
        values["config_file"] = path
    return values


def web_concurrency(text: str) -> int:
    """WEB_CONCURRENCY as the default worker count (gunicorn's and uvicorn's convention):
    below --workers, SOCKSERVE_WORKERS and the file's ``workers``; ConfigError naming it."""
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"WEB_CONCURRENCY: {text!r} is not a whole number of workers") from None
    if not 1 <= count <= 1024:
        raise ConfigError(f"WEB_CONCURRENCY: must be 1..1024 workers, got {count}")
    return count


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
    values = {key.replace("-", "_"): value for key, value in section.items()}
    if "app" in values and not isinstance(values["app"], (str, dict)):  # a list is the CLI's form
        raise ConfigError(f"config file {path}: app = {values['app']!r}: expected \"MODULE:ATTR\" "
                          "or a table { NAME = \"MODULE:ATTR\", ... }")
    return values


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {name[len(ENV_PREFIX):].lower(): value for name, value in environ.items()
            if name.startswith(ENV_PREFIX) and name not in ENV_INTERNAL and value != ""}


def load_config(argv: Sequence[str], environ: Mapping[str, str],
                base: str | None = None) -> tuple[Config, dict[str, Any]]:
    values = gather(argv, environ, base)
    return make_config(values, os.cpu_count() or 1), values


def reread(argv: Sequence[str], base: str) -> tuple[Config, bool]:
    """The settings again, for a reload: (config, whether ``bind`` was given).  serve() wraps
    it in the start's checks (``checked_reread``): a reload refuses what a start would refuse,
    so ``systemctl reload`` fails and the old workers keep serving, rather than the next start
    failing with the port then closed by systemd's start limit."""
    config, values = load_config(argv, os.environ, base)
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
        base = os.getcwd()
        config, values = load_config(argv, os.environ)
        apploader.prepare(config)
        code = serve(config, explicit_bind="bind" in values, reread=lambda: reread(argv, base))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        code = EXIT_FAILURE
    sys.exit(code)
