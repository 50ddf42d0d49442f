"""Every Trainer-based task, killed with SIGKILL after a checkpoint and resumed, ends exactly where an
uninterrupted run ends: the same weights and the same logged losses.

``CONFIGS`` holds one tiny, fast config per Trainer-based task, and its keys must be the registry's
Trainer-based tasks: a new task fails here until it adds one. ``tests/data/test_max_batch_seconds.py``
reuses these configs and their data.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from safetensors.numpy import load_file

from finetune import api
from finetune.tasks import TASKS, get_task
from finetune.training.checkpoints import COMPLETE_MARKER, complete_checkpoints

REPO = Path(__file__).resolve().parents[2]

# one clip per row: (seconds, tone frequency, transcript, label); every clip is 0.5-0.6 s, so a
# max_batch_seconds of 0.9 holds exactly one clip a batch (see test_max_batch_seconds.py)
TRAIN_CLIPS = [(0.5, 440.0, "zero", "0"), (0.6, 880.0, "one", "1")] * 4
TEST_CLIPS = [(0.5, 440.0, "zero", "0"), (0.6, 880.0, "one", "1")]
ONE_CLIP_SECONDS = 0.9

# a from-scratch Wav2Vec2ForCTC as small as tests/tasks/test_asr_ctc.py trains
CTC_SCRATCH = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
    "conv_dim": [16, 16, 32], "conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 4],
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}


def _tone(seconds: float, freq: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(int(freq)).normal(0, 0.01, len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_tone_folder(root: Path) -> Path:
    """An audiofolder (train + test) with a transcript and a label column."""
    for split, clips in (("train", TRAIN_CLIPS), ("test", TEST_CLIPS)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "transcript", "label"])
            for i, (seconds, freq, text, label) in enumerate(clips):
                name = f"{split}_{i}.wav"
                sf.write(folder / name, _tone(seconds, freq + i), 16000)
                writer.writerow([name, text, label])
    return root


class Resources:
    """The models and data the tiny configs need, each built on first use and kept for the module."""

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        self._request, self._root = request, root
        self._built: dict[str, Path] = {}

    def _once(self, name: str, build: Callable[[Path], Path]) -> Path:
        if name not in self._built:
            self._built[name] = build(self._root / name)
        return self._built[name]

    @property
    def tones(self) -> Path:
        return self._once("tones", write_tone_folder)

    @property
    def whisper(self) -> Path:
        return self._request.getfixturevalue("tiny_whisper_dir")

    @property
    def teacher(self) -> Path:
        def build(target: Path) -> Path:
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            from finetune.models.whisper import set_encoder_context
            from tests.helpers import build_tiny_whisper

            built = build_tiny_whisper(self._root / "teacher-built", decoder_layers=2)
            model = WhisperForConditionalGeneration.from_pretrained(built)
            processor = WhisperProcessor.from_pretrained(built)
            set_encoder_context(model, processor, 2)
            model.generation_config.max_length = 6
            model.save_pretrained(target)
            processor.save_pretrained(target)
            return target

        return self._once("teacher", build)

    @property
    def wav2vec2(self) -> Path:
        from tests.helpers import build_tiny_wav2vec2

        return self._once("wav2vec2", build_tiny_wav2vec2)

    @property
    def ctc_model_config(self) -> Path:
        def build(target: Path) -> Path:
            target.write_text(json.dumps(CTC_SCRATCH))
            return target

        return self._once("ctc_model.json", build)

    @property
    def bert(self) -> Path:
        from tests.intent_helpers import build_tiny_bert

        return self._once("bert", build_tiny_bert)

    @property
    def intents(self) -> Path:
        from tests.intent_helpers import intent_rows, write_jsonl

        def build(target: Path) -> Path:
            write_jsonl(target / "train.jsonl", intent_rows(per_template=2))
            write_jsonl(target / "test.jsonl", intent_rows(per_template=1, offset=5))
            return target

        return self._once("intents", build)


COMMON = {"use_cpu": True, "dataloader_num_workers": 0, "report_to": "none", "per_device_train_batch_size": 4,
          "per_device_eval_batch_size": 4, "learning_rate": 1e-3, "seed": 3}


def _asr_seq2seq(res: Resources, output_dir: Path) -> dict[str, Any]:
    return {"task": "asr_seq2seq", "model_name_or_path": str(res.whisper), "encoder_context_seconds": 2,
            "dataset_name": str(res.tones), "max_duration_in_seconds": 2, "generation_max_length": 4,
            "output_dir": str(output_dir), **COMMON}


def _asr_distill(res: Resources, output_dir: Path) -> dict[str, Any]:
    return {"task": "asr_distill", "teacher_model_name_or_path": str(res.teacher), "student_decoder_layers": 1,
            "dataset_name": str(res.tones), "max_duration_in_seconds": 2, "generation_max_length": 4,
            "output_dir": str(output_dir), **COMMON}


def _asr_ctc(res: Resources, output_dir: Path) -> dict[str, Any]:
    # SpecAugment stays at the task's defaults: its masks are random, and resuming must replay them too
    return {"task": "asr_ctc", "model_config": str(res.ctc_model_config), "dataset_name": str(res.tones),
            "output_dir": str(output_dir), **COMMON}


def _audio_classification(res: Resources, output_dir: Path) -> dict[str, Any]:
    return {"task": "audio_classification", "model_name_or_path": str(res.wav2vec2), "dataset_name": str(res.tones),
            "label_column_name": "label", "output_dir": str(output_dir), **COMMON}


def _intent(res: Resources, output_dir: Path) -> dict[str, Any]:
    return {"task": "intent", "model_name_or_path": str(res.bert), "dataset_name": str(res.intents),
            "max_seq_length": 16, "validation_split_percentage": 20, "oos_target_recall": 0.9,
            "output_dir": str(output_dir), **COMMON}


# task name -> tiny config (flat keys as in a YAML file) writing to output_dir
CONFIGS: dict[str, Callable[[Resources, Path], dict[str, Any]]] = {
    "asr_seq2seq": _asr_seq2seq,
    "asr_distill": _asr_distill,
    "asr_ctc": _asr_ctc,
    "audio_classification": _audio_classification,
    "intent": _intent,
}


def trainer_tasks() -> list[str]:
    """Registered tasks that train with a Trainer; a task that does not import is kept (its test then
    fails on the import, instead of being silently left out)."""
    names = []
    for name in TASKS:
        try:
            task = get_task(name)
        except ImportError:
            names.append(name)
            continue
        if task.uses_trainer:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def resources(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Resources:
    return Resources(request, tmp_path_factory.mktemp("resources"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_trainer_based_task_has_a_tiny_config() -> None:
    assert set(CONFIGS) == {name for name in TASKS if get_task(name).uses_trainer}


RESUME = {"max_steps": 6, "save_strategy": "steps", "save_steps": 2, "logging_steps": 1, "save_total_limit": 10,
          "eval_split_name": None}


def _losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def _kill_after_second_checkpoint(config: Path, output_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "finetune", "train", str(config)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = output_dir / "checkpoint-4" / COMPLETE_MARKER
    deadline = time.time() + 300
    try:
        while not marker.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert marker.exists(), f"the run ended before its second checkpoint:\n{stderr.decode()[-3000:]}"
    assert process.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert not (output_dir / "model.safetensors").exists(), "killed too late to test anything"


@pytest.mark.slow
@pytest.mark.parametrize("name", trainer_tasks())
def test_kill_9_then_resume_matches_an_uninterrupted_run(name: str, tmp_path: Path, resources: Resources,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    assert name in CONFIGS, f"add a tiny {name} config to CONFIGS"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert "train" in api.train({**CONFIGS[name](resources, straight), **RESUME})
    assert json.loads((straight / "trainer_state.json").read_text())["global_step"] == 6

    values = {**CONFIGS[name](resources, killed), **RESUME}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(values))
    _kill_after_second_checkpoint(config, killed)
    newest = complete_checkpoints(killed)[-1]
    markers = {p.name: (p / COMPLETE_MARKER).read_bytes() for p in complete_checkpoints(killed)}

    with caplog.at_level(logging.INFO, logger="finetune"):
        api.train(values, resume=True)
    # it continued from the newest whole checkpoint (a run started over would end alike too)
    assert f"resuming from {newest}" in caplog.text
    assert {ckpt: (killed / ckpt / COMPLETE_MARKER).read_bytes() for ckpt in markers} == markers
    state = json.loads((killed / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    differing = {key: float(np.abs(a[key] - b[key]).max()) for key in a if not np.allclose(a[key], b[key], atol=1e-5)}
    worst = dict(sorted(differing.items(), key=lambda item: -item[1])[:3])
    assert not differing, f"{name}: {len(differing)} resumed weights differ from the uninterrupted run's, e.g. {worst}"
    losses_a, losses_b = _losses(straight), _losses(killed)
    assert len(losses_a) == len(losses_b) == 6
    assert losses_b == pytest.approx(losses_a, rel=1e-4, abs=1e-6)
