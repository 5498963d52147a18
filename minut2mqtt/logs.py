"""Logging for the daemon: plain lines for people, or one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"}`, plus `exception` with the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLineFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # requests-oauthlib logs token requests and answers, secrets included, at DEBUG: never on.
    for leaky in ("requests_oauthlib", "oauthlib"):
        logging.getLogger(leaky).setLevel(logging.WARNING)
    if level != "DEBUG":
        for noisy in ("waitress", "urllib3", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # amqtt logs port probes and clients vanishing mid-handshake as errors: demo noise.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
