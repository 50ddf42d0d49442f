"""OpenAI's multilingual Whisper vocabulary as a transformers tokenizer, built without the Hub.

The multilingual vocabulary ships inside the ``openai-whisper`` source distribution on PyPI as
``whisper/assets/multilingual.tiktoken`` (one ``base64-token rank`` line per byte-level BPE token).
From it :func:`build_multilingual_tokenizer` makes a ``WhisperTokenizerFast`` whose ids equal
OpenAI's: the 50257 BPE ranks, then ``<|endoftext|>``, ``<|startoftranscript|>``, one token per
language, the task and control tokens and 1501 timestamps. :func:`multilingual_generation_config`
gives what transformers' Whisper ``generate`` needs to run such a model as a multilingual one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperTokenizerFast

logger = logging.getLogger(__name__)

WHISPER_SDIST = "openai-whisper==20250625"
ASSET = "multilingual.tiktoken"
ASSET_IN_SDIST = f"whisper/assets/{ASSET}"
DEFAULT_NUM_LANGUAGES = 99  # the original multilingual models; large-v3 has 100 (adds <|yue|>)
NUM_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
TIME_PRECISION = 0.02
CACHE_FORMAT = 1  # bump when the cached tokenizer JSON is built differently

# Whisper's pre-tokenizer regex (GPT-2's): tokenizers' ByteLevel(use_regex=True) uses this same pattern
WHISPER_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# symbols OpenAI suppresses so a model does not write speaker tags or non-speech notes such as
# "♪♪♪", "( SPEAKING FOREIGN LANGUAGE )" or "[DAVID]"; basic punctuation stays allowed
_NON_SPEECH_SYMBOLS = [*'"#()*+/:;<=>@[\\]^_`{|}~「」『』', "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('",
                       '("', "((", "))", "(((", ")))", "[[", "]]", "{{", "}}", "♪♪", "♪♪♪"]
# musical symbols (U+2640..U+267F) whose first token is safe to suppress even when they take several
_MUSIC_SYMBOLS = "♩♪♫♬♭♮♯"


class WhisperVocabularyError(RuntimeError):
    """The multilingual Whisper vocabulary file could not be found or fetched."""


def default_cache_dir() -> Path:
    """``$FINETUNE_CACHE/whisper-vocabulary`` (default ``~/.cache/finetune/whisper-vocabulary``)."""
    from finetune.models.registry import cache_root

    return cache_root() / "whisper-vocabulary"


# --- finding the vocabulary file ---------------------------------------------------------------


def multilingual_tiktoken_path(cache_dir: Path | None = None, *, download: bool = True) -> Path:
    """The path of ``multilingual.tiktoken``: from an installed openai-whisper, else the cache, else
    fetched once from PyPI (the sdist) into the cache, so no Hub access is ever needed."""
    installed = _installed_asset()
    if installed is not None:
        return installed
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_dir / ASSET
    if cached.is_file():
        return cached
    if not download:
        raise WhisperVocabularyError(_missing_message(cached, "downloading was turned off"))
    return _download_asset(cached)


def _installed_asset() -> Path | None:
    """The asset of an importable ``whisper`` package, found without importing it (importing
    openai-whisper loads torch and numba); another package named ``whisper`` has no such file."""
    try:
        spec = importlib.util.find_spec("whisper")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "assets" / ASSET
        if candidate.is_file():
            return candidate
    return None


def _missing_message(expected: Path, why: str) -> str:
    return (f"The multilingual Whisper vocabulary ({ASSET}) is not available: {why}. It ships in the "
            f"openai-whisper source distribution: run `pip download openai-whisper --no-deps --no-binary :all:` "
            f"and copy {ASSET_IN_SDIST} from the .tar.gz to {expected}, or `pip install openai-whisper`.")


def _download_asset(target: Path) -> Path:
    """Fetch the openai-whisper sdist with pip (only PyPI is needed) and keep just the vocabulary."""
    with tempfile.TemporaryDirectory(prefix="whisper-sdist-") as folder:
        command = [sys.executable, "-m", "pip", "download", WHISPER_SDIST, "--no-deps",
                   "--no-binary", ":all:", "--disable-pip-version-check", "-d", folder]
        try:
            result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            raise WhisperVocabularyError(_missing_message(target, f"pip could not run ({error})")) from error
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise WhisperVocabularyError(_missing_message(
                target, f"`pip download {WHISPER_SDIST}` failed: {' | '.join(tail)}"))
        archives = sorted(Path(folder).glob("*.tar.gz"))
        if not archives:
            raise WhisperVocabularyError(_missing_message(target, "pip saved no .tar.gz source distribution"))
        data = _asset_from_sdist(archives[0], target)
    parse_tiktoken(data.decode("utf-8"))  # refuse a damaged file before it lands in the cache
    _write_atomic(target, data)
    return target


def _asset_from_sdist(archive: Path, target: Path) -> bytes:
    """The bytes of ``<top>/whisper/assets/multilingual.tiktoken`` in the sdist; nothing else is unpacked."""
    with tarfile.open(archive, "r:gz") as sdist:
        for member in sdist.getmembers():
            parts = member.name.split("/")
            if member.isfile() and "/".join(parts[1:]) == ASSET_IN_SDIST:
                handle = sdist.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise WhisperVocabularyError(_missing_message(target, f"{archive.name} holds no {ASSET_IN_SDIST}"))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is shared like pip's
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- from tiktoken ranks to a byte-level BPE -----------------------------------------------------


def parse_tiktoken(text: str) -> dict[bytes, int]:
    """``base64-token rank`` lines to ``{token bytes: rank}``; the ranks must be exactly 0..n-1 (the
    ids), so a truncated or edited file is refused rather than silently shifting every id after it."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"line {number} of the tiktoken file is not `base64-token rank`: {line!r}")
        ranks[base64.b64decode(fields[0])] = int(fields[1])
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("the tiktoken file's ranks are not 0..n-1 without gaps or repeats")
    return ranks


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The pair whose merge makes ``token``: run tiktoken's merging (lowest-ranked pair first) on
    the token's bytes with only lower ranks allowed; the two parts left are that pair."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, where = rank, -1
        for i in range(len(parts) - 1):
            merged = ranks.get(parts[i] + parts[i + 1])
            if merged is not None and merged < best:
                best, where = merged, i
        if where < 0:
            return None
        parts[where:where + 2] = [parts[where] + parts[where + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A ``tokenizers`` BPE vocabulary (id = rank) and merges in rank order.

    Each multi-byte token gets the one merge tiktoken would use last to make it, so a plain BPE
    (which transformers' WhisperTokenizer rebuilds on every load, without ``ignore_merges``) splits
    text exactly as tiktoken does."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()  # each byte as the printable character tokenizers' ByteLevel emits

    def spelled(token: bytes) -> str:
        return "".join(alphabet[byte] for byte in token)

    vocab = {spelled(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    unreachable = 0
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue  # single bytes are the alphabet; OpenAI's file also has one empty token
        pair = _last_merge(token, rank, ranks)
        if pair is None:
            unreachable += 1
            continue
        merges.append((spelled(pair[0]), spelled(pair[1])))
    if unreachable:
        logger.warning("%d tokens of the tiktoken file cannot be made by merges; BPE never emits them", unreachable)
    return vocab, merges


# --- the special tokens, in OpenAI's order -------------------------------------------------------


def language_codes(num_languages: int = DEFAULT_NUM_LANGUAGES) -> list[str]:
    """The first ``num_languages`` codes of Whisper's language order (99 originally, 100 for large-v3)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    if not 1 <= num_languages <= len(LANGUAGES):
        raise ValueError(f"num_languages must be between 1 and {len(LANGUAGES)}, got {num_languages}")
    return list(LANGUAGES)[:num_languages]


def special_tokens(num_languages: int = DEFAULT_NUM_LANGUAGES) -> list[str]:
    """The control tokens that follow the BPE ranks, ``<|endoftext|>`` first and ``<|notimestamps|>`` last."""
    return ["<|endoftext|>", "<|startoftranscript|>",
            *(f"<|{code}|>" for code in language_codes(num_languages)),
            "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
            "<|notimestamps|>"]


def timestamp_tokens() -> list[str]:
    """``<|0.00|>`` ... ``<|30.00|>``, 0.02 s apart: the ids right after ``<|notimestamps|>``."""
    return [f"<|{index * TIME_PRECISION:.2f}|>" for index in range(NUM_TIMESTAMPS)]


# --- the tokenizer ---------------------------------------------------------------------------------


def build_multilingual_tokenizer(target: Path | None = None, *, num_languages: int = DEFAULT_NUM_LANGUAGES,
                                 tiktoken_path: Path | None = None,
                                 cache_dir: Path | None = None) -> WhisperTokenizerFast:
    """A ``WhisperTokenizerFast`` with OpenAI's multilingual ids, saved to ``target`` when given.

    The vocabulary and merges are derived once per tiktoken file and kept as tokenizer JSON in the
    cache folder, so a second build skips the merge derivation; only they are read back, so one
    cached file serves every language count."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = Path(tiktoken_path) if tiktoken_path is not None else multilingual_tiktoken_path(cache_dir)
    data = source.read_bytes()
    cached = cache_dir / f"tokenizer-{hashlib.sha256(data).hexdigest()[:16]}-v{CACHE_FORMAT}.json"
    loaded = _read_cached_bpe(cached)
    if loaded is None:
        vocab, merges = bpe_vocab_and_merges(parse_tiktoken(data.decode("utf-8")))
    else:
        vocab, merges = loaded
    tokenizer = _assemble(vocab, merges, num_languages)
    if loaded is None:
        _write_cache(cached, tokenizer)
    if target is not None:
        tokenizer.save_pretrained(str(target))
    return tokenizer


def _assemble(vocab: dict[str, int], merges: list[tuple[str, str]], num_languages: int) -> WhisperTokenizerFast:
    """WhisperTokenizer adds the named and extra special tokens in order (ids 50257...), then the
    timestamps come as plain added tokens: transformers finds the first timestamp id as the last
    special id + 1, so they must stay out of the special-token list."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast

    endoftext, *extras = special_tokens(num_languages)
    tokenizer = WhisperTokenizerFast(vocab=vocab, merges=merges, unk_token=endoftext, bos_token=endoftext,
                                     eos_token=endoftext, pad_token=endoftext, extra_special_tokens=extras,
                                     add_prefix_space=False)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in timestamp_tokens()])
    _check_ids(tokenizer, len(vocab), num_languages)
    return tokenizer


def _check_ids(tokenizer: WhisperTokenizerFast, base: int, num_languages: int) -> None:
    """Every control and timestamp token must sit at OpenAI's id, or a checkpoint's logits mean other words."""
    expected = [*special_tokens(num_languages), *timestamp_tokens()]
    got = tokenizer.convert_tokens_to_ids(expected)
    wrong = [(token, id_, base + index) for index, (token, id_) in enumerate(zip(expected, got)) if id_ != base + index]
    if wrong or len(tokenizer) != base + len(expected):
        raise RuntimeError(f"Whisper special tokens landed on unexpected ids (token, got, expected): {wrong[:5]}; "
                           f"size {len(tokenizer)} instead of {base + len(expected)}")


def _read_cached_bpe(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]] | None:
    """The BPE vocabulary and merges of a cached tokenizer JSON; ``None`` when absent or unreadable."""
    try:
        model = json.loads(path.read_text(encoding="utf-8"))["model"]
        merges = [tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
        return dict(model["vocab"]), merges
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, tokenizer: WhisperTokenizerFast) -> None:
    """Keep the built tokenizer JSON; a cache that cannot be written only costs the next build time."""
    try:
        _write_atomic(path, tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    except OSError as error:
        logger.warning("could not cache the Whisper tokenizer at %s: %s", path, error)


# --- generation ------------------------------------------------------------------------------------


def non_speech_tokens(tokenizer) -> list[int]:
    """OpenAI's non-speech symbol tokens for this vocabulary: the first token of " -" and " '" (a hyphen
    or quote may join words but not begin one), and every listed symbol that is one token alone or
    after a space; the musical symbols' first token even when they take several."""
    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    result = {encode(" -")[0], encode(" '")[0]}
    for symbol in [*_NON_SPEECH_SYMBOLS, *_MUSIC_SYMBOLS]:
        for ids in (encode(symbol), encode(" " + symbol)):
            if len(ids) == 1 or symbol in _MUSIC_SYMBOLS:
                result.add(ids[0])
    return sorted(result)


def multilingual_generation_config(tokenizer, num_languages: int = DEFAULT_NUM_LANGUAGES) -> GenerationConfig:
    """What transformers' Whisper ``generate`` reads for a multilingual model: the language and task
    tokens (so ``language=``/``task=`` and language detection work), the start, end and timestamp
    ids, and OpenAI's suppressed tokens."""
    from transformers import GenerationConfig

    ids = _token_ids(tokenizer, ["<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                                 "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"])
    endoftext, start, translate, transcribe = (ids[name] for name in
                                               ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>",
                                                "<|transcribe|>"))
    languages = [f"<|{code}|>" for code in language_codes(num_languages)]
    control = [start, translate, transcribe, ids["<|startoflm|>"], ids["<|startofprev|>"], ids["<|nospeech|>"]]
    return GenerationConfig(
        is_multilingual=True,
        lang_to_id=_token_ids(tokenizer, languages),
        task_to_id={"translate": translate, "transcribe": transcribe},
        decoder_start_token_id=start,
        bos_token_id=endoftext,
        eos_token_id=endoftext,
        pad_token_id=endoftext,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        # OpenAI's decoder never generates the control tokens either (they only appear in prompts)
        suppress_tokens=sorted({*non_speech_tokens(tokenizer), *control}),
        begin_suppress_tokens=[*_token_ids(tokenizer, [" "], encode=True).values(), endoftext],
        max_initial_timestamp_index=50,
        max_length=448,
        forced_decoder_ids=None,
        return_timestamps=False,
    )


def _token_ids(tokenizer, texts: Iterable[str], *, encode: bool = False) -> dict[str, int]:
    """Each text's single id; a text that is not one token means the tokenizer is not Whisper's."""
    result: dict[str, int] = {}
    for text in texts:
        ids = (tokenizer.encode(text, add_special_tokens=False) if encode
               else [tokenizer.convert_tokens_to_ids(text)])
        if len(ids) != 1 or ids[0] is None or (ids[0] == tokenizer.unk_token_id and text != tokenizer.unk_token):
            raise ValueError(f"{text!r} is not a single token of this tokenizer: {ids}")
        result[text] = ids[0]
    return result


def save_random_multilingual_whisper(target: Path, *, d_model: int = 32, layers: int = 1, heads: int = 2,
                                     ffn_dim: int = 64, seed: int = 0, tiktoken_path: Path | None = None) -> Path:
    """A randomly initialised Whisper of the given size with OpenAI's multilingual vocabulary, its generation
    config and a 80-mel feature extractor, saved to ``target``: a multilingual checkpoint to train from
    scratch (or to test with) where openai/whisper-* cannot be downloaded."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    tokenizer = build_multilingual_tokenizer(tiktoken_path=tiktoken_path)
    generation = multilingual_generation_config(tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim, max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=generation.decoder_start_token_id, pad_token_id=generation.pad_token_id,
        bos_token_id=generation.bos_token_id, eos_token_id=generation.eos_token_id,
        begin_suppress_tokens=generation.begin_suppress_tokens,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation.alignment_heads = [[layers - 1, 0]]
    model.generation_config = generation
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target
