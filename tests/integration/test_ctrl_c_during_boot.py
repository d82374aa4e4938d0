"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the workers still
boot: the master or primary decides, and no worker prints a KeyboardInterrupt traceback.

Workers ignored SIGINT only once their own code ran (``worker/main.py``, ``run_worker``); a
Ctrl-C during the imports before it (the app's, a library program's top level) printed one
traceback per worker (explorer, issue 15).  They now start with SIGINT ignored
(``master/process.py``: exec keeps SIG_IGN)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, children, free_port, program_env, wait_for

BOOTING = """
import os, time
import sockserve
from sockserve import cluster
from tests.apps.sample import wsgi_app
if cluster.is_worker:
    time.sleep(3)  # a slow top level (imports): Ctrl-C comes meanwhile
async def main():
    if cluster.is_primary:
        cluster.on("exit", lambda w, code, sig: print(f"exit {w.id} code={code} sig={sig}", flush=True))
        for _ in range(2):
            cluster.fork()
    else:
        await sockserve.listen(wsgi_app, 0, "127.0.0.1")
cluster.run(main)
"""


def ctrl_c_while_booting(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Start ``argv`` in its own process group, Ctrl-C it 1 s after its 2 workers started
    (inside their 3 s boot): (exit code, stdout, stderr)."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, text=True, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: len(children(proc.pid)) == 2, 20), "no 2 workers"
        time.sleep(1.0)  # their Python runs: the 3 s boot is under way
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its group left when a check failed
    return proc.returncode, out, err


def test_ctrl_c_while_library_workers_boot_prints_no_traceback(tmp_path):
    script = tmp_path / "booting.py"
    script.write_text(BOOTING)
    code, out, err = ctrl_c_while_booting([sys.executable, str(script)], program_env())
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert code == 0, err
    assert sorted(out.splitlines()) == ["exit 1 code=0 sig=None", "exit 2 code=0 sig=None"], out + err


def test_ctrl_c_while_service_workers_import_the_app_prints_no_traceback():
    # (the service's workers ignored SIGINT before the app's import already; only their first
    # ~0.2 s, the interpreter's start and sockserve's own imports, was open: now none is)
    argv = [sys.executable, "-m", "sockserve", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2",
            "--log-target", "stderr", "tests.apps.slowboot:app"]
    code, _, err = ctrl_c_while_booting(argv, program_env(SLOWBOOT_IMPORT_SLEEP="3"))
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert code == 0, err
