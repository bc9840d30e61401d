"""Log lines as text or as JSON objects, one per line (`GATEWAY_LOG_FORMAT`).

A JSON line carries `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`,
the access fields a record brings (`request_id`, `method`, `route`, `status`,
`duration_ms`, `user_id`, `cache`, see `rest.observability`) and `exc` for a traceback.
Text lines add the request id and user to an access line's message.
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

__all__ = ["ACCESS_FIELDS", "JsonFormatter", "TextFormatter", "lean_records"]

ACCESS_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "user_id", "cache")
_encoder = msgspec.json.Encoder()


def lean_records() -> None:
    """Skip the thread, process and multiprocessing names every log record would look up:
    no format here shows them, and an access line per request pays for each."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        request_id = record.__dict__.get("request_id")
        if request_id is None:
            return line
        extras = [f"id={request_id}"]
        extras.extend(
            f"{name.removesuffix('_id')}={value}"
            for name in ("user_id", "cache")
            if (value := record.__dict__.get(name)) is not None
        )
        return f"{line} {' '.join(extras)}"
