"""Speed and noise augmentation: the options, each perturbation measured, the training-only marking,
seeding (main process and dataloader workers), the collators on perturbed clips, and a tiny real run."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from transformers import set_seed
from transformers.trainer_utils import seed_worker

from finetune import api
from finetune.config import ConfigError
from finetune.data import augmentation
from finetune.data.augmentation import (
    AUGMENT_COLUMN,
    AugmentationArguments,
    Augmenter,
    AugmentingCollator,
    build_augmenter,
    change_speed,
    generated_noise,
    mark_for_augmentation,
    mix_at_snr,
)

RATE = 16000


def _tone(seconds: float, freq: float = 440.0, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2)))


def _augmenter(max_seconds: float | None = None, **options) -> Augmenter:
    augmenter = build_augmenter(AugmentationArguments(**options), sampling_rate=RATE, max_seconds=max_seconds)
    assert augmenter is not None
    return augmenter


def _noise_dir(tmp_path: Path, freq: float = 1000.0, rate: int = 8000) -> Path:
    folder = tmp_path / "noise" / "street"  # searched recursively
    folder.mkdir(parents=True)
    sf.write(folder / "hum.wav", _tone(0.5, freq, rate=rate), rate)
    (folder / "notes.txt").write_text("not audio")
    return tmp_path / "noise"


# ---------------------------------------------------------------------------------------- the options


@pytest.mark.parametrize(("options", "message"), [
    ({"speed_perturbation": [90, 100, 110]}, "speed_perturbation factors must be between 0.5 and 2.0"),
    ({"speed_perturbation": ["fast"]}, "speed_perturbation must hold finite numbers, got 'fast'"),
    ({"speed_perturbation": [0.9, True]}, "speed_perturbation must hold finite numbers, got True"),
    ({"speed_perturbation": []}, "speed_perturbation must be a list of speed factors"),
    ({"speed_perturbation": 1.1}, "speed_perturbation must be a list of speed factors"),
    ({"noise_probability": 1.5}, "noise_probability must be between 0 and 1, got 1.5"),
    ({"noise_probability": "often"}, "noise_probability must hold finite numbers"),
    ({"noise_snr_db": [20, 5]}, r"noise_snr_db must be \[min, max\] with min <= max, got \[20, 5\]"),
    ({"noise_snr_db": [10]}, r"noise_snr_db must be \[min, max\] in dB"),
    ({"noise_snr_db": [0, float("inf")]}, "noise_snr_db must hold finite numbers"),
    ({"noise_color": "brown"}, "'noise_color' must be one of"),
])
def test_bad_options_are_refused_by_key(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentationArguments(**options)


def test_noise_dir_must_hold_audio_and_be_used(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="noise_dir .*missing.* is not a folder"):
        AugmentationArguments(noise_dir=str(tmp_path / "missing"), noise_probability=0.5)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="noise_dir .*empty.* holds no audio files"):
        AugmentationArguments(noise_dir=str(tmp_path / "empty"), noise_probability=0.5)
    with pytest.raises(ValueError, match="noise_probability is 0"):
        AugmentationArguments(noise_dir=str(_noise_dir(tmp_path)))


def _ctc_values(tmp_path: Path, **overrides) -> dict:
    return {"task": "asr_ctc", "model_config": str(tmp_path / "none.json"), "dataset_name": "sample:fsdd",
            "output_dir": str(tmp_path / "run"), "use_cpu": True, **overrides}


def test_config_keys_reach_every_audio_task_and_no_text_task(tmp_path: Path) -> None:
    _task, options, _ = api.load_config(_ctc_values(tmp_path), speed_perturbation="0.9,1.0,1.1")  # key=value form
    assert options[AugmentationArguments].speed_perturbation == [0.9, 1.0, 1.1]
    with pytest.raises(ConfigError, match="speed_perturbation factors must be between"):
        api.load_config(_ctc_values(tmp_path, speed_perturbation=[90, 110]))
    for name in ("asr_seq2seq", "asr_distill", "asr_ctc", "audio_classification"):
        assert "noise_probability" in {key for key, _, _ in api.list_keys(name)}, name
    for name in ("intent", "intent_few_shot"):
        assert "noise_probability" not in {key for key, _, _ in api.list_keys(name)}, name
    with pytest.raises(ConfigError, match="unknown key.*noise_probability"):
        api.load_config({"task": "intent", "model_name_or_path": "x", "dataset_name": "x",
                         "output_dir": str(tmp_path / "run"), "noise_probability": 0.5})


def test_defaults_perturb_nothing() -> None:
    assert build_augmenter(AugmentationArguments(), sampling_rate=RATE) is None
    assert build_augmenter(AugmentationArguments(speed_perturbation=[1.0]), sampling_rate=RATE) is None


# ---------------------------------------------------------------------------------------- the perturbations


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_factor_changes_length_and_pitch_by_the_factor(factor: float) -> None:
    clip = _tone(1.0, 440.0)
    faster = change_speed(clip, factor, RATE)
    assert faster.dtype == np.float32
    assert abs(len(faster) - len(clip) / factor) <= 1
    assert _peak_hz(faster) == pytest.approx(440.0 * factor, abs=2.0)  # tempo and pitch move together


def test_speed_is_drawn_from_the_factors_and_never_past_the_longest_input() -> None:
    augmenter = _augmenter(max_seconds=2.0, speed_perturbation=[0.9, 1.1])
    rng = np.random.default_rng(0)
    lengths = sorted({len(augmenter.perturb(_tone(1.0), rng)) for _ in range(20)})
    assert len(lengths) == 2
    assert abs(lengths[0] - RATE / 1.1) <= 1 and abs(lengths[1] - RATE / 0.9) <= 1
    # 1.9 s slowed by 0.9 would be 2.1 s, past the 2 s a model takes: only 1.1 is drawn for it
    assert {len(augmenter.perturb(_tone(1.9), rng)) for _ in range(10)} == {round(1.9 * RATE / 1.1)}


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_drawn_snr(color: str, snr_db: float) -> None:
    clip = _tone(1.0)
    augmenter = _augmenter(noise_probability=1.0, noise_snr_db=[snr_db, snr_db], noise_color=color)
    noisy = augmenter.perturb(clip, np.random.default_rng(1))
    assert len(noisy) == len(clip)
    assert _snr_db(clip, noisy) == pytest.approx(snr_db, abs=0.01)


def test_snr_is_drawn_within_the_range_and_probability_is_kept() -> None:
    clip = _tone(0.5)
    augmenter = _augmenter(noise_probability=0.5, noise_snr_db=[5, 15])
    rng = np.random.default_rng(2)
    outputs = [augmenter.perturb(clip, rng) for _ in range(200)]
    noisy = [out for out in outputs if not np.array_equal(out, clip)]
    assert 70 < len(noisy) < 130
    snrs = [_snr_db(clip, out) for out in noisy]
    assert 5 - 1e-3 <= min(snrs) < 7 and 13 < max(snrs) <= 15 + 1e-3


def test_silent_clips_get_no_noise() -> None:
    silence = np.zeros(RATE, dtype=np.float32)
    assert np.array_equal(mix_at_snr(silence, np.ones(RATE, dtype=np.float32), 10.0), silence)


def test_pink_noise_falls_with_frequency_and_white_noise_is_flat() -> None:
    def band_power(noise: np.ndarray, low: float, high: float) -> float:
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise), 1 / RATE)
        return float(power[(freqs >= low) & (freqs < high)].sum())

    pink = generated_noise(RATE * 2, "pink", np.random.default_rng(3))
    white = generated_noise(RATE * 2, "white", np.random.default_rng(3))
    # equal power per octave for pink; power grows with bandwidth for white
    assert band_power(pink, 100, 200) == pytest.approx(band_power(pink, 2000, 4000), rel=0.25)
    assert band_power(white, 2000, 4000) == pytest.approx(20 * band_power(white, 100, 200), rel=0.25)


def test_noise_comes_from_the_recordings_read_at_the_model_rate(tmp_path: Path) -> None:
    """An 8 kHz recording of a 1 kHz hum: the added noise is that hum at 16 kHz (2 kHz had it not been
    resampled), while generated noise has no such peak."""
    clip = _tone(1.0, 440.0)
    recorded = _augmenter(noise_probability=1.0, noise_snr_db=[0, 0], noise_dir=str(_noise_dir(tmp_path)))
    assert recorded.noise_files == (str(tmp_path / "noise" / "street" / "hum.wav"),)
    added = recorded.perturb(clip, np.random.default_rng(4)) - clip
    assert _peak_hz(added) == pytest.approx(1000.0, abs=2.0)
    generated = _augmenter(noise_probability=1.0, noise_snr_db=[0, 0]).perturb(clip, np.random.default_rng(4)) - clip
    power = np.abs(np.fft.rfft(generated)) ** 2
    assert power.max() < 0.01 * power.sum()


def test_an_unreadable_noise_recording_fails_before_training(tmp_path: Path) -> None:
    folder = _noise_dir(tmp_path)
    (folder / "broken.wav").write_bytes(b"RIFF not a wav")
    with pytest.raises(ValueError, match="broken.wav"):
        build_augmenter(AugmentationArguments(noise_probability=0.5, noise_dir=str(folder)), sampling_rate=RATE)


# ---------------------------------------------------------------------------------------- the training split


def _rows(count: int, marked: bool, seconds: float = 0.5) -> list[dict]:
    rows = [{"audio": _tone(seconds, 300.0 + 50 * i), "labels": [i]} for i in range(count)]
    return [{**row, AUGMENT_COLUMN: True} for row in rows] if marked else rows


def test_only_marked_training_rows_are_perturbed() -> None:
    import datasets

    train = mark_for_augmentation(datasets.Dataset.from_list(_rows(3, marked=False)))
    assert train[AUGMENT_COLUMN] == [True, True, True]
    seen: list[list[dict]] = []
    collator = AugmentingCollator(seen.append, _augmenter(speed_perturbation=[1.1], noise_probability=1.0))
    eval_rows = _rows(3, marked=False)
    collator(eval_rows)
    assert seen[-1] == eval_rows and all(a is b for a, b in zip(seen[-1], eval_rows))  # untouched, not copied
    collator([*_rows(2, marked=True), *eval_rows[:1]])
    out = seen[-1]
    assert all(AUGMENT_COLUMN not in row for row in out)  # the mark is not a model input
    assert [len(row["audio"]) for row in out] == [round(8000 / 1.1)] * 2 + [8000]
    assert out[2]["audio"] is eval_rows[0]["audio"] and out[0]["labels"] == [0]


def test_a_streamed_training_split_is_marked_lazily() -> None:
    import datasets

    stream = datasets.Dataset.from_list(_rows(2, marked=False)).to_iterable_dataset()
    assert [row[AUGMENT_COLUMN] for row in mark_for_augmentation(stream)] == [True, True]


def _batches(seed: int, draws: int = 2) -> list[list[np.ndarray]]:
    set_seed(seed)
    collator = AugmentingCollator(lambda rows: [row["audio"] for row in rows],
                                  _augmenter(speed_perturbation=[0.9, 1.0, 1.1], noise_probability=0.5))
    return [collator(_rows(4, marked=True)) for _ in range(draws)]


def _same(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> bool:
    return all(len(x) == len(y) and np.array_equal(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def test_the_trainer_seed_decides_the_draws() -> None:
    first, again, other = _batches(7), _batches(7), _batches(8)
    assert _same(first, again)
    assert not _same(first, other)
    assert not _same(first[:1], first[1:])  # the next epoch's draws of the same rows are new


class _SameClip(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return {"audio": _tone(0.25), AUGMENT_COLUMN: True}


def _worker_batches(seed: int) -> list[np.ndarray]:
    set_seed(seed)
    collator = AugmentingCollator(lambda rows: rows[0]["audio"], _augmenter(noise_probability=1.0))
    loader = torch.utils.data.DataLoader(_SameClip(), batch_size=1, num_workers=2, collate_fn=collator,
                                         worker_init_fn=partial(seed_worker, num_workers=2, rank=0))
    return [np.asarray(batch) for batch in loader]


def test_dataloader_workers_draw_their_own_seeded_perturbations() -> None:
    """As the Trainer loads data: each worker is seeded from the run's seed, so workers do not repeat each
    other's noise and a rerun repeats the whole sequence."""
    first = _worker_batches(5)
    assert not np.array_equal(first[0], first[1])  # worker 0's and worker 1's first batch
    assert _same([first], [_worker_batches(5)])
    assert not _same([first], [_worker_batches(6)])


