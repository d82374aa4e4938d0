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
    # --- guards (issue 13): 0 / empty = off; see the "guards" block at the end of this file
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint (master)
    request_timeout: float = 0.0  # seconds a request may run (gunicorn's --timeout, per request)
    max_requests: int = 0  # recycle a worker after about this many requests (gunicorn)
    max_requests_jitter: int = 0  # plus a per-worker random 0..J (gunicorn)
    max_worker_lifetime: float = 0.0  # seconds; recycle a worker older than this
    max_worker_lifetime_jitter: float = 0.0  # plus a per-worker random 0..J seconds
    max_worker_rss: float = 0.0  # MiB; recycle after RSS_SAMPLES samples over it
    reload: bool = False  # development: rolling restart when files change (uvicorn's --reload)
    reload_dirs: tuple[str, ...] = ()  # default: the current directory
    reload_includes: tuple[str, ...] = ()  # glob patterns; default *.py
    reload_excludes: tuple[str, ...] = ()  # glob patterns; default .*, .py[cod], .sw.*, ~*
    exit_idle_time: float = 0.0  # seconds without connections/requests before exit 0 (systemd's)

    def addresses(self) -> tuple[Address, ...]:
        return tuple(parse_address(b) for b in self.bind)

    def for_worker(self, generation: int, keys: tuple[str, ...]) -> dict[str, Any]:
        """What a worker of ``generation`` is told (SOCKSERVE_WORKER_CONFIG)."""
        return {"app": self.app, "interface": self.interface, "keys": list(keys),
                "graceful_timeout": self.graceful_timeout, "heartbeat_interval": self.heartbeat_interval(),
                "generation": generation, "backlog": self.backlog, "log_target": self.log_target,
                "log_level": self.log_level, **guards_for_worker(self)}

    def heartbeat_interval(self) -> float:
        return max(0.05, min(1.0, self.worker_timeout / 4))


KEYS = {f.name for f in fields(Config)} - {"config_file"}
TEXT_KEYS = {"app", "hooks", "control_socket", "config_file", "worker_python", "metrics"}  # as given
LIST_KEYS = {"bind", "reload_dirs", "reload_includes", "reload_excludes"}  # comma-separated or a list
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
        if isinstance(default, bool):
            return _boolean(value)
        if key in LIST_KEYS:
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
    _validate_guards(c)


def _is_import_spec(spec: str) -> bool:
    module, sep, attr = spec.partition(":")
    parts = module.split(".") + attr.split(".")
    return bool(sep) and all(p.isidentifier() for p in parts)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ---------------------------------------------------------------- guards (issue 13)
GUARD_SECONDS = ("request_timeout", "max_worker_lifetime", "max_worker_lifetime_jitter", "exit_idle_time")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def _validate_guards(c: Config) -> None:
    for key in GUARD_SECONDS:
        value = getattr(c, key)
        _check(0 <= value < 86400 * 365, f"{key}: must be 0 (off) or a number of seconds, got {value}")
    for key in ("max_requests", "max_requests_jitter"):
        _check(getattr(c, key) >= 0, f"{key}: must be 0 (off) or more, got {getattr(c, key)}")
    _check(0 <= c.max_worker_rss < 2**40, f"max_worker_rss: must be 0 (off) or MiB, got {c.max_worker_rss}")
    if c.metrics is not None:
        try:
            tcp = parse_address(c.metrics).family == "tcp"
        except ConfigError:
            tcp = False
        _check(tcp, f"metrics: {c.metrics!r}: expected HOST:PORT or [IPv6]:PORT")
    _check(not (c.reload and c.exit_idle_time), "reload: cannot be combined with exit_idle_time")


def guards_for_worker(c: Config) -> dict[str, Any]:
    """The guards a worker enforces itself (SOCKSERVE_WORKER_CONFIG)."""
    return {"request_timeout": c.request_timeout, "max_requests": c.max_requests,
            "max_requests_jitter": c.max_requests_jitter}
