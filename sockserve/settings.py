"""The settings table: one row per key, the single source of ``Config``, ``--help`` and the docs.

Like gunicorn's ``config.py``: each ``Setting`` names the key (as in the TOML
file and ``SOCKSERVE_<KEY>``), its default, the command-line flag derived
from it (``graceful_timeout`` -> ``--graceful-timeout``; booleans get
``--x/--no-x``), its help line and its choices.  ``config.Config`` is built
from ``SETTINGS``; ``cli.py`` builds the parser from it; tests check that the
man page, the packaged TOML file and docs/options.md name the same keys.

To add a key: one ``Setting`` row in the block of its section.  Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

POLICIES = ("rr", "shared", "reuseport")
INTERFACES = ("auto", "asgi", "wsgi", "stream")
LOG_TARGETS = ("auto", "journal", "stderr")
LOG_LEVELS = ("debug", "info", "warning", "error")
HTTP_IMPLEMENTATIONS = ("auto", "h11", "httptools")  # uvicorn's --http
CERT_REQS = ("none", "optional", "required")  # ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED

# access log line: the fields of access.ACCESS_FIELDS, in str.format syntax
ACCESS_LOG_FORMAT = '{client} - "{method} {path} HTTP/{http_version}" {status} {bytes} {duration_ms:.1f}ms'


@dataclass(frozen=True)
class Setting:
    """One configuration key.

    ``kind``: ``int``, ``float``, ``bool``, ``text`` (a string kept as given,
    ``None`` = not set), ``word`` (lower-cased; with ``choices``), ``list``
    (comma-separated or repeated) or ``apps`` (``app``: appmap.py's forms).  ``worker``: sent to workers in
    ``SOCKSERVE_WORKER_CONFIG``.  ``flags``: extra short flags (``-w``).
    """

    name: str
    kind: str
    default: Any
    help: str
    metavar: str = ""
    choices: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    worker: bool = False
    section: str = "server"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # ---------------------------------------------------------------- server / cluster
    # --- per-listener apps (issue 15, appmap.py): app by listener name, bind NAME=ADDR ---
    S("app", "apps", None, "MODULE:ATTR of the app for every listener, or NAME=MODULE:ATTR for the "
      "listener NAME (repeatable; default: built-in hello app)", "[NAME=]MODULE:ATTR", worker=True),
    S("bind", "list", ("127.0.0.1:8000",), "HOST:PORT, [IPv6]:PORT or unix:/PATH, NAME=ADDR names "
      "the listener (repeatable; not with sockets passed by systemd)", "[NAME=]ADDR", flags=("-b",)),
    # --- end of per-listener apps ---
    S("workers", "int", 0, "worker processes (default: one per CPU)", "N", flags=("-w",)),
    S("policy", "word", "rr", "how connections reach workers", choices=POLICIES),
    S("interface", "word", "auto", "how to call the app", choices=INTERFACES, worker=True),
    S("backlog", "int", 511, "listen backlog of sockets sockserve binds", "N", worker=True),
    S("graceful_timeout", "float", 30.0, "seconds a stopping worker may drain", "S", worker=True),
    S("worker_timeout", "float", 30.0, "seconds without heartbeat before a kill", "S"),
    S("boot_timeout", "float", 30.0, "seconds for new workers to load the app and listen", "S"),
    S("rr_window", "int", 8, "rr: un-acked hand-offs per worker (1..64)", "N"),
    S("restart_delay_max", "float", 30.0, "cap of the back-off between restarts of a slot", "S"),
    S("stable_after", "float", 10.0, "seconds alive that reset a slot's back-off", "S"),
    S("hooks", "text", None, "function called with the Master before start", "MODULE:ATTR"),
    S("worker_python", "text", None, "interpreter for workers (default: the master's)", "PATH"),
    S("control_socket", "text", None, "control socket (default: $RUNTIME_DIRECTORY/control.sock, "
      "else $XDG_RUNTIME_DIR/sockserve/control.sock, or /run/sockserve/control.sock as root)",
      "PATH", section="control"),
    # ---------------------------------------------------------------- app loading (apploader.py)
    S("app_dir", "text", None, "look for the app and hooks here first (default: the working "
      "directory; uvicorn's --app-dir)", "DIR", worker=True, section="app"),
    S("chdir", "text", None, "change to this directory before loading anything (gunicorn's "
      "--chdir)", "DIR", section="app"),
    S("virtualenv", "text", None, "workers run VENV/bin/python, the venv's packages first, "
      "sockserve's after them", "VENV", section="app"),
    S("factory", "bool", False, "APP is a factory: serve what calling it returns (uvicorn's "
      "--factory)", worker=True, section="app"),
    S("env_file", "text", None, "KEY=VALUE lines added to the app's environment, not overriding "
      "it (uvicorn's --env-file)", "FILE", section="app"),
    # ---------------------------------------------------------------- logging
    S("log_target", "word", "auto", "where logs go (auto: the journal when stderr is connected "
      "to it)", choices=LOG_TARGETS, worker=True, section="logging"),
    S("log_level", "word", "info", "minimum level logged", choices=LOG_LEVELS, worker=True,
      section="logging"),
    S("log_config", "text", None, "logging configuration file: .json/.toml (dictConfig) or INI "
      "(fileConfig), applied after sockserve's own", "FILE", worker=True, section="logging"),
    S("access_log", "bool", False, "one line (journald: fields) per HTTP request", worker=True,
      section="logging"),
    S("access_log_format", "text", ACCESS_LOG_FORMAT, "access line, str.format fields: client, "
      "method, path, query, http_version, status, bytes, duration_ms, duration_us, worker_id",
      "FORMAT", worker=True, section="logging"),
    # ---------------------------------------------------------------- HTTP (uvicorn's options)
    S("http", "word", "auto", "HTTP/1.1 implementation (auto: httptools when usable)",
      choices=HTTP_IMPLEMENTATIONS, worker=True, section="http"),
    S("proxy_headers", "bool", True, "trust X-Forwarded-For/-Proto from forwarded_allow_ips",
      worker=True, section="http"),
    S("forwarded_allow_ips", "text", "127.0.0.1", "comma-separated addresses (or *) whose proxy "
      "headers are trusted", "IPS", worker=True, section="http"),
    # --- PROXY protocol (worker/proxyread.py; issue 16) ---
    S("proxy_protocol", "list", (), "listener (name: systemd FileDescriptorName or --bind NAME=; "
      "or address as bound) whose connections start with a PROXY v1/v2 header from "
      "forwarded_allow_ips (HAProxy's send-proxy[-v2]); 'all' for every listener (repeatable)",
      "LISTENER", worker=True, section="http"),
    # --- end of PROXY protocol ---
    S("root_path", "text", "", "ASGI root_path (the app is mounted below this URL prefix)", "PATH",
      worker=True, section="http"),
    S("timeout_keep_alive", "float", 5.0, "seconds an idle keep-alive connection stays open", "S",
      worker=True, section="http"),
    S("limit_concurrency", "int", 0, "per worker: connections+requests past which it answers 503 "
      "(0: no limit)", "N", worker=True, section="http"),
    # --- HTTP limits per connection (worker/limits.py; docs/reliability.md) ---
    S("idle_timeout", "float", 10.0, "seconds a new connection may stay silent before its first "
      "byte; then closed", "S", worker=True, section="http"),
    S("headers_timeout", "float", 60.0, "seconds from a request's first byte to the end of its "
      "head (Node's headersTimeout); then 408", "S", worker=True, section="http"),
    S("max_header_size", "int", 16384, "bytes of one request head (Node's 16 KiB); then 431 "
      "(h11: 400)", "BYTES", worker=True, section="http"),
    # --- end of HTTP limits ---
    S("server_header", "bool", True, "send 'server: uvicorn'", worker=True, section="http"),
    S("date_header", "bool", True, "send a Date header", worker=True, section="http"),
    # ---------------------------------------------------------------- TLS (stdlib ssl via uvicorn)
    S("ssl_certfile", "text", None, "PEM certificate (chain); enables TLS", "FILE", worker=True,
      section="tls"),
    S("ssl_keyfile", "text", None, "PEM private key (default: in the certfile)", "FILE", worker=True,
      section="tls"),
    S("ssl_keyfile_password", "text", None, "password of the private key", "PASSWORD", worker=True,
      section="tls"),
    S("ssl_ca_certs", "text", None, "CA certificates to verify client certificates", "FILE",
      worker=True, section="tls"),
    S("ssl_cert_reqs", "word", "none", "client certificate: none, optional or required",
      choices=CERT_REQS, worker=True, section="tls"),
    S("ssl_ciphers", "text", "TLSv1", "OpenSSL cipher list", "CIPHERS", worker=True, section="tls"),
    # ---------------------------------------------------------------- WSGI (a2wsgi)
    S("threads", "int", 10, "WSGI: threads per worker running the app", "N", worker=True,
      section="wsgi"),
    # ---------------------------------------------------------------- unix sockets
    S("unix_socket_mode", "text", None, "octal mode of unix: sockets sockserve binds (e.g. 0660; "
      "default: from the umask)", "MODE", section="unix"),
    S("unix_socket_owner", "text", None, "USER[:GROUP] or :GROUP owning unix: sockets sockserve "
      "binds", "OWNER", section="unix"),
    # ---------------------------------------------------------------- guards (issue 13; 0 = off)
    S("max_requests", "int", 0, "recycle a worker after N requests (gunicorn); its successor "
      "listens first", "N", worker=True, section="guards"),
    S("max_requests_jitter", "int", 0, "plus a random 0..J per worker", "J", worker=True,
      section="guards"),
    S("max_worker_lifetime", "float", 0.0, "recycle a worker older than S seconds", "S",
      section="guards"),
    S("max_worker_lifetime_jitter", "float", 0.0, "plus a random 0..J seconds per worker", "J",
      section="guards"),
    S("max_worker_rss", "float", 0.0, "recycle a worker whose RSS stays over MIB (3 samples, 1 s "
      "apart)", "MIB", section="guards"),
    S("request_timeout", "float", 0.0, "cut a request after S seconds: 504 if nothing was sent, the "
      "app sees http.disconnect; a stuck WSGI request recycles its worker", "S", worker=True,
      section="guards"),
    S("metrics", "text", None, "serve Prometheus metrics at http://HOST:PORT/metrics (master)",
      "HOST:PORT", section="guards"),
    S("exit_idle_time", "float", 0.0, "socket activation only: exit 0 after S seconds without a "
      "connection or request (systemd-socket-proxyd's)", "S", section="guards"),
    S("reload", "bool", False, "development: rolling reload when watched files change (needs "
      "watchfiles; not with socket activation)", section="guards"),
    S("reload_dirs", "list", (), "directory --reload watches (repeatable; default: the current "
      "one)", "DIR", flags=("--reload-dir",), section="guards"),
    S("reload_includes", "list", (), "file pattern that triggers a reload, added to *.py (repeatable, "
      "as uvicorn)", "GLOB", flags=("--reload-include",), section="guards"),
    S("reload_excludes", "list", (), "file or directory pattern to ignore, added to .*, "
      ".py[cod], .sw.*, ~* (repeatable)", "GLOB", flags=("--reload-exclude",), section="guards"),
    # ------------------------------------------------------- load balancer (issue 16; master/agent.py)
    S("agent", "text", None, "answer HAProxy's agent-check here (ready N%, drain, maint, down; master). "
      "Under systemd: the socket unit's socket named 'agent'", "HOST:PORT", section="balancer"),
    S("drain_delay", "float", 0.0, "a graceful stop first serves S more seconds while the agent "
      "answers drain, then stops listening (Kubernetes' preStop sleep)", "S", section="balancer"),
    # --- end of load balancer ---
)
del S

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def defaults() -> dict[str, Any]:
    """Every key's default value."""
    return {s.name: s.default for s in SETTINGS}


def worker_keys() -> tuple[str, ...]:
    """The keys a worker is told."""
    return tuple(s.name for s in SETTINGS if s.worker)