def test_collators_pad_perturbed_clips_from_their_audio() -> None:
    """Whisper's dynamic context pads to the batch's longest perturbed clip (rounded up to the step), CTC
    to its longest; the duration column, read before perturbation, plays no part."""
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    from finetune.data.collators import CTCCollator, SpeechSeq2SeqCollator

    augmenter = _augmenter(max_seconds=2.0, speed_perturbation=[0.9])
    rows = [{"audio": _tone(1.0), "duration": 1.0, AUGMENT_COLUMN: True},
            {"audio": _tone(0.6), "duration": 0.6, AUGMENT_COLUMN: True}]
    whisper = SimpleNamespace(feature_extractor=WhisperFeatureExtractor(chunk_length=2))
    batch = AugmentingCollator(SpeechSeq2SeqCollator(whisper, 0, dynamic_step_seconds=0.5), augmenter)(rows)
    assert batch["input_features"].shape[-1] == 150  # 1.11 s -> 1.5 s of 10 ms frames, not 1.0 s
    ctc = SimpleNamespace(feature_extractor=Wav2Vec2FeatureExtractor(return_attention_mask=True))
    batch = AugmentingCollator(CTCCollator(ctc), augmenter)(rows)
    assert batch["input_values"].shape == (2, round(RATE / 0.9))
    assert int(batch["attention_mask"][1].sum()) == round(0.6 * RATE / 0.9)


