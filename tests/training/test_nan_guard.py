"""Training that goes NaN stops with a named error before anything with non-finite weights is saved.

Before the guard, a tiny BERT at learning rate 1e20 logged ``loss 0`` from step 2 on (transformers'
``logging_nan_inf_filter`` drops NaN step losses from the logged mean), saved NaN checkpoints and a NaN
model.safetensors, scored it and exited 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

import finetune
from finetune.training.checkpoints import is_complete
from finetune.training.trainers import (
    NonFiniteGuard,
    NonFiniteLossError,
    NonFiniteWeightsError,
    build_trainer,
    save_trained,
)
from tests.intent_helpers import build_tiny_bert, intent_rows, write_jsonl


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    encoder = build_tiny_bert(tmp_path / "bert")
    write_jsonl(tmp_path / "data" / "train.jsonl", intent_rows(per_template=3))
    write_jsonl(tmp_path / "data" / "test.jsonl", intent_rows(per_template=1, offset=5))
    run = tmp_path / "run"
    config = {"task": "intent", "model_name_or_path": str(encoder), "dataset_name": str(tmp_path / "data"),
              "max_seq_length": 16, "output_dir": str(run), "per_device_train_batch_size": 8,
              "learning_rate": 1e20, "max_steps": 6, "logging_steps": 1, "save_strategy": "steps", "save_steps": 1,
              "eval_strategy": "no", "seed": 3, "use_cpu": True}
    with pytest.raises(NonFiniteLossError, match=r"at step 2: the training loss is nan.*lower learning_rate "
                                                 r"\(now 1e\+20\).*audio amplitude") as caught:
        finetune.train(config)
    assert caught.value.step == 2
    assert not (run / "model.safetensors").exists() and not (run / "eval_results.json").exists()
    assert not (run / "checkpoint-2").exists()
    good = run / "checkpoint-1"
    assert is_complete(good)
    assert all(bool(torch.isfinite(t).all()) for t in load_file(str(good / "model.safetensors")).values())


class _SqrtAtZero(torch.nn.Module):
    """loss = sqrt(w) at w = 0: a finite loss (0) with an infinite gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.sqrt(self.w).sum() + 0.0 * x.sum()}


def _trainer(tmp_path: Path, model: torch.nn.Module, **args) -> Trainer:
    training = TrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", max_steps=2,
                                 per_device_train_batch_size=2, save_strategy="no", **args)
    return build_trainer(Trainer, model=model, args=training, train_dataset=[{"x": torch.ones(1)}] * 4)


def test_an_infinite_gradient_norm_stops_before_the_optimizer_step(tmp_path: Path) -> None:
    model = _SqrtAtZero()
    with pytest.raises(NonFiniteLossError, match="at step 1: the gradient norm is inf"):
        _trainer(tmp_path, model).train()
    assert model.w.item() == 0.0  # the step was not applied


def test_logged_non_finite_figures_stop_training() -> None:
    guard = NonFiniteGuard()
    args = TrainingArguments(output_dir="unused", fp16=False, report_to="none")
    state = type("State", (), {"global_step": 7})()
    assert guard.on_log(args, state, "control", logs={"loss": 0.5, "grad_norm": 1.0}) == "control"
    for logs in ({"loss": math.nan}, {"grad_norm": math.inf}, {"train_loss": -math.inf}):
        with pytest.raises(NonFiniteLossError, match="at step 7"):
            guard.on_log(args, state, "control", logs=logs)
    fp16 = SimpleNamespace(fp16=True, learning_rate=1e-3, max_grad_norm=1.0)
    assert guard.on_log(fp16, state, "control", logs={"grad_norm": math.inf}) == "control"  # a skipped step
    with pytest.raises(NonFiniteLossError, match="bf16: true instead of fp16"):
        guard.on_log(fp16, state, "control", logs={"loss": math.nan})


def test_save_trained_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = _SqrtAtZero()
    trainer = _trainer(tmp_path, model)
    with torch.no_grad():
        model.w.fill_(math.nan)
    with pytest.raises(NonFiniteWeightsError, match=r"non-finite weights .*\(w hold NaN or Inf\)"):
        save_trained(trainer, trainer.args)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    with torch.no_grad():
        model.w.fill_(0.0)
    save_trained(trainer, trainer.args)
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["global_step"] == 0
