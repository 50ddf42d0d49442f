"""Export a fine-tuned transformers Whisper to CTranslate2, the format faster-whisper serves.

Why: faster-whisper (CTranslate2) decodes several times faster than transformers on CPU and is what many
deployments run. The conversion itself is CTranslate2's own ``TransformersConverter``; this module adds
what a served model also needs beside ``model.bin`` (``tokenizer.json`` and a ``preprocessor_config.json``
carrying the feature extractor's settings), an atomic write, and a round-trip check: the same log-mel
features decoded greedily by transformers and by CTranslate2 must give the same tokens, and
faster-whisper's ``transcribe`` is run beside it and scored against transformers' text.

One limit: faster-whisper pads every window to 30 s, so a model fine-tuned with a shorter
``encoder_context_seconds`` exports and runs in CTranslate2 but not through faster-whisper's
``transcribe``; the export warns and the check says so.

A model trained or tuned for dynamic encoder context (:mod:`finetune.models.dynamic_context`) keeps
all 1,500 positions, so it exports as a stock Whisper and faster-whisper serves it unchanged at 30 s.
The export copies its marker (:data:`~finetune.models.dynamic_context.CONFIG_KEY`, the same key and value
as in the transformers ``config.json``) into the CTranslate2 folder's own ``config.json``, which
CTranslate2 and faster-whisper load and ignore unknown keys of; it travels with the folder, and
:class:`finetune.inference.ct2_decode.CT2Transcriber` reads it to decode at the batch's trimmed length,
which CTranslate2's own API accepts. For such a model the round-trip check also compares the tokens at
trimmed length (transformers with dynamic context enabled against CTranslate2, on the same features).

``ctranslate2`` and ``faster-whisper`` are optional dependencies; without them these functions raise
:class:`MissingDependencyError` (a ``ModuleNotFoundError``) saying what to install.

Example::

    out = export_ct2(Path("outputs/whisper-fsdd"), Path("outputs/whisper-fsdd-ct2"))
    report = check_round_trip(Path("outputs/whisper-fsdd"), out, [Path("clip.wav")])
    assert report.identical, report.describe()
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from finetune.data.audio import load_audio
from finetune.evaluation.metrics import utterance_wer
from finetune.models.dynamic_context import (
    CONFIG_KEY,
    disable_dynamic_context,
    enable_dynamic_context,
    padded_samples,
    trained_step_seconds,
)
from finetune.outputs import staged_directory, write_json

# faster-whisper's transcribe pads/trims every window to 3000 frames (its pad_or_trim default), so it can
# only serve models with the full 30-second encoder context; CTranslate2 itself runs shorter contexts.
FASTER_WHISPER_WINDOW_S = 30
logger = logging.getLogger(__name__)
PREPROCESSOR_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft")
QUANTIZATIONS = ("int8", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


class MissingDependencyError(ModuleNotFoundError, ValueError):
    """An optional package is not installed; the message says which and how to install it."""


def require_optional(module: str, why: str):
    try:
        return __import__(module)
    except ImportError as error:
        package = module.replace("_", "-")
        raise MissingDependencyError(
            f"{why} needs the optional package {package!r}: pip install {package}", name=module
        ) from error


def export_ct2(model_dir: Path, output_dir: Path, *, quantization: str | None = None, force: bool = False) -> Path:
    """Convert ``model_dir`` (a saved WhisperForConditionalGeneration) to a CTranslate2 folder; return it.

    ``quantization`` None keeps the saved weight type (float32 after fine-tuning); ``float16`` halves the
    size for GPU serving, ``int8`` quarters it for CPU. The folder is built beside ``output_dir`` and
    renamed into place when complete; an existing ``output_dir`` is refused unless ``force``.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    _check_whisper_dir(model_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if output_dir.exists() and not force:
        raise FileExistsError(f"{output_dir} already exists; choose a new folder or pass force=True")
    require_optional("ctranslate2", "exporting to CTranslate2")
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperFeatureExtractor

    with staged_directory(output_dir, replace=True) as staging:
        converter = TransformersConverter(str(model_dir), copy_files=["tokenizer.json"])
        converter.convert(str(staging), quantization=quantization, force=True)
        extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
        preprocessor = {key: getattr(extractor, key) for key in PREPROCESSOR_KEYS}
        if extractor.chunk_length != FASTER_WHISPER_WINDOW_S:
            logger.warning("%s has a %s-second encoder context: CTranslate2 runs it, but faster-whisper's transcribe "
                           "pads every window to %d s and will refuse it", model_dir, extractor.chunk_length,
                           FASTER_WHISPER_WINDOW_S)
        write_json(staging / "preprocessor_config.json", preprocessor)
        step = _marked_step_seconds(model_dir / "config.json")
        if step is not None:
            ct2_config_path = staging / "config.json"  # CTranslate2 writes one for Whisper; keep its keys
            ct2_config = json.loads(ct2_config_path.read_text(encoding="utf-8")) if ct2_config_path.is_file() else {}
            write_json(ct2_config_path, {**ct2_config, CONFIG_KEY: {"step_seconds": step}})
    return output_dir


def _marked_step_seconds(config_path: Path) -> float | None:
    """The dynamic-context step a config.json (transformers' or CTranslate2's) records, or None."""
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return trained_step_seconds(SimpleNamespace(**{CONFIG_KEY: config.get(CONFIG_KEY)}))


def exported_step_seconds(ct2_dir: Path) -> float | None:
    """The dynamic-context step an exported CTranslate2 folder is marked with, or None (decode at 30 s)."""
    return _marked_step_seconds(Path(ct2_dir) / "config.json")


def _check_whisper_dir(model_dir: Path) -> None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json, so this is not a saved model directory")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "whisper":
        raise ValueError(
            f"{model_dir}: CTranslate2 export here is for Whisper models (faster-whisper); "
            f"this one is {config.get('model_type')!r}"
        )
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir}: tokenizer.json missing; faster-whisper needs it beside the model")


