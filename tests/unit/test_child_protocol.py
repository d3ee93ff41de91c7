"""The JSON-lines child-process protocol: byte-identical framing, lenient event parsing, one module for all users."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys

import pytest

from scanflow_jupyter.kubernetes import argo_run
from scanflow_jupyter.runtime import child_protocol, docker_backend, execute_step, recorder_process
from scanflow_jupyter.runtime.child_protocol import (
    EVENT_PREFIX,
    encode,
    event_line,
    load_message,
    parse_event,
    split_lines,
    write_message,
)

# A step log as execute_step wrote it before the protocol had its own module (the wire format is frozen).
OLD_LOG = (
    "hello from the step\n"
    '\x1escanflow-event {"t": "cell", "index": 0, "cell": 3, "seconds": 0.01}\n'
    "a print with \x1e inside\n"
    '\x1escanflow-event {"t": "outcome", "status": "succeeded"}\n'
)


def test_the_wire_format_is_frozen() -> None:
    assert EVENT_PREFIX == "\x1escanflow-event "
    assert event_line("cell", index=0, cell=3) == '\x1escanflow-event {"t": "cell", "index": 0, "cell": 3}\n'
    when = dt.date(2026, 12, 4)
    assert event_line("outcome", at=when) == '\x1escanflow-event {"t": "outcome", "at": "2026-12-04"}\n'
    assert encode({"id": 1, "method": "log_metric", "args": {"k": "ü"}}) == (
        '{"id": 1, "method": "log_metric", "args": {"k": "\\u00fc"}}\n')
    stream = io.BytesIO()
    write_message(stream, {"id": 2, "ok": True})
    assert stream.getvalue() == b'{"id": 2, "ok": true}\n'


def test_unprefixed_messages_refuse_what_is_not_a_json_object() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})  # no default: the recorder must never send a str() of an object
    assert load_message(b'{"id": 1}\n') == {"id": 1}
    for bad in (b"not json\n", b"[1, 2]\n", b'"text"\n', b""):
        with pytest.raises(ValueError):
            load_message(bad)


@pytest.mark.parametrize("line", [
    "plain output", "", "\x1escanflow-event", "\x1escanflow-event not json", "\x1escanflow-event [1]",
    ' \x1escanflow-event {"t": "cell"}', 'scanflow-event {"t": "cell"}',
])
def test_lines_that_are_not_events_are_log(line: str) -> None:
    assert parse_event(line) is None


def test_an_old_log_still_parses() -> None:
    lines = split_lines(OLD_LOG)
    assert [parse_event(line) for line in lines] == [
        None, {"t": "cell", "index": 0, "cell": 3, "seconds": 0.01}, None, {"t": "outcome", "status": "succeeded"}, None]
    assert len(OLD_LOG.splitlines()) > len(lines) - 1  # why split_lines exists: splitlines() breaks at \x1e
    summary = argo_run.parse_log(OLD_LOG)
    assert summary.text == "hello from the step\na print with \x1e inside\n"
    assert summary.cells == [{"t": "cell", "index": 0, "cell": 3, "seconds": 0.01}]
    assert summary.outcome == {"t": "outcome", "status": "succeeded"}


def test_a_real_child_process_round_trip() -> None:
    """Parent writes requests to a real child's stdin, the child replies with events and messages on stdout."""
    child = (
        "import sys\n"
        "from scanflow_jupyter.runtime.child_protocol import load_message, write_message, event_line\n"
        "out = sys.stdout.buffer\n"
        "for raw in sys.stdin.buffer:\n"
        "    req = load_message(raw)\n"
        "    out.write(event_line('seen', id=req['id']).encode())\n"
        "    write_message(out, {'id': req['id'], 'ok': True, 'result': req['args']['n'] * 2})\n"
    )
    stdin = io.BytesIO()
    for i in range(3):
        write_message(stdin, {"id": i, "method": "double", "args": {"n": i}})
    done = subprocess.run([sys.executable, "-c", child], input=stdin.getvalue(), capture_output=True, timeout=60,
                          check=True)
    lines = split_lines(done.stdout.decode())
    events = [parse_event(line) for line in lines if parse_event(line)]
    replies = [load_message(line) for line in lines if line and parse_event(line) is None]
    assert events == [{"t": "seen", "id": i} for i in range(3)]
    assert replies == [{"id": i, "ok": True, "result": 2 * i} for i in range(3)]


def test_every_user_goes_through_the_one_module() -> None:
    for module in (execute_step, docker_backend, argo_run):
        assert not hasattr(module, "EVENT_PREFIX"), f"{module.__name__} defines its own EVENT_PREFIX"
    assert docker_backend.parse_event is child_protocol.parse_event
    assert argo_run.parse_event is child_protocol.parse_event and argo_run.split_lines is child_protocol.split_lines
    assert execute_step.event_line is child_protocol.event_line
    assert recorder_process.write_message is child_protocol.write_message
    assert recorder_process.load_message is child_protocol.load_message
