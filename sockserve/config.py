"""Configuration: one frozen ``Config``, built and validated without I/O.

``cli.py`` gathers values (CLI > environment > TOML file > defaults) and calls
``make_config``; every defect becomes a ``ConfigError`` with a one-line
message that names the key and the bad value.
"""

from __future__ import annotations

import posixpath
from dataclasses import field, make_dataclass, replace
from typing import Any

from . import appmap
from .access import ACCESS_FIELDS, format_access_line
from .address import Address, parse_address  # noqa: F401 (re-exported)
from .errors import ConfigError, in_file
from .settings import BY_NAME, SETTINGS, worker_keys

# Exit codes systemd sees (LSB / systemd's EXIT_* names in brackets).
EXIT_OK = 0
EXIT_FAILURE = 1  # runtime failure [EXIT_FAILURE]
EXIT_USAGE = 2  # bad CLI or config value [EXIT_INVALIDARGUMENT]
EXIT_APP = 6  # the application cannot be loaded [EXIT_NOTCONFIGURED]

# A stop past graceful_timeout (or a fast stop): the worker cancels what is left and runs the
# ASGI lifespan shutdown within this many seconds of its own (uvicorn runs it on every stop);
# the master's SIGKILL waits that long more, plus EXIT_SLACK for the exit itself.
SHUTDOWN_BUDGET = 3.0
EXIT_SLACK = 1.0


def _config_namespace() -> dict[str, Any]:
    def addresses(self: Any) -> tuple[Address, ...]:
        return tuple(address for _, address in self.binds())

    def binds(self: Any) -> tuple[tuple[str, Address], ...]:
        """``(name, address)`` per ``bind`` entry (``NAME=ADDR``; name "" when unnamed)."""
        return tuple((name, parse_address(text)) for name, text in map(appmap.split_bind, self.bind))

    def for_worker(self: Any, generation: int, keys: tuple[str, ...] | dict[str, str]) -> dict[str, Any]:
        """What a worker of ``generation`` is told (SOCKSERVE_WORKER_CONFIG).  ``keys``: the
        listeners' keys, or key -> listener name; ``listeners`` (key -> name) and ``apps``
        (key -> MODULE:ATTR or null, appmap.resolve; ValueError if it does not fit) go too."""
        names = dict(keys) if isinstance(keys, dict) else dict.fromkeys(keys, "")
        told = {key: getattr(self, key) for key in worker_keys()} | {"app": appmap.default(self.app)}
        return told | {"keys": list(names), "listeners": names, "apps": appmap.resolve(self.app, names),
                       "heartbeat_interval": self.heartbeat_interval(), "generation": generation}

    def heartbeat_interval(self: Any) -> float:
        return max(0.05, min(1.0, self.worker_timeout / 4))

    def drain_kill_after(self: Any) -> float:
        """Seconds after Disconnect before the master SIGKILLs a worker still running.

        graceful_timeout to drain, then the worker's own SHUTDOWN_BUDGET to cancel what is
        left and run the lifespan shutdown, then EXIT_SLACK.
        """
        return self.graceful_timeout + SHUTDOWN_BUDGET + EXIT_SLACK

    return {"addresses": addresses, "binds": binds, "for_worker": for_worker,
            "heartbeat_interval": heartbeat_interval,
            "drain_kill_after": drain_kill_after,
            "__doc__": "Every setting of settings.SETTINGS as a frozen attribute, plus config_file."}


# The fields are the rows of settings.SETTINGS (one source for Config, --help and the docs).
Config = make_dataclass(
    "Config", [(s.name, Any, field(default=s.default)) for s in SETTINGS]
    + [("config_file", Any, field(default=None)),  # where file values came from (for messages)
       ("file_keys", Any, field(default=()))],  # the keys whose value is the file's (for messages)
    frozen=True, namespace=_config_namespace())

KEYS = set(BY_NAME)
CHOICES = {s.name: s.choices for s in SETTINGS if s.choices}


def make_config(values: dict[str, Any], cpu_count: int = 1) -> Config:
    """A validated Config from ``values`` (keys as in ``Config``)."""
    unknown = set(values) - KEYS - {"config_file", "file_keys"}
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
    config = Config(**{k: _from(values, k, v) for k, v in values.items() if v is not None})
    if config.virtualenv and values.get("worker_python") is None:  # the venv's interpreter
        config = replace(config, worker_python=posixpath.join(config.virtualenv, "bin", "python"))
    elif config.virtualenv:
        raise ConfigError("virtualenv: set either virtualenv or worker_python, not both")
    if values.get("workers") is None:  # not given: one per CPU
        config = replace(config, workers=max(1, cpu_count))
    try:
        _validate(config)
    except ConfigError as exc:  # "key: ...": name the file when the value is the file's
        raise in_file(exc, str(exc).partition(":")[0], config.config_file, config.file_keys) from None
    return config


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _from(values: dict[str, Any], key: str, value: Any) -> Any:
    """``_coerce``; an error about a value of the TOML file names the file."""
    if key in ("config_file", "file_keys"):
        return tuple(value) if key == "file_keys" else value
    try:
        return _coerce(key, value)
    except ConfigError as exc:
        raise in_file(exc, key, values.get("config_file"), tuple(values.get("file_keys", ()))) from None


