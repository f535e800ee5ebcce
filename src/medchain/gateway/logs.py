"""Logs an operator can ship and search: one JSON object a line (or plain text), a
request id on every line of an HTTP request, an access line per request, and a
redaction filter as the last line of defence against secrets.

What is logged is chosen where it is logged: block commits (height, txs, app hash
prefix), refusals (code, contract, action), exchanges (session and record ids, the
pseudonymous DIDs the audit trail already holds). Never payloads, record content,
keys, passphrases, tokens, signatures or request bodies. The filter here catches
what slips through anyway: bearer tokens, PEM private keys, `passphrase=...`-style
pairs and 64-hex runs (the size of an SM2 private key; hashes of that size in free
text are masked too, so structured fields carry hash prefixes instead).

Layer: gateway (standard library only), so the edge, node, CLI and demo may use it;
the layers below log through the standard `logging` module and get the same format.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_FORMAT = "text"
DEFAULT_LEVEL = "info"

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID = 64
# A client's id is kept only if it is short and cannot forge a log line or a field.
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
request_id: ContextVar[str] = ContextVar("medchain_request_id", default="")

access_log = logging.getLogger("medchain.access")

# Attributes every LogRecord has: anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
}

REDACTED = "[redacted]"
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (
        re.compile(
            r"(?i)\b((?:passphrase|password|passwd|secret|client_secret|access_token|"
            r"refresh_token|id_token|token|private_key|api_key|authorization)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])"), REDACTED),
)


# One pass that every pattern above needs to match first: most lines skip the rest.
_SUSPECT = re.compile(
    r"(?i)private key-----|bearer|pass|secret|token|private_key|api_key|authorization|"
    r"[0-9a-f]{64}"
)


def redact(text: str) -> str:
    """`text` with anything that looks like a secret replaced by "[redacted]"."""
    if not _SUSPECT.search(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, string extras and exception text through `redact`
    before any handler formats it. It sits on the handlers, so records of every
    logger (uvicorn's, libraries') pass it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class QuietRootLogger(logging.Filter):
    """Drops what libraries log on the root logger itself below warning (the EPCIS hash
    library logs every event it hashes at info); medchain logs on named loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a record unless it is a root-logger record below warning."""
        return record.name != "root" or record.levelno >= logging.WARNING


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the request id
    when the line belongs to an HTTP request, the record's `extra=` fields, and the
    exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (non-JSON extras as their str())."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        line.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message key=value ...` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The base line, with the request id and the `extra=` fields added."""
        base = super().formatMessage(record)
        rid = request_id.get()
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        return " ".join(p for p in (base, f"[{rid}]" if rid else "", fields) if p)


def configure_logging(
    fmt: str = DEFAULT_FORMAT, level: str = DEFAULT_LEVEL, stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's records at `level` and above to `stream` (stderr) as `fmt`
    (json | text), through the redaction filter (debug: medchain's loggers only);
    replaces the root logger's handlers, so calling it again reconfigures rather than
    duplicates. ValueError on an unknown format or level."""
    fmt, level = fmt.lower(), level.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (one of: {', '.join(FORMATS)})")
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of: {', '.join(LEVELS)})")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(QuietRootLogger())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # debug is for medchain's own loggers: libraries stay at info (one logs whole EPCIS
    # documents at debug, another every byte of its HTTP traffic).
    logging.getLogger("medchain").setLevel(level.upper())
    root.setLevel(max(logging.INFO, logging.getLevelName(level.upper())))
    # httpx and httpcore log every client request's full URL (query included) at INFO
    # and its traffic at DEBUG: the server's access line is the record of a request.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # ours, not uvicorn's own
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(logging.NOTSET)
        # RequestLog writes the access line: uvicorn's own (raw path and query) stays off
        uvicorn_logger.propagate = name != "uvicorn.access"
    return handler


def accept_request_id(value: bytes | None) -> str:
    """The client's X-Request-Id if well formed (1-64 of letters, digits and `._:-`,
    starting with a letter or digit), else a fresh random id: a client may tie its
    own logs to ours, but cannot forge a log line, a field or a flood of bytes."""
    if value is not None and len(value) <= MAX_REQUEST_ID:
        text = value.decode("latin-1")
        if _WELL_FORMED_ID.fullmatch(text):
            return text
    return secrets.token_hex(8)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestLog:
    """ASGI middleware (outermost): gives each HTTP request an id (the client's
    X-Request-Id if well formed), sets it for every log line of the request, echoes
    it in the response, and logs one access line: method, route template (never the
    raw path or query, which may carry ids a person is known by), status, duration."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request under its id, then log its access line."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [v for k, v in scope.get("headers", ()) if k == REQUEST_ID_HEADER]
        rid = accept_request_id(given[0] if len(given) == 1 else None)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0  # none sent yet
        logged = False

        def log_access() -> None:
            nonlocal logged
            logged = True
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            method = scope.get("method", "")
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k != REQUEST_ID_HEADER]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, rid.encode("ascii"))]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log_access()  # before the last byte goes out: the line exists once it is read
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not logged:  # the app failed or the client left before the answer ended
                status = status or 500
                log_access()
            request_id.reset(token)
