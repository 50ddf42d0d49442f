"""One check, at load time, that a model and its tokenizer belong together.

A model folder saved without its tokenizer files still loads a tokenizer: transformers builds one from
``tokenizer_config.json`` alone, holding the special tokens only. Every transcript then encodes to
nothing, training learns to emit nothing, and WER against empty references reads 0.00%. Every loader
(Whisper, CTC, text classifiers, sentence encoders, the inference pipelines) calls
:func:`check_tokenizer` right after loading, so such a folder fails with one clear message instead:

- the vocabulary sizes agree: no more tokens than the model has embeddings/outputs, and not a mere
  fraction of them (a byte-level BPE such as Whisper's needs all of its ~50k tokens);
- the special ids the model relies on exist (padding; end of text and the decoder start for an
  encoder-decoder; the CTC blank, which is the padding id);
- a short text survives ``encode`` then ``decode``. A tokenizer with a small word or character
  vocabulary that lacks the sample's words is tried on words of its own vocabulary instead, so a
  character CTC vocabulary built from the training transcripts passes; one with no text tokens at all
  does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SAMPLE_TEXT = "hello world 123"
# Files that hold a tokenizer's vocabulary (tokenizer_config.json alone holds none).
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model", "spm.model")
_OWN_WORDS = 3  # words of the tokenizer's own vocabulary tried when the sample text is unknown to it


class TokenizerMismatchError(ValueError):
    """A tokenizer that does not fit its model, or cannot encode text at all."""


def check_tokenizer(tokenizer: Any, config: Any, source: str | os.PathLike, *, sample: str = SAMPLE_TEXT) -> None:
    """Raise :class:`TokenizerMismatchError` when ``tokenizer`` cannot serve the model of ``config``.

    ``config``: the model's config (``None`` for a tokenizer checked on its own, such as a CTC
    tokenizer reused from another folder); ``source``: where both came from, named in the message.
    """
    problems = size_problems(tokenizer, config) + special_token_problems(tokenizer, config)
    if not problems:  # a tokenizer of special tokens only fails the size check already: say that alone
        problem = round_trip_problem(tokenizer, sample)
        if problem:
            problems.append(problem)
    if problems:
        raise TokenizerMismatchError(_message(source, problems))


def check_pipeline_tokenizer(pipe: Any, source: str | os.PathLike) -> None:
    """:func:`check_tokenizer` for a transformers pipeline's tokenizer and model."""
    if pipe.tokenizer is None:
        raise TokenizerMismatchError(_message(source, ["no tokenizer loads from it"]))
    check_tokenizer(pipe.tokenizer, pipe.model.config, source)


def size_problems(tokenizer: Any, config: Any) -> list[str]:
    """The tokenizer's size against the model's vocabulary (``config.vocab_size``).

    A CTC tokenizer counts its vocabulary file only: ``Wav2Vec2CTCTokenizer`` appends ``<s>``/``</s>``
    by default, which a CTC head never emits and labels never hold, so ids past the head are harmless.
    """
    tokens = tokenizer.vocab_size if _is_ctc(tokenizer, config) else len(tokenizer)
    vocab_size = getattr(config, "vocab_size", None) if config is not None else None
    if not vocab_size:
        return [] if tokens > len(_special_ids(tokenizer)) else [
            f"the tokenizer has {tokens} tokens, all of them special: it holds no vocabulary"]
    if tokens > vocab_size:
        return [f"the tokenizer has {tokens} tokens, the model only {vocab_size}: ids from {vocab_size} up would "
                "index past its embeddings"]
    if tokens < vocab_size // 2:
        return [f"the tokenizer has {tokens} tokens, the model {vocab_size}"]
    return []


