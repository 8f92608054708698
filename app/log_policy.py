"""The log policy: "Logs carry request id, method, route, status, duration, client id: never
resource content, names or query values that may be identifiers." The request line is
app/api/request_log.py's; this module holds what applies to every log record.

Exception messages may quote what a request carried (a database error quotes its SQL
parameters, a ValueError the text it could not read), so tracebacks are logged without them:
`redacted_traceback` for the app's own error logs, and RedactingFormatter, which `serve`
(app/cli.py, through `uvicorn_log_config`) puts on every handler, for tracebacks logged by
anything else (uvicorn's "Exception in ASGI application", the audit writer, exports).

Two formats (FHIR_LOG_FORMAT): `text`, one `time LEVEL logger: message` line, and `json`,
JsonFormatter's one JSON object a line for log collectors:

    {"timestamp":"2026-01-02T03:04:05.678Z","level":"INFO","logger":"app.access",
     "message":"request_id=3f0c... method=GET ...","request_id":"3f0c...","method":"GET",
     "route":"/fhir/{resource_type}/{resource_id}","resource_type":"Patient","status":200,
     "duration_ms":1.2,"client_id":null}

Its keys are a fixed list, not whatever a record carries: the four above, `request_id` (any
record written while a request is handled: RequestContextFilter reads REQUEST_ID, which the
request log sets), `trace_id`/`span_id` (when tracing is on), the request line's fields (on
"app.access" records only), `exception` (the redacted traceback) and `stack`.

Imports nothing of the app (app/cli.py may not import app.api)."""

from __future__ import annotations

import json
import logging
import logging.config
import time
import traceback
from contextvars import ContextVar
from typing import Any

import orjson

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
ACCESS_LOGGER = "app.access"
# the request line's fields (app/api/request_log.py), top-level keys of its JSON records
ACCESS_FIELDS = ("method", "route", "resource_type", "status", "duration_ms", "client_id")

# The id of the request being handled, set by RequestLogMiddleware for the request's task (and
# what it runs in threads: contextvars follow into the thread pool). Tracing, when on, sets
# TRACE_IDS to the (trace id, span id) of the request's span, in hex.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TRACE_IDS: ContextVar[tuple[str, str] | None] = ContextVar("trace_ids", default=None)


_LINKS = {
    "direct cause": "\nThe above exception was the direct cause of the following exception:\n\n",
    "during handling": "\nDuring handling of the above exception, another exception occurred:\n\n",
}


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of `exc` and the exceptions it was raised from or while handling: frames
    (file, line, function, source line) and exception types, without the messages."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "direct cause"
        elif not current.__suppress_context__:
            current, link = current.__context__, "during handling"
        else:
            current = None
    parts: list[str] = []
    for error, how in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(error.__traceback__)))
        kind = type(error)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        parts.append(f"{name}: (message withheld by the log policy)\n")
        if isinstance(error, BaseExceptionGroup):
            for number, inner in enumerate(error.exceptions, 1):
                nested = redacted_traceback(inner).rstrip("\n").replace("\n", "\n  | ")
                parts.append(f"  +-- {number} --\n  | {nested}\n")
        if how:
            parts.append(_LINKS[how])
    return "".join(parts).rstrip("\n")


class RedactingFormatter(logging.Formatter):
    """A Formatter whose tracebacks carry no exception messages (see redacted_traceback)."""

    def __init__(
        self,
        fmt: str | None = FORMAT,
        datefmt: str | None = None,
        style: Any = "%",
        use_colors: bool | None = None,  # what uvicorn may pass its formatters; ignored
    ) -> None:
        super().__init__(fmt, datefmt, style)

    def formatException(self, ei: Any) -> str:
        error = ei[1] if isinstance(ei, tuple) else None
        if isinstance(error, BaseException):
            return redacted_traceback(error)
        return "(exception withheld by the log policy)"

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # another handler's formatter may have cached the full text
        return super().format(record)


class RequestContextFilter(logging.Filter):
    """Puts the id of the request being handled (and the trace and span ids, when tracing is
    on) on every record that passes, whichever logger wrote it: an error, a warning of the
    database layer or uvicorn's "Exception in ASGI application" can be matched to the request
    line. Records written outside a request get none."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "request_id" not in fields:
            rid = REQUEST_ID.get()
            if rid is not None:
                fields["request_id"] = rid
        if "trace_id" not in fields:
            ids = TRACE_IDS.get()
            if ids is not None:
                fields["trace_id"], fields["span_id"] = ids
        return True


_second = (-1, "")  # the last formatted second: most records share it with the one before


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC to the millisecond: `2026-01-02T03:04:05.678Z`."""
    global _second
    whole = int(created)
    # to the microsecond first, as datetime does: 0.001 is 0.000999... as a float
    micro = round((created - whole) * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    second = _second  # read once: another thread may replace it meanwhile
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{micro // 1000:03d}Z"


class JsonFormatter(RedactingFormatter):
    """One JSON object per record, on one line (see the module's doc). Exceptions are
    redacted as by RedactingFormatter; a traceback another formatter cached (`exc_text`,
    which may hold the messages) is never used."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = fields.get(key)
            if value is not None:
                entry[key] = value
        if record.name == ACCESS_LOGGER:
            for key in ACCESS_FIELDS:
                if key in fields:
                    entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):  # e.g. a lone surrogate in a message
            return json.dumps(entry, default=str, ensure_ascii=True)


def uvicorn_log_config(level: str, format: str = "text") -> dict[str, Any]:
    """The logging configuration `serve` hands uvicorn (which applies it in every worker
    process; in json mode serve applies it to itself first, see configure): `format` `text`
    (one line) or `json` (JsonFormatter), RedactingFormatter's tracebacks on every handler,
    RequestContextFilter on it, the app's loggers and alembic's migration log at `level`, and
    uvicorn's access log (which prints the path and query string) silenced;
    app/api/request_log.py's "app.access" line replaces it."""
    if format not in FORMATS:
        raise ValueError(f"log format {format!r} is not one of {', '.join(FORMATS)}")
    if format == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"}
    else:
        formatter = {"()": f"{__name__}.RedactingFormatter", "fmt": FORMAT}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn expects these two names (it may set use_colors on them)
        "formatters": {"default": dict(formatter), "access": dict(formatter)},
        "filters": {"request_context": {"()": f"{__name__}.RequestContextFilter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_context"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "app": {"handlers": ["default"], "level": level, "propagate": False},
            # the schema upgrade at start-up ("Running upgrade a -> b"), not alembic's
            # other INFO lines (a "setup plugin" line per plugin in every process)
            "alembic": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "alembic.runtime.migration": {"level": level},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def configure(level: str, format: str = "text") -> None:
    """Applies uvicorn_log_config to this process: serve in json mode, before it migrates
    and starts uvicorn, so its own and alembic's records are JSON lines too. (In text mode
    serve keeps the command line's basicConfig for those, as before: tests run the CLI in
    their own process, whose logging this would change.)"""
    logging.config.dictConfig(uvicorn_log_config(level, format))
