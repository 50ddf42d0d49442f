"""Confidence figures in transcripts: what decoding itself computed, the detected language, and JSON that
carries them (and only for Whisper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.inference.formats import Segment, Transcript, to_json
from finetune.inference.scores import compression_ratio
from finetune.inference.transcribe import TranscribeOptions, Transcriber
from tests.helpers import tone
from tests.inference.test_transcribe import short_whisper, tiny_ctc  # noqa: F401  (fixtures)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    sf.write(tmp_path / "clip.wav", tone(1.5), 16000)
    return tmp_path / "clip.wav"


def test_compression_ratio_flags_repetition() -> None:
    assert compression_ratio("") == 0.0
    plain = compression_ratio("ask not what your country can do for you")
    looped = compression_ratio("I'm going to do it. " * 8)
    assert plain < 1.5
    assert looped > 2.4  # openai-whisper's failure threshold


def test_word_probabilities_are_what_greedy_decoding_computed(short_whisper: Path, clip: Path) -> None:  # noqa: F811
    """Teacher-forcing the decoded text reproduces the probabilities generate() drew each token with."""
    transcriber = Transcriber(short_whisper, TranscribeOptions(progress=False, num_beams=1, scores=True))
    [result] = transcriber([clip])
    transcript = result.transcript
    pipe = transcriber.pipe
    features = pipe.feature_extractor(sf.read(clip)[0].astype(np.float32), sampling_rate=16000,
                                      return_tensors="pt").input_features
    same = transcriber._call_kwargs(one_window_s=1.5)["generate_kwargs"]  # as the transcriber decoded it
    out = pipe.model.generate(features, **same, return_dict_in_generate=True, output_scores=True)
    generated = out.sequences[0, -len(out.scores):].tolist()
    probabilities = [float(step[0].float().softmax(-1)[token]) for step, token in zip(out.scores, generated)]
    text_tokens = [(t, p) for t, p in zip(generated, probabilities) if t < pipe.tokenizer.eos_token_id]
    assert pipe.tokenizer.decode([t for t, _ in text_tokens]).strip() == transcript.text
    if pipe.tokenizer.encode(" " + transcript.text, add_special_tokens=False) != [t for t, _ in text_tokens]:
        pytest.skip("the random model's text does not re-tokenize to the same ids")
    words: list[list[float]] = []
    for token, probability in text_tokens:
        if not words or pipe.tokenizer.decode([token]).startswith(" "):
            words.append([])
        words[-1].append(probability)
    expected = [sum(w) / len(w) for w in words]
    got = [p for _, p in transcript.scores.words]
    assert len(got) == len(expected) >= 1
    assert np.allclose(got, expected, atol=2e-3), (got, expected)
    assert transcript.language == "en" and transcript.language_probability is None  # English-only: not detected
    assert transcript.scores.avg_logprob <= 0.0 and 0.0 <= transcript.scores.no_speech_prob <= 1.0


def test_json_output_carries_language_and_scores_per_file_and_segment(short_whisper: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    from finetune.cli import main

    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([tone(20.0, freq=200), tone(20.0, freq=300)]), 16000)
    assert main(["transcribe", "--model", str(short_whisper), str(long), "--output-dir", str(tmp_path / "out"),
                 "--format", "json,txt", "--timestamps", "segment", "--num-beams", "1"]) == 0
    data = json.loads((tmp_path / "out" / "long.json").read_text())
    assert data["language"] == "en" and data["language_probability"] is None
    assert data["avg_logprob"] <= 0.0 and 0.0 <= data["no_speech_prob"] <= 1.0 and data["compression_ratio"] >= 0
    assert all(0.0 <= w["probability"] <= 1.0 for w in data["word_probabilities"])
    for segment in data["segments"]:
        assert {"avg_logprob", "no_speech_prob", "compression_ratio"} <= segment.keys()
    assert (tmp_path / "out" / "long.txt").read_text().strip() == data["text"]


def test_ctc_json_has_no_whisper_scores(tiny_ctc: Path, clip: Path) -> None:  # noqa: F811
    [result] = Transcriber(tiny_ctc, TranscribeOptions(progress=False, scores=True))([clip])
    data = result.transcript.to_dict()
    assert result.error is None and "avg_logprob" not in data and "language" not in data


def test_segments_share_the_scores_of_the_window_they_were_decoded_in() -> None:
    from finetune.inference.scores import TranscriptScorer

    scorer = TranscriptScorer.__new__(TranscriptScorer)
    scorer.rate, scorer.window_samples = 16000, 30 * 16000
    transcript = Transcript("x.wav", "a b c", 70.0)
    segments = [Segment(0.0, 12.0, "a"), Segment(12.0, 29.0, "b"), Segment(29.0, 50.0, "c"), Segment(50, 70, "d")]
    windows = scorer._windows(transcript, segments)
    assert [(w.start, w.end, w.text) for w in windows] == [(0.0, 29.0, "a b"), (29.0, 50.0, "c"), (50, 70, "d")]
    short = Transcript("y.wav", "hello", 3.0)
    assert [(w.start, w.end, w.text) for w in scorer._windows(short, [])] == [(0.0, 3.0, "hello")]
    assert "avg_logprob" not in to_json(short)


@pytest.mark.slow
def test_real_tiny_en_scores_speech_and_silence_apart(shared_data: Path, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4 * 16000, np.float32), 16000)
    jfk = shared_data / "jfk" / "test" / "jfk.flac"
    transcriber = Transcriber("offline:whisper-tiny.en", TranscribeOptions(progress=False, scores=True))
    speech, silence = (r.transcript for r in transcriber([jfk, silent]))
    assert speech.scores.no_speech_prob < 0.2
    assert silence.scores.no_speech_prob > 0.6
    assert speech.scores.avg_logprob > -0.5
    assert speech.scores.compression_ratio < 2.4
    words = dict(speech.scores.words)
    assert min(words["country"], words["Americans"]) > 0.8, words


def test_detected_language_with_the_real_multilingual_vocabulary(tiny_multilingual_dir: Path, clip: Path) -> None:
    """The same on a Whisper with OpenAI's 99-language vocabulary: the JSON's language is generate's."""
    import torch

    transcriber = Transcriber(tiny_multilingual_dir, TranscribeOptions(progress=False, num_beams=1, scores=True))
    [result] = transcriber([clip])
    features = transcriber.pipe.feature_extractor(sf.read(clip)[0].astype(np.float32), sampling_rate=16000,
                                                  return_tensors="pt").input_features
    with torch.inference_mode():
        detected = transcriber.pipe.model.detect_language(features)
    assert f"<|{result.transcript.language}|>" == transcriber.pipe.tokenizer.convert_ids_to_tokens(int(detected[0]))
    assert 1 / 99 <= result.transcript.language_probability <= 1.0
    told = Transcriber(tiny_multilingual_dir, TranscribeOptions(progress=False, num_beams=1, scores=True,
                                                                language="de"))
    [given] = told([clip])
    assert (given.transcript.language, given.transcript.language_probability) == ("de", None)  # given, not detected