def _coerce(key: str, value: Any) -> Any:
    kind = BY_NAME[key].kind if key in BY_NAME else "text"
    try:
        if kind == "apps":
            return appmap.parse(value)
        if kind == "list":
            items = [value] if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for item in items for v in str(item).split(",") if v.strip())
        if kind == "text":
            return str(value)
        if kind == "bool":
            word = str(value).strip().lower()
            if isinstance(value, bool) or word in TRUE_WORDS | FALSE_WORDS:
                return value if isinstance(value, bool) else word in TRUE_WORDS
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        return str(value).strip().lower()
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a valid {kind}") from None


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
    appmap.bind_names(c.bind)  # names: valid, each once
    addresses = c.addresses()
    _check(len(set(addresses)) == len(addresses), f"bind: duplicate address in {', '.join(c.bind)}")
    _check(c.hooks is None or appmap.is_import_spec(c.hooks), f"hooks: {c.hooks!r} is not MODULE:ATTRIBUTE")
    appmap.parse(c.app)  # a hand-made Config's app
    _validate_http(c)
    _validate_limits(c)
    _validate_guards(c)
    _validate_app_loading(c)


def _validate_limits(c: Any) -> None:
    """The HTTP limits block (worker/limits.py)."""
    for key in ("idle_timeout", "headers_timeout"):
        value = getattr(c, key)
        _check(0 < value < 86400, f"{key}: must be a positive number of seconds, got {value}")
    _check(1024 <= c.max_header_size <= 1 << 20,
           f"max_header_size: must be 1024..1048576 bytes, got {c.max_header_size}")


PATH_KEYS = ("app_dir", "chdir", "virtualenv", "env_file", "worker_python")


def _validate_app_loading(c: Any) -> None:
    """Keys of the app-loading block (their paths are checked by apploader, with I/O)."""
    for key in PATH_KEYS:
        _check(getattr(c, key) != "", f"{key}: empty path (leave it out for the default)")
    _check(not c.factory or c.app is not None, "factory: needs an app (MODULE:ATTRIBUTE of the factory)")


def bind_under_systemd(config_file: str | None) -> str:
    """The one-line error for ``bind`` when systemd passed the sockets: where the address goes.

    ``/etc/sockserve/NAME.toml`` belongs to ``sockserve@NAME.socket`` (``sockserve.toml``
    to ``sockserve.socket``), the packaged units' convention."""
    name = posixpath.splitext(posixpath.basename(config_file or ""))[0]
    unit = "sockserve.socket" if name in ("", "sockserve") else f"sockserve@{name}.socket"
    where = f"from {config_file}" if config_file else "(--bind/SOCKSERVE_BIND)"
    return (f"bind: under systemd the socket unit sets the address: remove bind {where} and set "
            f"ListenStream= in {unit} (systemctl edit {unit}: [Socket] ListenStream= then "
            "ListenStream=HOST:PORT); see sockserve(8)")


def _validate_http(c: Any) -> None:
    """Keys of the logging, HTTP, TLS, WSGI and unix-socket blocks."""
    _check(c.timeout_keep_alive > 0, f"timeout_keep_alive: must be positive, got {c.timeout_keep_alive}")
    _check(c.limit_concurrency >= 0,
           f"limit_concurrency: must be 0 (none) or more, got {c.limit_concurrency}")
    _check(1 <= c.threads <= 1024, f"threads: must be 1..1024, got {c.threads}")
    _check(c.ssl_keyfile is None or c.ssl_certfile is not None, "ssl_keyfile: needs ssl_certfile too")
    _check(c.ssl_cert_reqs == "none" or c.ssl_ca_certs is not None,
           f"ssl_cert_reqs: {c.ssl_cert_reqs} needs ssl_ca_certs (the CAs that sign client certificates)")
    _check(c.root_path == "" or (c.root_path.startswith("/") and not c.root_path.endswith("/")),
           f"root_path: {c.root_path!r} must start with / and not end with one (e.g. /api)")
    mode = c.unix_socket_mode
    _check(mode is None or (mode.isdigit() and set(mode) <= set("01234567") and int(mode, 8) <= 0o777),
           f"unix_socket_mode: {mode!r} is not an octal mode such as 0660")
    owner = c.unix_socket_owner
    _check(owner is None or (owner.strip(":") != "" and owner.count(":") <= 1),
           f"unix_socket_owner: {owner!r} is not USER, USER:GROUP or :GROUP")
    try:
        format_access_line(c.access_log_format)
    except KeyError as exc:
        raise ConfigError(f"access_log_format: {c.access_log_format!r}: unknown field {exc.args[0]!r} "
                          f"(fields: {', '.join(ACCESS_FIELDS)})") from None
    except (ValueError, IndexError, TypeError) as exc:
        raise ConfigError(f"access_log_format: {c.access_log_format!r}: {exc}") from None


