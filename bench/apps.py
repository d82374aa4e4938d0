"""The peers' (uvicorn, gunicorn) hello app: sockserve's built-in one, so all serve the same code.

The body names the worker's pid, so the benchmark can count the per-worker split. Each peer
worker imports this module itself, so ``os.getpid()`` is that worker's pid.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sockserve

from sockserve.worker.hello import make_hello_app  # noqa: E402

app = make_hello_app(0, os.getpid())
