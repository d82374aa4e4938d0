"""Configuration: one frozen ``Config``, built and validated without I/O.

``cli.py`` gathers values (CLI > environment > TOML file > defaults) and calls
``make_config``; every defect becomes a ``ConfigError`` with a one-line
message that names the key and the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# Exit codes systemd sees (LSB / systemd's EXIT_* names in brackets).
EXIT_OK = 0
EXIT_FAILURE = 1  # runtime failure [EXIT_FAILURE]
EXIT_USAGE = 2  # bad CLI or config value [EXIT_INVALIDARGUMENT]
EXIT_APP = 6  # the application cannot be loaded [EXIT_NOTCONFIGURED]

POLICIES = ("rr", "shared", "reuseport")
INTERFACES = ("auto", "asgi", "wsgi", "stream")
LOG_TARGETS = ("auto", "journal", "stderr")
LOG_LEVELS = ("debug", "info", "warning", "error")

# A stop past graceful_timeout (or a fast stop): the worker cancels what is left and runs the
# ASGI lifespan shutdown within this many seconds of its own (uvicorn runs it on every stop);
# the master's SIGKILL waits that long more, plus EXIT_SLACK for the exit itself.
SHUTDOWN_BUDGET = 3.0
EXIT_SLACK = 1.0


class ConfigError(ValueError):
    """A bad configuration value; ``str()`` is the one-line message."""


@dataclass(frozen=True)
class Address:
    """A bind address: ``host:port``, ``[v6]:port`` or ``unix:/path``."""

    family: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> Address:
    """``Address`` for ``text`` or ConfigError."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/") and not path.startswith("@"):
            raise ConfigError(f"bind {text!r}: a unix path must be absolute (unix:/run/x.sock)")
        return Address("unix", path=path)
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"bind {text!r}: expected HOST:PORT, [IPv6]:PORT or unix:/PATH")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"bind {text!r}: unbalanced brackets")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"bind {text!r}: write IPv6 addresses as [addr]:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bind {text!r}: port must be a number from 0 to 65535")
    return Address("tcp", host=host, port=int(port))


@dataclass(frozen=True)
class Config:
    app: str | None = None  # module:attr; None = built-in hello app
    bind: tuple[str, ...] = ("127.0.0.1:8000",)
    workers: int = 0  # not given: one per CPU (make_config)
    policy: str = "rr"
    interface: str = "auto"
    backlog: int = 511
    graceful_timeout: float = 30.0  # seconds a disconnecting worker may drain
    worker_timeout: float = 30.0  # seconds without heartbeat before a kill
    boot_timeout: float = 30.0  # seconds for a new worker to listen
    rr_window: int = 8  # un-acked hand-offs per worker (Node: 1); one full NewConn batch
    restart_delay_max: float = 30.0  # cap of the per-slot back-off
    stable_after: float = 10.0  # a worker alive this long resets its slot's back-off
    hooks: str | None = None  # module:attr called with the Master before start
    worker_python: str | None = None  # interpreter for workers; None = the master's own
    control_socket: str | None = None  # path; None = $RUNTIME_DIRECTORY/control.sock if set
    log_target: str = "auto"
    log_level: str = "info"
    config_file: str | None = None  # where file values came from (for messages)

    def addresses(self) -> tuple[Address, ...]:
        return tuple(parse_address(b) for b in self.bind)

    def for_worker(self, generation: int, keys: tuple[str, ...]) -> dict[str, Any]:
        """What a worker of ``generation`` is told (SOCKSERVE_WORKER_CONFIG)."""
        return {"app": self.app, "interface": self.interface, "keys": list(keys),
                "graceful_timeout": self.graceful_timeout, "heartbeat_interval": self.heartbeat_interval(),
                "generation": generation, "backlog": self.backlog, "log_target": self.log_target,
                "log_level": self.log_level, "shutdown_budget": SHUTDOWN_BUDGET}

    def drain_kill_after(self) -> float:
        """Seconds after Disconnect before the master SIGKILLs a worker still running.

        graceful_timeout to drain, then the worker's own SHUTDOWN_BUDGET to cancel what is
        left and run the lifespan shutdown, then EXIT_SLACK.
        """
        return self.graceful_timeout + SHUTDOWN_BUDGET + EXIT_SLACK

    def heartbeat_interval(self) -> float:
        return max(0.05, min(1.0, self.worker_timeout / 4))


