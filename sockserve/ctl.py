"""``sockserve status`` and ``sockserve reload [--wait]``: talk to a running master."""

from __future__ import annotations

import argparse
import json
import os
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
        command.add_argument("--control-socket", metavar="PATH")
        command.add_argument("--timeout", type=float, default=120.0, metavar="S")
    return p


def main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    path = args.control_socket or default_control_path(os.environ)
    if not path:
        print("sockserve: error: no control socket: pass --control-socket PATH "
              "(under systemd RUNTIME_DIRECTORY names it)", file=sys.stderr)
        return EXIT_USAGE
    payload = {"cmd": args.command} | ({"wait": args.wait} if args.command == "reload" else {})
    try:
        answer = request(path, payload, args.timeout)
    except ControlError as exc:
        print(f"sockserve: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not answer.get("ok"):
        print(f"sockserve: {args.command} failed: {answer.get('message') or answer.get('error')}",
              file=sys.stderr)
        return EXIT_FAILURE
    if args.command == "status":
        print(json.dumps(answer, indent=2) if args.json else format_status(answer))
    else:
        print(f"sockserve: {answer.get('message', 'ok')}")
    return EXIT_OK
