"""Log lines as text or as JSON objects, one per line (`GATEWAY_LOG_FORMAT`).

A JSON line carries `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`,
the access fields a record brings (`request_id`, `method`, `route`, `status`,
`duration_ms`, `user_id`, `cache`, see `rest.observability`) and `exc` for a traceback.
Text lines add the request id and user to an access line's message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TextIO

import msgspec

__all__ = [
    "ACCESS_FIELDS",
    "BufferedStreamHandler",
    "JsonFormatter",
    "TextFormatter",
    "flush_logs",
    "lean_records",
]

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
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """logging's default time, its seconds part formatted once per second."""
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record, datefmt)[:-4]
        return f"{self._stamp},{int(record.msecs):03d}"

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


def flush_logs() -> None:
    """Write out what the root logger's handlers hold (see `BufferedStreamHandler`)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes its lines in batches: one write (and flush) per
    `delay` seconds, per `max_bytes` of lines, and at once for a warning or worse.

    An access line per request would otherwise cost a system call per request. A line
    waits at most `delay` (a timer on the running event loop; with no loop running,
    every line is written at once), and `close` writes what is left.
    """

    def __init__(self, stream: TextIO, *, delay: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__(stream)
        self._delay = delay
        self._max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self._max_bytes:
            self._write()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write()
            else:
                self._timer = loop.call_later(self._delay, self.flush)

    def flush(self) -> None:
        with self.lock if self.lock is not None else _NO_LOCK:
            self._write()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self._size = 0
            try:
                self.stream.write(text)
            except (OSError, ValueError):  # a closed stream at exit: nothing to do
                return
        super().flush()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_LOCK = _NoLock()
