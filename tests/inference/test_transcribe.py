"""Transcription: batching, bad files, chunked long-form, timestamps, outputs; real tiny.en on JFK."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.cli import main
from finetune.data.audio import load_audio
from finetune.inference.formats import Segment
from finetune.inference.transcribe import RunStats, TranscribeOptions, Transcriber, find_audio_files, group_words
from finetune.evaluation.metrics import utterance_wer
from tests.helpers import tone

JFK_TEXT = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")


@pytest.fixture(scope="module")
def short_whisper(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Whisper, stopped after a few tokens (random weights rarely say end-of-text)."""
    from transformers import GenerationConfig

    target = tmp_path_factory.mktemp("short-whisper")
    for path in tiny_whisper_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    generation = GenerationConfig.from_pretrained(target)
    generation.max_length = 12
    generation.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer Wav2Vec2ForCTC with a character tokenizer, saved as the CTC recipe saves one."""
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    target = tmp_path_factory.mktemp("tiny-ctc")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (target / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(target / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         return_attention_mask=True)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=len(vocab),
                            pad_token_id=0, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(target)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(target)
    return target


@pytest.fixture()
def clips(tmp_path: Path) -> dict[str, Path]:
    """Two readable files at odd rates/channels, one that is not audio, one 70-second recording."""
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(1.5, rate=8000), 8000)
    sf.write(folder / "b.flac", np.stack([tone(2.0, rate=22050)] * 2, axis=1), 22050)
    (folder / "broken.wav").write_bytes(b"RIFF not really audio")
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([tone(10.0, freq=200 + 50 * i) for i in range(7)]), 16000)
    return {"a": folder / "a.wav", "b": folder / "b.flac", "broken": folder / "broken.wav", "folder": folder,
            "long": long}


def test_bad_file_is_reported_in_order_and_the_batch_goes_on(short_whisper: Path, clips: dict) -> None:
    stats = RunStats()
    transcriber = Transcriber(short_whisper, TranscribeOptions(batch_size=2, progress=False))
    results = list(transcriber([clips["a"], clips["broken"], clips["b"]], stats))
    assert [r.source.name for r in results] == ["a.wav", "broken.wav", "b.flac"]
    assert results[1].transcript is None and "broken.wav" in results[1].error
    assert all(isinstance(r.transcript.text, str) for r in (results[0], results[2]))
    assert results[0].transcript.duration == pytest.approx(1.5, abs=1e-3)
    assert results[2].transcript.duration == pytest.approx(2.0, abs=1e-3)  # 22.05 kHz stereo -> 16 kHz mono
    assert (stats.files, stats.failed) == (2, 1)


def test_folders_are_searched_and_missing_paths_fail_early(clips: dict, tmp_path: Path) -> None:
    found = find_audio_files([clips["folder"], clips["a"]])
    assert [p.name for p in found] == ["a.wav", "b.flac", "broken.wav"]  # de-duplicated, sorted
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        find_audio_files([tmp_path / "nope.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        find_audio_files([tmp_path / "empty"])


def test_long_audio_is_cut_into_overlapping_windows(short_whisper: Path, clips: dict, capsys) -> None:
    options = TranscribeOptions(chunk_length_s=30, stride_length_s=5, batch_size=2, timestamps="segment",
                                progress=True)
    transcriber = Transcriber(short_whisper, options)
    stats = RunStats()
    [result] = list(transcriber([clips["long"]], stats))
    assert transcriber.windows(70 * 16000) == 3  # 0-30, 20-50, 40-70
    assert stats.chunks == 3
    assert "transcribing" in capsys.readouterr().err  # the progress bar counted windows
    for segment in result.transcript.segments:
        assert 0 <= segment.start <= segment.end <= 70.0


def test_sequential_long_form_batches_short_and_long_files(short_whisper: Path, clips: dict) -> None:
    """Whisper's own long-form loop (the default): a 70-s file batched with short ones keeps its order."""
    transcriber = Transcriber(short_whisper, TranscribeOptions(batch_size=3, timestamps="segment", progress=False))
    assert transcriber.long_form == "sequential"
    stats = RunStats()
    results = list(transcriber([clips["a"], clips["long"], clips["b"]], stats))
    assert [r.source.name for r in results] == ["a.wav", "long.wav", "b.flac"]
    assert [round(r.transcript.duration, 2) for r in results] == [1.5, 70.0, 2.0]
    assert stats.chunks >= 1 + 3 + 1  # the long file needs at least three 30-s encoder passes
    for result in results:
        assert all(0 <= s.start <= s.end <= result.transcript.duration for s in result.transcript.segments)


