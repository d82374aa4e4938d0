"""Log records -> journal fields and <N>-prefixed stderr lines.

The journal handler is python-systemd's own, with its ``sender_function``
replaced by a recorder that has ``systemd.journal.send``'s signature.
"""

import io
import logging
import os
import re
import tempfile
import uuid

import pytest

from sockserve import logs
from sockserve.logs import (
    EVENT_MESSAGE_IDS,
    event_fields,
    journal_fields,
    log_event,
    make_journal_handler,
    make_stderr_handler,
    setup_logging,
    stderr_is_journal,
)

needs_python_systemd = pytest.mark.skipif(not logs.journal_available(), reason="python-systemd not installed")


def capture_logger(handler, name="sockserve.test-capture"):
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_message_ids_are_distinct_uuid4s():
    ids = [uuid.UUID(h) for h in EVENT_MESSAGE_IDS.values()]
    assert all(i.version == 4 for i in ids) and len(set(ids)) == len(ids)
    assert {"worker_spawn", "worker_exit", "worker_boot_failure", "reload_start", "reload_done",
            "reload_failed", "ready", "stopping", "worker_online", "worker_listening"} <= set(
        EVENT_MESSAGE_IDS)


def test_event_fields_use_journal_names():
    extra = event_fields("worker_exit", worker_id=3, pid=1234, generation=2, listener="http",
                         reason="crash", signal=None)
    message_id = uuid.UUID(EVENT_MESSAGE_IDS["worker_exit"])
    assert extra == {"SOCKSERVE_EVENT": "worker_exit", "MESSAGE_ID": message_id,
                     "WORKER_ID": 3, "WORKER_PID": 1234, "GENERATION": 2, "LISTENER": "http",
                     "REASON": "crash"}
    assert "MESSAGE_ID" not in event_fields("accept_paused")


@needs_python_systemd
def test_journal_handler_sends_event_fields_and_priority():
    sent = []
    handler = make_journal_handler(sender_function=lambda MESSAGE, **fields: sent.append((MESSAGE, fields)))
    log_event(capture_logger(handler), logging.WARNING, "worker_exit", "worker 3 crashed",
              worker_id=3, pid=1234, generation=2)
    [(message, fields)] = sent
    assert message == "worker 3 crashed"
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "sockserve"
    assert fields["MESSAGE_ID"].hex == EVENT_MESSAGE_IDS["worker_exit"]
    assert {k: fields[k] for k in ("SOCKSERVE_EVENT", "WORKER_ID", "WORKER_PID", "GENERATION")} == {
        "SOCKSERVE_EVENT": "worker_exit", "WORKER_ID": 3, "WORKER_PID": 1234, "GENERATION": 2}


@needs_python_systemd
@pytest.mark.parametrize("level, priority", [(logging.DEBUG, "7"), (logging.INFO, "6"),
                                             (logging.ERROR, "3"), (logging.CRITICAL, "2")])
def test_worker_journal_records_carry_the_worker_id(level, priority):
    sent = []
    handler = make_journal_handler(worker_id=5, sender_function=lambda MESSAGE, **f: sent.append(f))
    capture_logger(handler).log(level, "plain message from a worker")
    [fields] = sent
    assert (fields["WORKER_ID"], fields["WORKER_PID"], fields["PRIORITY"]) == (5, os.getpid(), priority)
    assert "SOCKSERVE_EVENT" not in fields


def test_journal_fields_are_the_upper_case_record_attributes():
    record = logging.LogRecord("sockserve", logging.INFO, __file__, 1, "m", None, None)
    record.__dict__.update(event_fields("ready", generation=1))
    assert journal_fields(record) == {"SOCKSERVE_EVENT": "ready", "GENERATION": 1,
                                      "MESSAGE_ID": uuid.UUID(EVENT_MESSAGE_IDS["ready"])}


def test_stderr_lines_have_priority_prefix_and_worker_tag():
    worker_out, master_out = io.StringIO(), io.StringIO()
    capture_logger(make_stderr_handler(3, worker_out), "sockserve.test-w").info("hello")
    log_event(capture_logger(make_stderr_handler(None, master_out), "sockserve.test-m"),
              logging.WARNING, "worker_exit", "worker 3 crashed", worker_id=3)
    assert worker_out.getvalue() == "<6>sockserve[worker 3]: hello\n"
    assert master_out.getvalue() == "<4>sockserve: worker 3 crashed\n"


def test_every_line_of_a_traceback_is_prefixed():
    out = io.StringIO()
    logger = capture_logger(make_stderr_handler(None, out), "sockserve.test-tb")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>sockserve: ") for line in lines)
    assert lines[-1] == "<3>sockserve: ValueError: bad"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_lines_have_time_and_level_and_no_priority_prefix():
    out = Terminal()
    capture_logger(make_stderr_handler(2, out), "sockserve.test-tty").error("oops")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR sockserve\[worker 2\]: oops\n", out.getvalue())


@pytest.mark.parametrize("name, text", [
    ("log.json", '{"loggers": {"sockserve.test-lc": {"level": "ERROR"}}}'),
    ("log.toml", '[loggers."sockserve.test-lc"]\nlevel = "ERROR"\n'),
    ("log.ini", "[loggers]\nkeys=root,lc\n[handlers]\nkeys=\n[formatters]\nkeys=\n[logger_root]\n"
                "handlers=\n[logger_lc]\nqualname=sockserve.test-lc\nlevel=ERROR\nhandlers=\n"),
])
def test_log_config_file_is_applied(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    logging.getLogger("sockserve.test-lc").setLevel(logging.DEBUG)
    logs.apply_log_config(str(path))
    assert logging.getLogger("sockserve.test-lc").level == logging.ERROR
    assert not logging.getLogger("sockserve").disabled  # sockserve's loggers stay enabled


@pytest.mark.parametrize("text, why", [(None, "No such file"), ("{", "JSONDecodeError"),
                                       ('{"handlers": {"h": {"class": "nope.Nope"}}}', "ValueError")])
def test_bad_log_config_is_one_line(tmp_path, text, why):
    path = tmp_path / "log.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(logs.LogConfigError, match=why) as info:
        logs.apply_log_config(str(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"log_config {path}: ")


def test_journal_stream_must_match_stderr_device_and_inode():
    with tempfile.TemporaryFile() as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, f.fileno())
        assert not stderr_is_journal({}, f.fileno())


def test_setup_logging_is_idempotent_and_sets_the_level(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logger = logging.getLogger("sockserve")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        setup_logging("auto", "debug", worker_id=4)
        setup_logging("stderr", "warning", worker_id=4)
        [handler] = logger.handlers
        assert isinstance(handler.formatter, logs.PrefixFormatter)
        assert handler.formatter.tag == "sockserve[worker 4]"
        assert logger.level == logging.WARNING and logger.propagate is False
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_auto_target_is_stderr_without_journal_stream():
    assert logs.resolve_target("auto", {}) == "stderr"
    assert logs.resolve_target("stderr", {}) == "stderr"
