"""A Flask app (WSGI) that answers how many request body bytes it read, and their sha256."""

from __future__ import annotations

import hashlib
import threading
import time

from flask import Flask, request

app = Flask(__name__)


@app.post("/upload")
def upload() -> str:
    data = request.get_data()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


@app.get("/thread")
def thread() -> str:
    """Sleeps ``?s=`` seconds in the WSGI thread pool, then names the thread."""
    time.sleep(float(request.args.get("s", "0")))
    return threading.current_thread().name + "\n"