# ---------------------------------------------------------------------------------------- a real run


def _tiny_ctc_config(tmp_path: Path, name: str, **overrides) -> Path:
    model_config = tmp_path / "model.json"
    model_config.write_text(json.dumps({
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "conv_dim": [16, 16, 32], "conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 4],
        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer",
        "do_stable_layer_norm": True}))
    values = {**_ctc_values(tmp_path, model_config=str(model_config)), "mask_time_prob": 0.0,
              "output_dir": str(tmp_path / name), "max_train_samples": 16, "max_eval_samples": 8,
              "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "max_steps": 4,
              "save_strategy": "no", "seed": 3, **overrides}
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(values))
    return config


@pytest.mark.slow
def test_a_tiny_ctc_run_trains_on_perturbed_training_clips_only(tmp_path: Path, monkeypatch, one_torch_thread) -> None:
    """Through `finetune train`: every training clip is perturbed once an epoch and no evaluation clip is;
    a rerun with the same seed draws the same perturbations, another seed draws others; the keys are saved."""
    from finetune.cli import main

    keys = {"speed_perturbation": [0.9, 1.0, 1.1], "noise_probability": 0.5, "noise_snr_db": [5.0, 20.0],
            "noise_dir": str(_noise_dir(tmp_path))}
    inputs: Counter[bytes] = Counter()
    outputs: list[bytes] = []
    perturb = augmentation.Augmenter.perturb

    def recording(self, samples, rng):
        inputs[np.asarray(samples, dtype=np.float32).tobytes()] += 1
        out = perturb(self, samples, rng)
        outputs.append(out.tobytes())
        return out

    monkeypatch.setattr(augmentation.Augmenter, "perturb", recording)
    drawn = {}
    for name, seed in (("run", 3), ("rerun", 3), ("other_seed", 4)):
        inputs.clear()
        outputs.clear()
        assert main(["train", str(_tiny_ctc_config(tmp_path, name, seed=seed, **keys))]) == 0
        # 4 steps of 8 = two epochs of the 16 training clips
        assert len(inputs) == 16 and set(inputs.values()) == {2}, name
        drawn[name] = list(outputs)
    assert drawn["rerun"] == drawn["run"]
    assert drawn["other_seed"] != drawn["run"]
    run = tmp_path / "run"
    results = json.loads((run / "eval_results.json").read_text())
    assert results["num_samples"] == 8 and 0 <= results["wer"]
    saved = yaml.safe_load((run / "finetune_config.yaml").read_text())
    assert {key: saved[key] for key in keys} == keys
