"""Without a C compiler sockserve still builds, installs and serves rr (round_robin.py's path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT, free_port, http_get, wait_for, worker_of


def test_a_build_without_a_compiler_installs_and_serves_rr_in_pure_python(tmp_path):
    src = tmp_path / "src"  # the files git knows, not this checkout's built extension
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}  # any compile fails
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(src)], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sockserve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sockserve/master/native.py" in names
    assert not [n for n in names if n.endswith((".so", ".c", ".h"))], names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)

    check = "import sockserve.master.native as n; print(n.available())"
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sockserve", "--workers", "2", "--policy", "rr",
                               "--bind", f"127.0.0.1:{port}", "--log-target", "stderr"], cwd=tmp_path,
                              env=env, stderr=subprocess.DEVNULL)
    try:
        def served() -> bool:
            try:
                return http_get(port, timeout=1)[0] == 200
            except OSError:
                return False
        assert wait_for(served, 15), "no answer from the pure-Python build"
        # the first answer can come before the other worker listens: wait for both (bounded)
        seen: set[int] = set()
        assert wait_for(lambda: seen.add(worker_of(http_get(port)[1])) or seen == {1, 2}, 15), seen
        workers = [worker_of(http_get(port)[1]) for _ in range(8)]
        assert sorted(workers) == [1] * 4 + [2] * 4, workers  # round robin, in round_robin.py
    finally:
        server.terminate()
        server.wait(timeout=15)
