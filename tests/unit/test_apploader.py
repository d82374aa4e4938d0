"""apploader: paths, venv checks and the worker command line, on real files in tmp_path."""

import os
import subprocess
import sys

import pytest

import sockserve
from sockserve import apploader
from sockserve.config import ConfigError, make_config


def test_app_dir_goes_first_on_sys_path_once(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", ["/x", str(tmp_path)])
    assert apploader.add_to_path(str(tmp_path)) == str(tmp_path)
    assert sys.path == [str(tmp_path), "/x"]


def test_a_missing_app_dir_under_root_says_protecthome_hides_it():
    with pytest.raises(ConfigError, match=r"^app_dir: .* hidden \(ProtectHome=\): move it under /srv$"):
        apploader.add_to_path("/root/no-such-app-dir")


def test_virtualenv_of_another_python_version_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 2.7.18\n")
    with pytest.raises(ConfigError, match=r"virtualenv: .* is Python 2\.7 but sockserve runs on 3\.\d+"):
        apploader.check_virtualenv(str(tmp_path))


def test_env_file_values_do_not_override_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("A=from-file\nB='quoted value'\n")
    environ = {"A": "kept"}
    apploader.prepare(make_config({"env_file": str(env_file)}), environ)
    assert environ == {"A": "kept", "B": "quoted value"}


def test_a_foreign_interpreter_finds_the_masters_sockserve_after_its_own_path(tmp_path):
    argv = apploader.worker_argv("/usr/bin/env")
    assert argv[:2] == ("/usr/bin/env", "-c")
    ours = os.path.dirname(os.path.dirname(sockserve.__file__))
    assert ours in argv[3:]
    probe = argv[2].replace("import runpy; runpy.run_module('sockserve.worker', run_name='__main__', "
                            "alter_sys=True)", "import sockserve; print(sockserve.__file__, sys.path[-1])")
    assert probe != argv[2]
    out = subprocess.run([sys.executable, "-I", "-c", probe, *argv[3:]], capture_output=True, text=True,
                         cwd=tmp_path, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith(sockserve.__file__), out
    assert apploader.worker_argv(None) == (sys.executable, "-m", "sockserve.worker")