@dataclass
class RoundTripItem:
    """One audio file decoded three ways: transformers, CTranslate2 (same features), faster-whisper."""

    source: str
    transformers_text: str
    ct2_text: str
    tokens_match: bool
    faster_whisper_text: str | None  # None: faster-whisper cannot run this model (see FASTER_WHISPER_WINDOW_S)
    faster_whisper_wer: float | None  # normalized WER of faster-whisper's text against transformers' text
    # dynamic-context models only (None otherwise): the same comparison on features trimmed to the clip
    dynamic_transformers_text: str | None = None
    dynamic_ct2_text: str | None = None
    dynamic_tokens_match: bool | None = None


@dataclass
class RoundTripReport:
    """``identical``: the exported weights decode to the very same tokens as the transformers model (for a
    dynamic-context model, at 30 s and at trimmed length).

    faster-whisper's own ``transcribe`` is reported beside it, not folded in: its log-mel front end pads
    the features of a short clip with zeros instead of padding the audio as transformers does, so a
    near-tie token (often punctuation) can differ even though the weights are the same.
    """

    items: list[RoundTripItem] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return bool(self.items) and all(item.tokens_match and item.dynamic_tokens_match is not False
                                        for item in self.items)

    @property
    def faster_whisper_wer(self) -> float | None:
        scores = [i.faster_whisper_wer for i in self.items if i.faster_whisper_wer is not None]
        return sum(scores) / len(scores) if scores else None

    def describe(self) -> str:
        lines = []
        for item in self.items:
            verdict = "same tokens" if item.tokens_match else "DIFFERENT TOKENS"
            served = (f"{item.faster_whisper_text!r} (WER vs transformers {item.faster_whisper_wer:.2%})"
                      if item.faster_whisper_text is not None else
                      f"not run (it pads every window to {FASTER_WHISPER_WINDOW_S} s; this encoder's context is "
                      "shorter)")
            lines.append(f"{verdict}: {item.source}\n  transformers:   {item.transformers_text!r}\n"
                         f"  ctranslate2:    {item.ct2_text!r}\n  faster-whisper: {served}")
            if item.dynamic_tokens_match is not None:
                verdict = "same tokens" if item.dynamic_tokens_match else "DIFFERENT TOKENS"
                lines.append(f"  at dynamic context ({verdict}):\n"
                             f"    transformers: {item.dynamic_transformers_text!r}\n"
                             f"    ctranslate2:  {item.dynamic_ct2_text!r}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"identical": self.identical, "faster_whisper_wer": self.faster_whisper_wer,
                "items": [dict(item.__dict__) for item in self.items]}


