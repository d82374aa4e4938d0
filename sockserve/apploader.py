"""Where apps and hooks are imported from: working directory, app directory, virtualenv, env file.

One module for the master (``--hooks``, and ``prepare`` before anything starts) and the
workers (the app), so both import from the same places, as a user of the peers expects:

- ``chdir``: the master changes directory before loading anything; workers inherit it
  (gunicorn's ``--chdir``).
- ``app_dir``: put first on ``sys.path`` (uvicorn's ``--app-dir``); not set: the current
  directory, as ``python -m``, uvicorn and gunicorn do (a console script alone would not).
- ``env_file``: KEY=VALUE lines read with python-dotenv into the environment the app and
  the workers see, never overriding a variable already set (uvicorn's ``--env-file``).
- ``virtualenv``: workers run the venv's interpreter; the venv's own ``sys.path`` comes first
  and the master's package directories (sockserve and its dependencies) are appended after it
  (``worker_argv``), so a plain venv (no ``--system-site-packages``) works and its packages win.
  The master appends the venv's site-packages to its own path for the hooks.
- ``factory``: the app object is called with no arguments and its result served
  (uvicorn's ``--factory``).

Errors: ``ConfigError`` (exit 2) naming the setting for a wrong path; the app's own import
errors propagate to the caller (the worker turns them into exit 6).
"""

from __future__ import annotations

import importlib
import os
import site
import sys
from collections.abc import Callable
from typing import Any

from . import __file__ as _package_init
from .config import Config, ConfigError

# Run by a foreign interpreter (worker_python / virtualenv): its own sys.path first,
# then the master's package directories given as arguments, then the worker's main.
_BOOT = ("import sys; sys.path += [p for p in sys.argv[1:] if p not in sys.path]; del sys.argv[1:]; "
         "import runpy; runpy.run_module('sockserve.worker', run_name='__main__', alter_sys=True)")


# ---------------------------------------------------------------- master, before anything starts
def prepare(config: Config, environ: dict[str, str] | None = None) -> None:
    """Apply chdir, env_file, virtualenv and app_dir to this process (the master).

    ``environ`` (default ``os.environ``) receives the env file's variables.  Raises
    ConfigError naming the setting when a path is wrong.
    """
    environ = os.environ if environ is None else environ
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"chdir: cannot change to {config.chdir!r}: {exc.strerror}") from None
    if config.env_file:
        environ.update({k: v for k, v in read_env_file(config.env_file).items() if k not in environ})
    if config.virtualenv:
        site.addsitedir(check_virtualenv(config.virtualenv))
    add_to_path(config.app_dir)


def check(config: Config) -> None:
    """What ``prepare`` and the hooks import would refuse, without changing this process:
    a reload refuses a configuration a start would refuse (ConfigError naming the key)."""
    if config.chdir and not os.path.isdir(config.chdir):
        raise ConfigError(f"chdir: {config.chdir!r} is not a directory")
    if config.env_file:
        read_env_file(config.env_file)
    if config.virtualenv:
        check_virtualenv(config.virtualenv)
    if config.app_dir:
        add_to_path(config.app_dir)  # refuses a missing directory; harmless otherwise
    if config.hooks:
        load_hooks(config.hooks)


def read_env_file(path: str) -> dict[str, str]:
    """The variables of a dotenv file (python-dotenv's syntax); ConfigError if unreadable."""
    try:
        with open(path, encoding="utf-8") as stream:
            from dotenv import dotenv_values

            values = dotenv_values(stream=stream)
    except OSError as exc:
        raise ConfigError(f"env_file: cannot read {path!r}: {exc.strerror}") from None
    except ImportError:
        raise ConfigError("env_file: needs python-dotenv (Debian: python3-dotenv)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"env_file: {path!r} is not UTF-8 text: {exc.reason}") from None
    return {k: v for k, v in values.items() if v is not None}


def check_virtualenv(venv: str) -> str:
    """The venv's site-packages directory; ConfigError unless ``venv`` is a usable venv.

    Usable: ``bin/python`` runs, and it is the master's Python version (the workers load
    sockserve's compiled dependencies, uvloop and httptools, built for that version).
    """
    python = os.path.join(venv, "bin", "python")
    if not os.path.isdir(venv):
        raise ConfigError(f"virtualenv: {venv!r} is not a directory (create it with python3 -m venv "
                          f"{venv}){_hidden_hint(venv)}")
    if not os.access(python, os.X_OK):
        raise ConfigError(f"virtualenv: {python!r} is missing or not executable: not a virtualenv")
    version = _venv_version(venv)
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if version and version != ours:
        raise ConfigError(f"virtualenv: {venv!r} is Python {version} but sockserve runs on {ours}: "
                          f"recreate it with python{ours} -m venv")
    return os.path.join(venv, "lib", f"python{ours}", "site-packages")


def _hidden_hint(path: str) -> str:
    """Why a path under /root or /home may look missing: the units' ProtectHome=."""
    if path.startswith(("/root/", "/home/")):
        return "; under systemd /root and /home are hidden (ProtectHome=): move it under /srv"
    return ""


def _venv_version(venv: str) -> str | None:
    """``X.Y`` from the venv's pyvenv.cfg (``version`` or ``version_info``), None if absent."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return ".".join(value.strip().split(".")[:2])
    return None


# ---------------------------------------------------------------- both sides
def add_to_path(app_dir: str | None) -> str:
    """Put ``app_dir`` (None: the current directory) first on sys.path; the absolute path."""
    where = os.path.abspath(app_dir or os.curdir)
    if app_dir and not os.path.isdir(where):
        raise ConfigError(f"app_dir: {app_dir!r} is not a directory{_hidden_hint(where)}")
    if where in sys.path:
        sys.path.remove(where)
    sys.path.insert(0, where)
    return where


def import_object(spec: str) -> Any:
    """The object named by ``MODULE:ATTR`` (ATTR may be dotted); the import's errors propagate."""
    module_name, sep, attrs = spec.partition(":")
    if not sep or not module_name or not attrs:
        raise ValueError(f"{spec!r} is not MODULE:ATTRIBUTE")
    obj: Any = importlib.import_module(module_name)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


def call_factory(factory: Any, spec: str) -> Any:
    """``factory()`` (uvicorn's ``--factory``); TypeError naming ``spec`` if it is not one."""
    if not callable(factory):
        raise TypeError(f"factory: {spec!r} is a {type(factory).__name__}, not a callable")
    return factory()


def load_hooks(spec: str) -> Callable[[Any], Any]:
    """The master's hook function; ConfigError naming ``hooks`` when it cannot be imported."""
    try:
        target = import_object(spec)
    except Exception as exc:  # the user's code: any error is a bad setting
        raise ConfigError(f"hooks: cannot load {spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise ConfigError(f"hooks: {spec!r} is a {type(target).__name__}, not a function")
    return target


# ---------------------------------------------------------------- worker command line
def worker_argv(python: str | None) -> tuple[str, ...]:
    """argv of a worker: ``python -m sockserve.worker`` with the master's interpreter, or a
    foreign one (venv) given the master's package directories after its own ``sys.path``."""
    if not python or python == sys.executable:
        return (sys.executable, "-m", "sockserve.worker")
    return (python, "-c", _BOOT, *master_package_dirs())


def master_package_dirs() -> list[str]:
    """Directories of this interpreter's path holding sockserve and third-party packages."""
    ours = os.path.dirname(os.path.dirname(os.path.abspath(_package_init)))
    dirs = [ours] + [p for p in sys.path if p and os.path.basename(p) in ("site-packages", "dist-packages")]
    return list(dict.fromkeys(dirs))
