"""Two transformers notices that no caller can act on, filtered where they are logged.

Whisper's own ``generate`` passes ``suppress_tokens`` and ``begin_suppress_tokens`` beside a
``generation_config`` (a workaround inside transformers), and the generic ``generate`` it calls then warns
that doing both is deprecated. The call is not ours or the user's, so the notice is dropped: that exact
message with exactly those two arguments, and nothing else from that logger.

When the last segment of a window has no end timestamp (silence, or speech cut at the window's end), the
Whisper tokenizer says so on every file. finetune's transcriber ends that segment at the next segment's start
or the file's end, so while it decodes (:func:`missing_end_timestamp_handled`) the notice is dropped; a
user's own ``pipeline()`` call, which returns ``None`` for that end, still gets it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

GENERATE_LOGGER = "transformers.generation.utils"
TOKENIZER_LOGGER = "transformers.models.whisper.tokenization_whisper"
MISSING_END = "Whisper did not predict an ending timestamp"
_WHISPER_INTERNAL_ARGUMENTS = ("suppress_tokens", "begin_suppress_tokens")


class WhisperSuppressTokensNotice(logging.Filter):
    """Drops the deprecation notice about Whisper generate's own suppress-token arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Passing `generation_config` together with generation-related arguments="):
            return True
        named = message.split("arguments=", 1)[1].split(")", 1)[0]
        other = named.replace("'suppress_tokens'", "").replace("'begin_suppress_tokens'", "").strip("({}), ")
        return bool(other)  # keep it when the caller passed anything else


def install() -> None:
    """Add the filter once (idempotent)."""
    logger = logging.getLogger(GENERATE_LOGGER)
    if not any(isinstance(f, WhisperSuppressTokensNotice) for f in logger.filters):
        logger.addFilter(WhisperSuppressTokensNotice())


class MissingEndTimestampNotice(logging.Filter):
    """Drops the tokenizer's notice that a window's last segment has no end timestamp."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(MISSING_END)


@contextmanager
def missing_end_timestamp_handled() -> Iterator[None]:
    """While the caller gives a segment without an end timestamp an end of its own."""
    logger = logging.getLogger(TOKENIZER_LOGGER)
    notice = MissingEndTimestampNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)
