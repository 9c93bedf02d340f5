"""JSON-lines logs carry the service, instrument, job and run with every record."""

from __future__ import annotations

import json
import logging
import sys

from datastream.logs import JsonFormatter, set_context


def test_a_json_line_has_the_context_and_the_traceback():
    set_context(service="filewriter", instrument="LOQ", job_id="j1", run_number=12)
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            record = logging.LogRecord("filewriter.job", logging.ERROR, __file__, 1,
                                       "job %s failed", ("j1",), sys.exc_info())
        line = json.loads(JsonFormatter().format(record))
    finally:
        set_context(service=None, instrument=None, job_id=None, run_number=None)
    assert line["level"] == "error" and line["message"] == "job j1 failed"
    assert (line["service"], line["instrument"], line["job_id"], line["run_number"]) == (
        "filewriter", "LOQ", "j1", 12)
    assert "ValueError: bad" in line["exception"] and line["time"].endswith("+00:00")
    set_context(job_id=None)
    assert "job_id" not in json.loads(JsonFormatter().format(logging.LogRecord(
        "x", logging.INFO, __file__, 1, "m", (), None)))


def test_refused_ca_beacons_are_said_once_without_a_traceback():
    import logging

    from datastream.ca_beacons import BeaconRefusals

    f = BeaconRefusals()

    def record(msg):
        try:
            raise ConnectionRefusedError(111)
        except ConnectionRefusedError:
            import sys
            return logging.LogRecord("caproto.ctx", logging.ERROR, "x", 1, msg, (), sys.exc_info())

    first = record("Failed to send beacon to ('127.0.0.1', 5065). Try setting ...")
    assert f.filter(first) and first.levelno == logging.WARNING and first.exc_info is None
    assert not f.filter(record("Failed to send beacon to ('127.0.0.1', 5065)."))
    assert f.filter(record("something else"))  # other errors pass untouched


def test_a_log_line_after_stderr_was_swapped_and_closed_still_goes_out(capfd):
    import io

    from datastream.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    real = sys.stderr
    try:
        sys.stderr = io.StringIO()  # as a test's capture is while a service sets up
        setup_logging("info")
        sys.stderr.close()
        sys.stderr = real
        logging.getLogger("a.thread").warning("said after the capture closed")
    finally:
        sys.stderr = real
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert "said after the capture closed" in capfd.readouterr().err