def test_clips_that_fit_one_window_skip_timestamp_decoding(short_whisper: Path, clips: dict) -> None:
    """Short clips without timestamps asked are decoded plainly; only the long file walks by timestamps."""
    transcriber = Transcriber(short_whisper, TranscribeOptions(batch_size=4, progress=False, num_beams=2))
    original, calls = transcriber.pipe, []

    class Spy:
        def __getattr__(self, name: str):
            return getattr(original, name)

        def __call__(self, inputs, **kwargs):
            calls.append(kwargs)
            return original(inputs, **kwargs)

    transcriber.pipe = Spy()
    results = list(transcriber([clips["a"], clips["b"], clips["long"]]))
    assert [r.source.name for r in results] == ["a.wav", "b.flac", "long.wav"] and all(r.transcript for r in results)
    assert [c.get("return_timestamps") for c in calls] == [None, True]
    # the short group's output is capped by its longest clip (2.0 s x 10 tokens/s + 10 + 4 prefix tokens)
    assert [c["generate_kwargs"] for c in calls] == [{"num_beams": 2, "max_length": 34}, {"num_beams": 2}]


def test_ctc_models_are_chunked_and_get_segments_from_word_times(tiny_ctc: Path, clips: dict, tmp_path: Path) -> None:
    sf.write(tmp_path / "25s.wav", tone(25.0), 16000)
    transcriber = Transcriber(tiny_ctc, TranscribeOptions(timestamps="segment", batch_size=4, progress=False))
    assert (transcriber.long_form, transcriber.chunk_length_s) == ("chunked", 20.0)
    stats = RunStats()
    results = list(transcriber([clips["a"], tmp_path / "25s.wav"], stats))
    assert stats.chunks == 1 + transcriber.windows(25 * 16000) == 3
    for result in results:
        transcript = result.transcript
        assert all(0 <= s.start <= s.end <= transcript.duration for s in transcript.segments)
        assert " ".join(s.text for s in transcript.segments) == transcript.text
    with pytest.raises(ValueError, match="sequential long-form decoding is for Whisper"):
        Transcriber(tiny_ctc, TranscribeOptions(long_form="sequential"))


def test_window_and_option_checks(short_whisper: Path) -> None:
    with pytest.raises(ValueError, match="longer than the model's 30-second window"):
        Transcriber(short_whisper, TranscribeOptions(chunk_length_s=40))
    with pytest.raises(ValueError, match="less than half"):
        Transcriber(short_whisper, TranscribeOptions(chunk_length_s=10, stride_length_s=5))
    with pytest.raises(ValueError, match="timestamps must be one of"):
        TranscribeOptions(timestamps="char")
    with pytest.raises(ValueError, match="long_form must be one of"):
        TranscribeOptions(long_form="parallel")
    with pytest.raises(ValueError, match="num_beams must be at least 1"):
        TranscribeOptions(num_beams=0)
    with pytest.raises(ValueError, match="max_tokens_per_second must be positive"):
        TranscribeOptions(max_tokens_per_second=0)
    assert Transcriber(short_whisper, TranscribeOptions(stride_length_s=2)).long_form == "chunked"


def test_int8_quantization_swaps_linear_layers_and_still_transcribes(short_whisper: Path, clips: dict) -> None:
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    with pytest.raises(ValueError, match="quantize must be one of"):
        TranscribeOptions(quantize="int4")
    transcriber = Transcriber(short_whisper, TranscribeOptions(quantize="int8", device="cpu"))
    layers = [m for m in transcriber.pipe.model.modules() if isinstance(m, DynamicInt8Linear)]
    assert layers and not any(isinstance(m, torch.nn.Linear) for m in transcriber.pipe.model.modules())
    results = list(transcriber([clips["a"]]))
    assert results[0].error is None and isinstance(results[0].transcript.text, str)


def test_word_timestamps_make_words_and_cues(short_whisper: Path, clips: dict) -> None:
    [result] = list(Transcriber(short_whisper, TranscribeOptions(timestamps="word", progress=False))([clips["b"]]))
    words = result.transcript.words
    assert words and all(0 <= w.start <= w.end <= 2.0 for w in words)
    assert " ".join(s.text for s in result.transcript.segments) == " ".join(w.text for w in words)


