"""One transformers notice that no caller can act on, filtered where it is logged.

Whisper's own ``generate`` passes ``suppress_tokens`` and ``begin_suppress_tokens`` beside a
``generation_config`` (a workaround inside transformers), and the generic ``generate`` it calls then warns
that doing both is deprecated. The call is not ours or the user's, so the notice is dropped: that exact
message with exactly those two arguments, and nothing else from that logger.
"""

from __future__ import annotations

import logging

GENERATE_LOGGER = "transformers.generation.utils"
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
