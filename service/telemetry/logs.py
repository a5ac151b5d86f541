"""Structured logs: JSON lines, one per request, with a request id taken or made.

Records go through a queue to a listener thread, which formats and writes them:
the event loop never waits on the stream (a slow pipe, a full terminal). The
access line is built once, in the request, by one orjson call; the listener
writes it as it is.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import random
import re
import sys
import time
from collections.abc import Mapping
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

import orjson
from quart import Quart, Response, has_request_context, request

from service.config import Settings
from service.db.replicas import RequestReads
from service.request_state import request_state

# Where api/headers.py's middleware puts the request id it took from X-Request-ID
# (when safe) or made, and also writes on the answer.
REQUEST_ID_SCOPE_KEY = "service.request_id"
access_logger = logging.getLogger("service.access")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: str | None = getattr(record, "line", None)
        if line is not None:
            return line  # an access line, made whole in its request
        entry: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if "request_id" not in entry:
            # Read as the record was made (QueueHandler.prepare), or now when
            # it is formatted in the request's own thread.
            if hasattr(record, "request_context_id"):
                entry["request_id"] = record.request_context_id
            elif has_request_context():
                entry["request_id"] = request_state().request_id or None
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return dumps(entry)


def dumps(entry: Mapping[str, Any]) -> str:
    try:
        # A line per request: orjson writes it in a twentieth of the time.
        return orjson.dumps(entry, default=str).decode()
    except TypeError:  # a lone surrogate, an integer past 64 bits
        return json.dumps(entry, ensure_ascii=False, default=str)


_second = [-1, ""]


def utc_time(created: float) -> str:
    """`created` as 2026-01-31T12:34:56.789Z; the seconds' text made once a second."""
    second = int(created)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((created - second) * 1000):03d}Z"


class ToListener(QueueHandler):
    """The root's handler: each record, as made, onto the listener's queue.

    `prepare` keeps the record whole (QueueHandler's own formats it here, on the
    loop); what only this thread knows is read now: the message's arguments,
    and the request's id when in a request.
    """

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        self.records: queue.Queue[logging.LogRecord] = queue.Queue()
        super().__init__(self.records)
        self.stream_handler = logging.StreamHandler(stream)
        self.stream_handler.setFormatter(formatter)
        self.writer = QueueListener(self.records, self.stream_handler)
        self.writer.start()
        self._stopped = False

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if getattr(record, "line", None) is None:
            if record.args:
                record.msg = record.getMessage()
                record.args = None
            if has_request_context():
                record.request_context_id = request_state().request_id or None
        return record

    def emit(self, record: logging.LogRecord) -> None:
        if self._stopped:  # past close(), at exit: written here and now
            self.stream_handler.handle(record)
        else:
            super().emit(record)

    def flush(self) -> None:
        """Until every record queued so far is written."""
        if not self._stopped:
            self.records.join()
        self.stream_handler.flush()

    def close(self) -> None:
        """Writes what is queued, then stops the listener."""
        if not self._stopped:
            self._stopped = True
            self.writer.stop()
        super().close()


@atexit.register
def _close_service_handlers() -> None:
    """The queued lines are written before the process ends."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "service":
            handler.close()


def scope_request_id() -> str:
    """The request id api/headers.py's middleware put in the request's scope."""
    # A TypedDict to Quart, with one more key here.
    scope: Mapping[str, object] = request.scope
    value = scope.get(REQUEST_ID_SCOPE_KEY)
    return value if isinstance(value, str) else ""


def new_request_id() -> str:
    """uuid4().hex's 32 hex digits, without a UUID or a system call per request.

    A request id names a request in the logs and is echoed to its client; it
    guards nothing, so it needs to be unique, not unguessable: 128 bits of the
    process's Mersenne Twister (seeded from the system at start, reseeded in a
    forked child) rather than os.urandom's system call on every request.
    """
    return f"{random.getrandbits(128):032x}"


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: any of
# them in a path or header could start a forged line or rewrite the terminal. The
# backslash too, so that an escape in the log always means an escaped character.
_CONTROL = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TextFormatter(logging.Formatter):
    """One line per record for humans; nothing a client sends can break the line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        # A traceback keeps its lines, each indented: none can pass for a record.
        text = super().formatException(ei)
        return "\n".join("    " + escape_controls(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        lines = stack_info.splitlines()
        return "\n".join("    " + escape_controls(line) for line in lines)


class RootHandlersOnly(logging.Filter):
    """Each record to the root's handlers, once, in the configured format.

    Hypercorn gives `hypercorn.error` a stderr handler and format of its own
    when it makes its logger, which is after the app has started, just before
    its "Running on" line (hypercorn.logging._create_logger): records must not
    reach that handler, whenever it was added.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        logging.getLogger().handle(record)
        return False


def init_app(app: Quart, settings: Settings) -> None:
    json_lines = settings.log_format == "json"
    formatter = JSONFormatter() if json_lines else TextFormatter()
    handler = ToListener(sys.stdout, formatter)
    handler.set_name("service")
    root = logging.getLogger()
    # Replace only our own handler: test harnesses attach theirs to the root too.
    for previous in root.handlers:
        if previous.get_name() == "service":
            previous.close()
    root.handlers = [h for h in root.handlers if h.get_name() != "service"] + [handler]
    root.setLevel(settings.log_level)
    app.logger.handlers = []
    app.logger.propagate = True
    hypercorn_error = logging.getLogger("hypercorn.error")
    if not any(isinstance(f, RootHandlersOnly) for f in hypercorn_error.filters):
        hypercorn_error.addFilter(RootHandlersOnly())

    @app.before_request
    async def start_request() -> None:
        state = request_state()
        state.started = time.perf_counter()
        state.request_id = scope_request_id() or new_request_id()

    @app.after_request
    async def log_request(response: Response) -> Response:
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.handle(access_record(response, json_lines=json_lines))
        return response


def access_record(response: Response, *, json_lines: bool) -> logging.LogRecord:
    """The request's access record; in JSON, with its whole line made once here."""
    state = request_state()
    method, path, status = request.method, request.path, response.status_code
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - state.started) * 1000, 2),
        "user_id": state.identity.user_id if state.identity is not None else None,
        "request_id": state.request_id or scope_request_id(),
        "remote_addr": request.remote_addr,
        **_read_targets(state.reads),
    }
    # No findCaller: the access line's origin is always this function.
    record = access_logger.makeRecord(
        access_logger.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s",
        (method, path, status),
        None,
    )
    record.fields = fields
    if json_lines:
        record.line = dumps(
            {
                "time": utc_time(record.created),
                "level": "info",
                "logger": access_logger.name,
                "message": f"{method} {path} {status}",
                **fields,
            }
        )
    return record


def _read_targets(reads: RequestReads | None) -> dict[str, Any]:
    """With read replicas: where this request's display reads went, and why not
    to a standby when they did not."""
    if reads is None or reads.replicas is None:
        return {}
    return {"db_reads": dict(reads.targets), "db_fallbacks": dict(reads.fallbacks)}
