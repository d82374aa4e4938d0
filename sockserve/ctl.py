"""``sockserve status`` and ``sockserve reload [--wait]``: talk to a running master.

Without ``--control-socket`` they find the master where it puts its control
socket by default (master.control.default_control_path): under systemd
``$RUNTIME_DIRECTORY``, else ``/run/sockserve`` as root (the packaged
sockserve.service; ``--instance NAME`` for ``sockserve@NAME.service``) or
``$XDG_RUNTIME_DIR/sockserve`` for other users.

A stop supersedes a reload, so ``reload`` exits 0 when it was superseded: when
the master answers that it is stopping (``"superseded": true``), or when the
command itself gets SIGTERM.  systemd runs ``ExecReload=sockserve reload --wait``
as the unit's control process and a ``systemctl stop`` during the reload sends
SIGTERM to it as well as to the master (KillMode=mixed and control-group alike);
a control process killed by a signal or exiting non-zero would leave the unit
"failed" although the stop went well (systemd.service(5), systemd.kill(5)).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from .config import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from .master.control import ControlError, default_control_path, format_status, request


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sockserve")
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="table of workers")
    status.add_argument("--json", action="store_true", help="print the raw statistics")
    reload = sub.add_parser("reload", help="rolling restart of the workers")
    reload.add_argument("--wait", action="store_true", default=True,
                        help="return when the new generation serves and the old one drained (default)")
    reload.add_argument("--no-wait", dest="wait", action="store_false", help="only start the reload")
    for command in (status, reload):
        where = command.add_mutually_exclusive_group()
        where.add_argument("--control-socket", metavar="PATH", help="the master's control socket "
                           "(default: $RUNTIME_DIRECTORY/control.sock, else /run/sockserve/control.sock "
                           "as root, $XDG_RUNTIME_DIR/sockserve/control.sock otherwise)")
        where.add_argument("--instance", metavar="NAME", help="the master of sockserve@NAME.service "
                           "(/run/sockserve-NAME/control.sock)")
        command.add_argument("--timeout", type=float, default=120.0, metavar="S",
                             help="seconds to wait for the answer (default 120)")
    return p


def _superseded(signum: int, frame: object) -> None:
    """SIGTERM while a reload was asked for: under systemd, the unit is being stopped."""
    with contextlib.suppress(OSError):
        os.write(1, b"sockserve: reload superseded by SIGTERM (a stop of the service): not waiting\n")
    os._exit(EXIT_OK)


def _is_instance_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")


def main(argv: Sequence[str]) -> int:
    reload = bool(argv) and argv[0] == "reload"
    if reload:
        signal.signal(signal.SIGTERM, _superseded)
    try:
        return _main(argv)
    finally:
        if reload:  # decided: a SIGTERM now must not kill the exit (Python's shutdown resets
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # its handlers to SIG_DFL, keeps SIG_IGN)


def _main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.instance is not None and not _is_instance_name(args.instance):
        print(f"sockserve: error: --instance {args.instance!r}: not a unit instance name", file=sys.stderr)
        return EXIT_USAGE
    path = args.control_socket or default_control_path(os.environ, args.instance)
    if not path:
        print("sockserve: error: no control socket: pass --control-socket PATH "
              "(XDG_RUNTIME_DIR is not set)", file=sys.stderr)
        return EXIT_USAGE
    payload = {"cmd": args.command} | ({"wait": args.wait} if args.command == "reload" else {})
    try:
        answer = request(path, payload, args.timeout)
    except ControlError as exc:
        print(f"sockserve: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not answer.get("ok") and answer.get("superseded") is True:  # the master is stopping
        print(f"sockserve: reload superseded by a stop: {answer.get('message')}", flush=True)
        return EXIT_OK
    if not answer.get("ok"):
        print(f"sockserve: {args.command} failed: {answer.get('message') or answer.get('error')}",
              file=sys.stderr)
        return EXIT_FAILURE
    text = (json.dumps(answer, indent=2) if args.json else format_status(answer)) \
        if args.command == "status" else f"sockserve: {answer.get('message', 'ok')}"
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `sockserve status | head -1`: the reader left; that is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
    return EXIT_OK
