#!/usr/bin/env bash
# Set up sockserve on a Debian/Ubuntu machine: system packages, then a virtualenv in .venv.
#   scripts/setup.sh          what running sockserve needs
#   scripts/setup.sh --test   also what the tests and benchmarks need (wrk, debhelper, lintian,
#                             Debian's python3-uvicorn & co. for the .deb tests, node for bench/,
#                             haproxy for the load-balancer tests)
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
python=${PYTHON:-python3}

run_pkgs=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev curl)
test_pkgs=(wrk nodejs systemd util-linux iproute2 debhelper dh-python pybuild-plugin-pyproject
           python3-all python3-setuptools lintian man-db python3-systemd python3-sdnotify
           python3-uvicorn python3-uvloop python3-httptools python3-dotenv python3-prometheus-client)
# haproxy: tests/integration/test_haproxy_proxy.py (PROXY v1/v2) and test_haproxy.py (agent-check,
# three hosts) start their own haproxy, never the system service (issue 16)
test_pkgs+=(haproxy)
extras="systemd,wsgi"
pkgs=("${run_pkgs[@]}")
if [ "${1:-}" = "--test" ]; then
    pkgs+=("${test_pkgs[@]}")
    extras="$extras,test"
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "setup: ready (.venv/bin/sockserve)" >&2
