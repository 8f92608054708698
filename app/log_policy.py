"""The log policy: "Logs carry request id, method, route, status, duration, client id: never
resource content, names or query values that may be identifiers." The request line is
app/api/request_log.py's; this module holds what applies to every log record.

Exception messages may quote what a request carried (a database error quotes its SQL
parameters, a ValueError the text it could not read), so tracebacks are logged without them:
`redacted_traceback` for the app's own error logs, and RedactingFormatter, which `serve`
(app/cli.py, through `uvicorn_log_config`) puts on every handler, for tracebacks logged by
anything else (uvicorn's "Exception in ASGI application", the audit writer, exports).

Imports nothing of the app (app/cli.py may not import app.api)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """The logging configuration `serve` hands uvicorn (which applies it in every worker
    process): one line format, RedactingFormatter on every handler, the app's loggers at
    `level`, and uvicorn's access log (which prints the path and query string) silenced;
    app/api/request_log.py's "app.access" line replaces it."""
    formatter = {"()": f"{__name__}.RedactingFormatter", "fmt": FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn expects these two names (it may set use_colors on them)
        "formatters": {"default": dict(formatter), "access": dict(formatter)},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "app": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