def special_token_problems(tokenizer: Any, config: Any) -> list[str]:
    """Special ids the model relies on that the tokenizer lacks or numbers differently."""
    problems = []
    tokens = len(tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None:
        problems.append("the tokenizer has no padding token")
    elif pad >= tokens:
        problems.append(f"its padding id {pad} is not one of its {tokens} tokens")
    if config is None:
        return problems
    if _is_ctc(tokenizer, config) and pad is not None and config.pad_token_id not in (None, pad):
        problems.append(f"the model's CTC blank is id {config.pad_token_id}, the tokenizer's padding id {pad}")
    if getattr(config, "is_encoder_decoder", False):
        eos = tokenizer.eos_token_id
        if eos is None:
            problems.append("the tokenizer has no end-of-text token")
        elif config.eos_token_id is not None and eos != config.eos_token_id:
            problems.append(f"the tokenizer's end-of-text id is {eos}, the model's {config.eos_token_id}")
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None and (start >= tokens or tokenizer.convert_ids_to_tokens(start) is None):
            problems.append(f"the model's decoder start id {start} is not a token of the tokenizer")
    return problems


def round_trip_problem(tokenizer: Any, sample: str = SAMPLE_TEXT) -> str | None:
    """Why ``sample`` (or, when the tokenizer does not know its words, words of its own vocabulary)
    does not come back from ``decode(encode(text))``; None when it does."""
    decoded, unknown = _round_trip(tokenizer, sample)
    if _same(decoded, sample):
        return None
    if not unknown:
        return f"{sample!r} encodes and decodes to {decoded!r}"
    own = _own_words(tokenizer)
    if not own:
        return f"{sample!r} encodes to unknown tokens only, and the tokenizer has no words of its own to encode"
    decoded, _ = _round_trip(tokenizer, own)
    if _same(decoded, own):
        return None
    return f"{own!r} (words of its own vocabulary) encodes and decodes to {decoded!r}"


def vocabulary_files(folder: str | os.PathLike) -> list[str]:
    """The vocabulary files present in a local model folder."""
    path = Path(folder)
    return [name for name in VOCABULARY_FILES if (path / name).is_file()] if path.is_dir() else []


def missing_tokenizer_error(source: str | os.PathLike, error: Exception) -> TokenizerMismatchError:
    """The error for a tokenizer that did not load at all (transformers raises assorted types)."""
    return TokenizerMismatchError(_message(source, [f"its tokenizer does not load ({type(error).__name__}: {error})"]))


# --------------------------------------------------------------------------------------------------
# internals


def _message(source: str | os.PathLike, problems: list[str]) -> str:
    where = os.fspath(source)
    present = vocabulary_files(where)
    if Path(where).is_dir() and not present:
        head = f"{where}: no {' / '.join(VOCABULARY_FILES[:3])} (no vocabulary file): "
    else:
        head = f"{where}: the tokenizer does not fit the model: "
    return (head + "; ".join(problems) + ". Copy the tokenizer files (tokenizer.json, tokenizer_config.json, "
            "and vocab/merges files where the base model has them) from the base model into this folder, or "
            "save the processor beside the model (processor.save_pretrained)")


def _special_ids(tokenizer: Any) -> set[int]:
    return {i for i in getattr(tokenizer, "all_special_ids", []) if i is not None}


def _is_ctc(tokenizer: Any, config: Any) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith("ForCTC") for a in architectures) or type(tokenizer).__name__.startswith("Wav2Vec2CTC")


def _round_trip(tokenizer: Any, text: str) -> tuple[str, bool]:
    """(decoded text, whether encoding met unknown tokens)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    unknown = unk is not None and unk in ids
    kwargs = {"group_tokens": False} if _is_ctc(tokenizer, None) else {}  # CTC decoding merges repeats
    return str(tokenizer.decode(ids, skip_special_tokens=True, **kwargs)), unknown


def _own_words(tokenizer: Any) -> str:
    """A few plain tokens of the tokenizer's vocabulary (letters or digits only), lowest ids first."""
    special = set(getattr(tokenizer, "all_special_tokens", []))
    words = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if token not in special and token.isalnum():
            words.append(token)
            if len(words) == _OWN_WORDS:
                break
    return " ".join(words)


def _same(decoded: str, text: str) -> bool:
    return " ".join(decoded.split()).casefold() == " ".join(text.split()).casefold()