# ------------------------------------------------------------ start and reload (one path)
def validate_for_start(config: Config, *, inherited: bool, explicit_bind: bool,
                       listeners: dict[str, str] | None = None, source: str = "LISTEN_FDNAMES") -> None:
    """What a start refuses, given where its listening sockets come from; ConfigError if any.

    ``inherited``: systemd passed sockets (``LISTEN_FDS``); ``explicit_bind``: ``bind`` was
    given (command line, environment or file); ``listeners``: systemd's, key -> name ("" when
    unnamed; None: not known, the app mapping is not checked against them); ``source``: where
    systemd's names come from, for the message (appmap.SOURCES).  A mapping of
    ``app`` must fit the listeners' names (appmap.resolve).  The same check runs at start
    (master/serve.py), on a reload's re-read (so a reload never accepts what the next
    ``systemctl restart`` would refuse) and in ``sockserve check`` (like ``nginx -t``).
    """
    _validate(config)  # the values themselves (make_config ran it; a hand-made Config did not)
    if inherited and explicit_bind:
        raise ConfigError(bind_under_systemd(config.config_file))
    if inherited and config.policy == "reuseport":
        raise ConfigError("policy: reuseport needs sockserve to bind the address itself, "
                          "not sockets passed by systemd; use rr or shared")
    if not inherited:
        listeners = appmap.bind_names(config.bind)
        source = ("bind_file" if "bind" in config.file_keys else "bind") if explicit_bind \
            else "unbound" if config.config_file else "bind"
    if listeners is not None:
        try:
            appmap.resolve(config.app, listeners, source, in_file="app" in config.file_keys)
        except ConfigError as exc:
            raise in_file(exc, "app", config.config_file, config.file_keys) from None


# a running master cannot change these: its listening sockets (and their unix file mode/owner),
# its control socket, its hooks, its working directory and environment (workers inherit them)
RESTART_KEYS = ("bind", "unix_socket_mode", "unix_socket_owner", "control_socket", "hooks", "chdir",
                "env_file", "agent")


def validate_reload(running: Config, new: Config) -> None:
    """What a reload cannot apply, only a restart can; ConfigError naming the key.

    The listening sockets (unix file mode and owner too), the control socket, the hooks, the
    working directory and the env file's variables are the master's from its start;
    reuseport listeners are the workers' own, the others the master's, so ``policy`` may
    not switch to or from ``reuseport`` either.
    """
    for key in RESTART_KEYS:
        if getattr(new, key) != getattr(running, key):
            raise ConfigError(f"{key}: {getattr(running, key)!r} -> {getattr(new, key)!r} "
                              "needs a restart (systemctl restart); a reload keeps it")
    if (new.policy == "reuseport") != (running.policy == "reuseport"):
        raise ConfigError(f"policy: {running.policy} -> {new.policy} needs a restart "
                          "(systemctl restart): reuseport listens in the workers, the others in the master")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ---------------------------------------------------------------- guards (issue 13)
GUARD_SECONDS = ("request_timeout", "max_worker_lifetime", "max_worker_lifetime_jitter", "exit_idle_time")


def _validate_guards(c: Any) -> None:
    for key in (*GUARD_SECONDS, "drain_delay"):
        value = getattr(c, key)
        _check(0 <= value < 86400 * 365, f"{key}: must be 0 (off) or a number of seconds, got {value}")
    for key in ("max_requests", "max_requests_jitter"):
        _check(getattr(c, key) >= 0, f"{key}: must be 0 (off) or more, got {getattr(c, key)}")
    _check(0 <= c.max_worker_rss < 2**40, f"max_worker_rss: must be 0 (off) or MiB, got {c.max_worker_rss}")
    for key in ("metrics", "agent"):  # the master's HOST:PORT side servers
        try:
            tcp = getattr(c, key) is None or parse_address(getattr(c, key)).family == "tcp"
        except ConfigError:
            tcp = False
        _check(tcp, f"{key}: {getattr(c, key)!r}: expected HOST:PORT or [IPv6]:PORT")
    _check(not (c.reload and c.exit_idle_time), "reload: cannot be combined with exit_idle_time")
