"""App loading like the peers: the current directory, --app-dir, --chdir, --factory,
--env-file, --virtualenv and WEB_CONCURRENCY, run as a user runs them (the console
script, no PYTHONPATH), with real processes on loopback."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, alive, children, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.timeout(90)
SCRIPT = str(pathlib.Path(sys.executable).with_name("sockserve"))  # the console script
APP = textwrap.dedent("""\
    import os, sys
    def application(environ, start_response):
        body = "|".join([os.environ.get("GREETING", "-"), os.getcwd(), sys.prefix]).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    def make_app():
        return application
    """)


class Run:
    """sockserve started like a user would: console script, chosen cwd, no PYTHONPATH."""

    def __init__(self, tmp: pathlib.Path, *args: str, cwd: pathlib.Path, env: dict | None = None):
        self.port = free_port()
        self.err = tmp / f"stderr-{self.port}.log"
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WEB_CONCURRENCY")}
        environ.update(env or {})
        argv = [SCRIPT, "--bind", f"127.0.0.1:{self.port}", "--log-target", "stderr",
                "--control-socket", str(tmp / f"c{self.port}.sock"), *args]
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=environ, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def get(self) -> tuple[int, str]:
        def answer():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.stderr()}")
            try:
                return http_get(self.port)
            except OSError:
                return None
        result = wait_for(answer, 20, 0.1)
        assert result, f"no answer: {self.stderr()}"
        return result

    def exit_code(self) -> int:
        return self.proc.wait(30)

    def stop(self) -> None:
        pids = children(self.proc.pid)
        terminate(self.proc)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def run(tmp_path):
    started: list[Run] = []

    def start(*args: str, cwd: pathlib.Path = ROOT, env: dict | None = None) -> Run:
        started.append(Run(tmp_path, *args, cwd=cwd, env=env))
        return started[-1]

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def app_dir(tmp_path) -> pathlib.Path:
    where = tmp_path / "myapp"
    where.mkdir()
    (where / "myapp_wsgi.py").write_text(APP)
    return where


def test_hooks_and_app_load_from_the_current_directory(run):
    """The example's docstring command, from the project root (issue 11 item 3)."""
    r = run("--workers", "2", "--hooks", "examples.counter:setup_master", "examples.counter:app")
    for _ in range(3):
        assert r.get() == (200, "hello world\n")
    assert r.proc.poll() is None, r.stderr()


def test_app_dir_is_searched_first_from_any_directory(run, app_dir, tmp_path):
    r = run("--workers", "1", "--app-dir", str(app_dir), "myapp_wsgi:application", cwd=tmp_path)
    status, body = r.get()
    assert status == 200 and body.split("|")[1] == str(tmp_path), body


def test_chdir_changes_directory_and_finds_the_app_there(run, app_dir):
    r = run("--workers", "1", "--chdir", str(app_dir), "myapp_wsgi:application")
    status, body = r.get()
    assert status == 200 and body.split("|")[1] == str(app_dir), body


def test_factory_is_called_and_a_factory_without_the_flag_says_so(run, app_dir):
    r = run("--workers", "1", "--app-dir", str(app_dir), "--factory", "myapp_wsgi:make_app")
    assert r.get()[0] == 200
    bad = run("--workers", "1", "--app-dir", str(app_dir), "myapp_wsgi:make_app")
    assert bad.exit_code() == 6
    assert "factory = true (--factory)" in bad.stderr(), bad.stderr()


def test_env_file_reaches_the_app_without_overriding_the_environment(run, app_dir, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# comment\nGREETING='hello from .env'\nHOME_OVERRIDE=x\n")
    r = run("--workers", "1", "--app-dir", str(app_dir), "--env-file", str(env_file),
            "myapp_wsgi:application")
    assert r.get()[1].split("|")[0] == "hello from .env"
    kept = run("--workers", "1", "--app-dir", str(app_dir), "--env-file", str(env_file),
               "myapp_wsgi:application", env={"GREETING": "from the environment"})
    assert kept.get()[1].split("|")[0] == "from the environment"


def status_workers(r: Run, tmp_path: pathlib.Path) -> int:
    from sockserve.master.control import request

    return len(request(str(tmp_path / f"c{r.port}.sock"), {"cmd": "status"}, 5.0)["workers"])


def test_web_concurrency_is_the_default_worker_count_below_workers(run, tmp_path):
    r = run(env={"WEB_CONCURRENCY": "3"})
    r.get()
    assert wait_for(lambda: status_workers(r, tmp_path) == 3, 10)
    explicit = run("--workers", "1", env={"WEB_CONCURRENCY": "3"})
    explicit.get()
    assert status_workers(explicit, tmp_path) == 1


def test_plain_virtualenv_packages_are_imported_by_workers_from_the_venv(run, app_dir, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "only_in_venv.py").write_text("GREETING = 'from the venv'\n")
    (app_dir / "venv_app.py").write_text(APP.replace('os.environ.get("GREETING", "-")',
                                                     '__import__("only_in_venv").GREETING'))
    r = run("--workers", "1", "--app-dir", str(app_dir), "--virtualenv", str(venv), "venv_app:application")
    status, body = r.get()
    greeting, _, prefix = body.split("|")
    assert (status, greeting, prefix) == (200, "from the venv", str(venv)), body


BAD_SETTINGS = [
    (["--chdir", "/nonexistent/x"], "chdir:"),
    (["--app-dir", "/nonexistent/x"], "app_dir:"),
    (["--env-file", "/nonexistent/x.env"], "env_file:"),
    (["--virtualenv", "/nonexistent/venv"], "virtualenv:"),
    (["--virtualenv", "/usr"], "virtualenv:"),
    (["--hooks", "no_such_module:setup"], "hooks:"),
    (["--factory"], "factory:"),
]


@pytest.mark.parametrize(("args", "named"), BAD_SETTINGS)
def test_a_wrong_app_loading_setting_is_one_line_naming_it_and_exit_2(run, args, named):
    r = run("--workers", "1", *args)
    assert r.exit_code() == 2, r.stderr()
    lines = r.stderr().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sockserve: error: {named}"), lines


@pytest.mark.parametrize("value", ["lots", "0"])
def test_a_wrong_web_concurrency_is_one_line_naming_it_and_exit_2(run, value):
    r = run(env={"WEB_CONCURRENCY": value})
    assert r.exit_code() == 2
    assert r.stderr().startswith("sockserve: error: WEB_CONCURRENCY:"), r.stderr()


def reload(r: Run, tmp_path: pathlib.Path) -> dict:
    from sockserve.master.control import request

    return request(str(tmp_path / f"c{r.port}.sock"), {"cmd": "reload"}, 60.0)


@pytest.mark.parametrize(("line", "named"), [('chdir = "/nonexistent"', "chdir:"),
                                              ('env_file = "/nonexistent.env"', "env_file:"),
                                              ('hooks = "no_such_module:setup"', "hooks:")])
def test_reload_refuses_what_a_start_would_refuse_and_keeps_serving(run, tmp_path, line, named):
    conf = tmp_path / "sockserve.toml"
    conf.write_text("workers = 1\n")
    r = run("--config", str(conf))
    assert r.get()[0] == 200
    conf.write_text(f"workers = 1\n{line}\n")
    answer = reload(r, tmp_path)
    assert answer.get("ok") is False and named in str(answer), answer
    assert r.get()[0] == 200 and r.proc.poll() is None