def test_group_words_breaks_at_pauses_and_sentence_ends() -> None:
    words = [Segment(0.0, 0.3, "Hello"), Segment(0.3, 0.6, "there."), Segment(0.7, 1.0, "How"),
             Segment(1.0, 1.2, "are"), Segment(2.5, 2.8, "you")]
    cues = group_words(words)
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 0.6, "Hello there."), (0.7, 1.2, "How are"),
                                                         (2.5, 2.8, "you")]


def test_cli_writes_every_format_and_exits_1_on_a_bad_file(short_whisper: Path, clips: dict, tmp_path: Path,
                                                           capsys) -> None:
    out = tmp_path / "out"
    code = main(["transcribe", "--model", str(short_whisper), str(clips["folder"]), "--output-dir", str(out),
                 "--format", "all", "--no-progress"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{ext}" for stem in ("a", "b") for ext in ("txt", "json", "srt", "vtt"))
    assert json.loads((out / "b.json").read_text())["duration"] == pytest.approx(2.0, abs=1e-3)
    assert (out / "a.vtt").read_text().startswith("WEBVTT")  # subtitles turned segment timestamps on
    err = capsys.readouterr().err
    assert "transcribed 2 file(s)" in err and "1 unreadable file(s) skipped" in err


@pytest.mark.slow
def test_real_tiny_en_transcribes_jfk_with_timestamps(shared_data: Path, tmp_path: Path, capsys) -> None:
    """The offline tiny.en on the 44.1 kHz stereo JFK clip: right words, sane SRT times."""
    jfk = shared_data / "jfk" / "test" / "jfk.flac"
    assert main(["transcribe", "--model", "offline:whisper-tiny.en", str(jfk), "--format", "srt",
                 "--output-dir", str(tmp_path), "--no-progress"]) == 0
    main(["transcribe", "--model", "offline:whisper-tiny.en", str(jfk), "--no-progress"])
    text = capsys.readouterr().out
    assert utterance_wer(text, JFK_TEXT) <= 0.1, text
    cues = (tmp_path / "jfk.srt").read_text().strip().split("\n\n")
    assert cues[0].startswith("1\n00:00:00,000 --> ")
    last_end = cues[-1].splitlines()[1].split(" --> ")[1]
    assert "00:00:08,000" <= last_end <= "00:00:11,000"


def test_real_tiny_en_int8_keeps_jfk_right(shared_data: Path, capsys) -> None:
    """int8 decoding must not cost the words: the same JFK check as float32."""
    jfk = shared_data / "jfk" / "test" / "jfk.flac"
    assert main(["transcribe", "--model", "offline:whisper-tiny.en", str(jfk), "--quantize", "int8",
                 "--device", "cpu", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert utterance_wer(text, JFK_TEXT) <= 0.1, text


@pytest.mark.slow
def test_real_tiny_en_long_form_covers_the_whole_recording(shared_data: Path, tmp_path: Path) -> None:
    """Five LibriSpeech clips and JFK joined into 47 s, decoded the default (sequential) way: every clip
    comes out once, in order, with segment times that follow the recording."""
    import csv

    rows = list(csv.DictReader((shared_data / "librispeech_sample" / "test" / "metadata.csv").open()))
    parts = [(shared_data / "librispeech_sample" / "test" / r["file_name"], r["transcript"]) for r in rows]
    parts.append((shared_data / "jfk" / "test" / "jfk.flac", JFK_TEXT))
    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([piece for path, _ in parts for piece in (load_audio(path, 16000), gap)])
    sf.write(tmp_path / "joined.flac", audio, 16000)
    stats = RunStats()
    options = TranscribeOptions(batch_size=2, progress=False, timestamps="segment")
    [result] = list(Transcriber("offline:whisper-tiny.en", options)([tmp_path / "joined.flac"], stats))
    assert stats.chunks >= 2
    reference = " ".join(text for _, text in parts)
    assert utterance_wer(result.transcript.text, reference) <= 0.1, result.transcript.text
    assert result.transcript.text.lower().startswith("he hoped there would be stew")
    assert result.transcript.text.rstrip(".").lower().endswith("for your country")
    starts = [s.start for s in result.transcript.segments]
    assert starts == sorted(starts) and result.transcript.segments[-1].end <= 46.9