def check_round_trip(model_dir: Path, ct2_dir: Path, audio_files: Sequence[Path], *,
                     max_new_tokens: int = 128) -> RoundTripReport:
    """Greedy-decode each file with transformers and with the exported model; compare.

    Two comparisons, each catching a different failure: CTranslate2 fed transformers' own log-mel
    features must produce the same token ids (checks the weights and vocabulary), and faster-whisper's
    full ``transcribe`` must produce the same text (checks what a server would return, with its own
    feature extraction and the copied tokenizer/preprocessor files). A model marked as trained for
    dynamic context is also decoded both ways on features padded only to the clip rounded up to its step
    (transformers with :func:`~finetune.models.dynamic_context.enable_dynamic_context`), as
    :class:`~finetune.inference.ct2_decode.CT2Transcriber` serves it.
    """
    require_optional("ctranslate2", "the CTranslate2 round-trip check")
    require_optional("faster_whisper", "the faster-whisper round-trip check")
    import ctranslate2
    import torch
    from faster_whisper import WhisperModel
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    rate = processor.feature_extractor.sampling_rate
    ct2_model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    full_window = processor.feature_extractor.chunk_length == FASTER_WHISPER_WINDOW_S
    served = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32") if full_window else None
    last_text_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # transformers forbids timestamp tokens after <|notimestamps|>; CTranslate2 leaves that to the caller
    # (and drops them from its results), so give it the same rule or the two decode differently
    generation = model.generation_config
    suppress = sorted({*(generation.suppress_tokens or []),
                       *range(generation.no_timestamps_token_id + 1, model.config.vocab_size)})
    step = trained_step_seconds(model.config)
    extractor = processor.feature_extractor

    def greedy(features, options: dict, prompt: list[int]) -> tuple[list[int], list[int]]:
        """Token ids (text only) from transformers and from CTranslate2 for the same features."""
        with torch.inference_mode():
            generated = model.generate(features, max_new_tokens=max_new_tokens, return_timestamps=False, **options)
        result = ct2_model.generate(
            ctranslate2.StorageView.from_array(features.numpy()), [prompt], beam_size=1,
            max_length=ct2_max_length(len(prompt) + max_new_tokens), suppress_blank=True, suppress_tokens=suppress,
        )[0]
        return ([t for t in generated[0].tolist() if t < last_text_id],
                [t for t in result.sequences_ids[0] if t < last_text_id][:max_new_tokens])

    report = RoundTripReport()
    for path in audio_files:
        audio = load_audio(path, rate)
        features = extractor(audio, sampling_rate=rate, return_tensors="pt").input_features
        language = _language_code(model, features)
        prompt = _prompt_tokens(model, language)
        options = {} if _english_only(model) else {"language": language}
        hf_ids, ct2_ids = greedy(features, options, prompt)
        hf_text = tokenizer.decode(hf_ids).strip()
        served_text, served_wer = None, None
        if served is not None:
            segments, _ = served.transcribe(
                audio, beam_size=1, temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
                max_new_tokens=max_new_tokens, vad_filter=False, language=language,
            )
            served_text = " ".join(s.text.strip() for s in segments)
            served_wer = utterance_wer(served_text, hf_text) if hf_text else float(bool(served_text))
        item = RoundTripItem(
            source=str(path),
            transformers_text=hf_text,
            ct2_text=tokenizer.decode(ct2_ids).strip(),
            tokens_match=hf_ids == ct2_ids,
            faster_whisper_text=served_text,
            faster_whisper_wer=served_wer,
        )
        if step is not None:
            samples = padded_samples(len(audio), step, rate, extractor.n_samples)
            trimmed = extractor(audio, sampling_rate=rate, padding="max_length", max_length=samples,
                                return_tensors="pt").input_features
            enable_dynamic_context(model, step)
            try:
                hf_ids, ct2_ids = greedy(trimmed, options, prompt)
            finally:
                disable_dynamic_context(model)
            item.dynamic_transformers_text = tokenizer.decode(hf_ids).strip()
            item.dynamic_ct2_text = tokenizer.decode(ct2_ids).strip()
            item.dynamic_tokens_match = hf_ids == ct2_ids
        report.items.append(item)
    return report


def ct2_max_length(tokens: int) -> int:
    """CTranslate2 4.x's Whisper ``generate`` stops after ``max_length // 2`` tokens (measured: 6 -> 3,
    14 -> 7, 40 -> 20), so ask for twice as many and cut the result; greedy decoding is prefix-stable.
    Its decoder positions still end at 448, so the prompt plus ``tokens`` must fit in 448 or it raises."""
    return min(2 * tokens, 2 * 448)


def _english_only(model) -> bool:
    return not bool(getattr(model.generation_config, "is_multilingual", False))


def _language_code(model, features) -> str | None:
    """``en`` for English-only models; the configured language, else the one transformers detects."""
    if _english_only(model):
        return "en"
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    generation = model.generation_config
    language = (getattr(generation, "language", None) or "").strip("<|>").lower()
    if not language:
        import torch

        with torch.inference_mode():
            token_id = int(model.detect_language(features)[0])
        id_to_lang = {v: k for k, v in generation.lang_to_id.items()}
        return id_to_lang[token_id].strip("<|>")
    return TO_LANGUAGE_CODE.get(language, language)


def _prompt_tokens(model, language: str | None) -> list[int]:
    """The decoder prefix transformers' generate uses: <|startoftranscript|> [language task] <|notimestamps|>."""
    generation = model.generation_config
    prompt = [generation.decoder_start_token_id]
    if not _english_only(model):
        task = getattr(generation, "task", None) or "transcribe"
        prompt += [generation.lang_to_id[f"<|{language}|>"], generation.task_to_id[task]]
    prompt.append(generation.no_timestamps_token_id)
    return prompt