KEYS = {f.name for f in fields(Config)} - {"config_file"}
TEXT_KEYS = {"app", "hooks", "control_socket", "config_file", "worker_python"}  # kept as given
CHOICES = {"policy": POLICIES, "interface": INTERFACES, "log_target": LOG_TARGETS, "log_level": LOG_LEVELS}


def make_config(values: dict[str, Any], cpu_count: int = 1) -> Config:
    """A validated Config from ``values`` (keys as in ``Config``)."""
    unknown = set(values) - KEYS - {"config_file"}
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
    config = Config(**{k: _coerce(k, v) for k, v in values.items() if v is not None})
    if values.get("workers") is None:  # not given: one per CPU
        config = replace(config, workers=max(1, cpu_count))
    _validate(config)
    return config


def _coerce(key: str, value: Any) -> Any:
    default = getattr(Config, key, None)
    try:
        if key == "bind":
            items = [value] if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for item in items for v in str(item).split(",") if v.strip())
        if key in TEXT_KEYS:
            return str(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value).strip().lower()
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a valid {type(default).__name__}") from None


def _validate(c: Config) -> None:
    _check(c.workers >= 1, f"workers: must be at least 1, got {c.workers}")
    _check(c.workers <= 1024, f"workers: at most 1024, got {c.workers}")
    for key, choices in CHOICES.items():
        value = getattr(c, key)
        _check(value in choices, f"{key}: {value!r} is not one of {', '.join(choices)}")
    _check(1 <= c.backlog <= 65535, f"backlog: must be 1..65535, got {c.backlog}")
    _check(1 <= c.rr_window <= 64, f"rr_window: must be 1..64, got {c.rr_window}")
    for key in ("graceful_timeout", "worker_timeout", "boot_timeout", "restart_delay_max", "stable_after"):
        value = getattr(c, key)
        _check(0 < value < 86400, f"{key}: must be a positive number of seconds, got {value}")
    _check(bool(c.bind), "bind: at least one address is needed")
    addresses = c.addresses()
    _check(len(set(addresses)) == len(addresses), f"bind: duplicate address in {', '.join(c.bind)}")
    for key in ("app", "hooks"):
        spec = getattr(c, key)
        _check(spec is None or _is_import_spec(spec), f"{key}: {spec!r} is not MODULE:ATTRIBUTE")


# ------------------------------------------------------------ start and reload (one path)
def validate_for_start(config: Config, *, inherited: bool, explicit_bind: bool) -> None:
    """What a start refuses, given where its listening sockets come from; ConfigError if any.

    ``inherited``: systemd passed sockets (``LISTEN_FDS``); ``explicit_bind``: ``bind`` was
    given (command line, environment or file).  The same check runs at start
    (master/serve.py), on a reload's re-read (so a reload never accepts what the next
    ``systemctl restart`` would refuse) and in ``sockserve check`` (like ``nginx -t``).
    """
    _validate(config)  # the values themselves (make_config ran it; a hand-made Config did not)
    if inherited and explicit_bind:
        raise ConfigError("bind: cannot be combined with sockets passed by systemd (LISTEN_FDS); "
                          "remove --bind/SOCKSERVE_BIND/bind= or the socket unit")
    if inherited and config.policy == "reuseport":
        raise ConfigError("policy: reuseport needs sockserve to bind the address itself, "
                          "not sockets passed by systemd; use rr or shared")


RESTART_KEYS = ("bind", "control_socket", "hooks")  # a running master cannot change these


def validate_reload(running: Config, new: Config) -> None:
    """What a reload cannot apply, only a restart can; ConfigError naming the key.

    The listening sockets, the control socket and the hooks are the master's from its
    start; reuseport listeners are the workers' own, the others the master's, so
    ``policy`` may not switch to or from ``reuseport`` either.
    """
    for key in RESTART_KEYS:
        if getattr(new, key) != getattr(running, key):
            raise ConfigError(f"{key}: {getattr(running, key)!r} -> {getattr(new, key)!r} "
                              "needs a restart (systemctl restart); a reload keeps it")
    if (new.policy == "reuseport") != (running.policy == "reuseport"):
        raise ConfigError(f"policy: {running.policy} -> {new.policy} needs a restart "
                          "(systemctl restart): reuseport listens in the workers, the others in the master")


def _is_import_spec(spec: str) -> bool:
    module, sep, attr = spec.partition(":")
    parts = module.split(".") + attr.split(".")
    return bool(sep) and all(p.isidentifier() for p in parts)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
