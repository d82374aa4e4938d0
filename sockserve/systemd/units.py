"""The names a service's socket units give their sockets, from systemd's own view (systemctl).

``sockserve check --socket-activated`` asks the running master first (the sockets a reload
runs with); when none answers, these are the names the next start will get: for every
socket unit that triggers the service (``systemctl show SERVICE -p TriggeredBy``), its
``FileDescriptorName=`` (``systemctl show UNIT -p FileDescriptorName``; systemd's default,
when unset, is the socket unit's own name: systemd.socket(5)).
"""

from __future__ import annotations

import shutil
import subprocess

TIMEOUT = 10.0  # seconds for each systemctl call


class UnitsError(Exception):
    """systemctl is missing, failed, or the service has no socket unit; ``str()`` says which."""


def service_name(instance: str | None) -> str:
    """``sockserve.service``, or ``sockserve@NAME.service`` (the packaged template)."""
    return f"sockserve@{instance}.service" if instance else "sockserve.service"


def socket_names(service: str) -> dict[str, str]:
    """name -> name of every socket of the socket units that trigger ``service``."""
    units = _show(service, "TriggeredBy").split()
    sockets = [unit for unit in units if unit.endswith(".socket")]
    if not sockets:
        raise UnitsError(f"no socket unit triggers {service} (systemctl show {service} -p TriggeredBy)")
    names = [_show(unit, "FileDescriptorName") or unit for unit in sorted(sockets)]
    return {name: name for name in names}


def agent_address(service: str) -> str | None:
    """The address of the socket named ``agent`` that triggers ``service`` (its unit's first
    ``Listen=``, e.g. ``127.0.0.1:9001``); "" when its address cannot be read; None: none."""
    sockets = [unit for unit in _show(service, "TriggeredBy").split() if unit.endswith(".socket")]
    for unit in sockets:
        if (_show(unit, "FileDescriptorName") or unit) == "agent":
            listen = _show(unit, "Listen").split()  # "127.0.0.1:9001 (Stream)"
            return listen[0] if listen else ""
    return None


def _show(unit: str, prop: str) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise UnitsError("systemctl is not installed")
    try:
        done = subprocess.run([systemctl, "show", unit, "-p", prop, "--value"], capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnitsError(f"systemctl show {unit}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise UnitsError(f"systemctl show {unit}: {why}")
    return done.stdout.strip()
