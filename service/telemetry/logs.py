"""Structured logs: JSON lines, one per request, with a request id taken or made."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any

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
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if "request_id" not in entry and has_request_context():
            entry["request_id"] = request_state().request_id or None
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            # A line per request: orjson writes it in a twentieth of the time.
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # a lone surrogate, an integer past 64 bits
            return json.dumps(entry, ensure_ascii=False, default=str)


def scope_request_id() -> str:
    """The request id api/headers.py's middleware put in the request's scope."""
    # A TypedDict to Quart, with one more key here.
    scope: Mapping[str, object] = request.scope
    value = scope.get(REQUEST_ID_SCOPE_KEY)
    return value if isinstance(value, str) else ""


def new_request_id() -> str:
    # uuid4().hex's 32 hex digits, without building a UUID on every request.
    return secrets.token_hex(16)


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
    handler = logging.StreamHandler(sys.stdout)
    if settings.log_format == "json":
        formatter: logging.Formatter = JSONFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter()
    handler.setFormatter(formatter)
    handler.set_name("service")
    root = logging.getLogger()
    # Replace only our own handler: test harnesses attach theirs to the root too.
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
        state = request_state()
        request_id = state.request_id or scope_request_id()
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round(
                            (time.perf_counter() - state.started) * 1000, 2
                        ),
                        "user_id": state.identity.user_id
                        if state.identity is not None
                        else None,
                        "request_id": request_id,
                        "remote_addr": request.remote_addr,
                        **_read_targets(state.reads),
                    }
                },
            )
        return response


def _read_targets(reads: RequestReads | None) -> dict[str, Any]:
    """With read replicas: where this request's display reads went, and why not
    to a standby when they did not."""
    if reads is None or reads.replicas is None:
        return {}
    return {"db_reads": dict(reads.targets), "db_fallbacks": dict(reads.fallbacks)}
