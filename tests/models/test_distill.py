"""Student construction and the distillation loss, on tiny random Whisper models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from finetune.models.distill import (
    DistillArguments,
    build_student,
    distillation_loss,
    maximally_spaced_layers,
    student_layer_ids,
)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory):
    from transformers import WhisperForConditionalGeneration

    from tests.helpers import build_tiny_whisper

    path = build_tiny_whisper(tmp_path_factory.mktemp("teacher4"), decoder_layers=4)
    return WhisperForConditionalGeneration.from_pretrained(path)


def test_maximally_spaced_layers_keep_first_and_last() -> None:
    assert maximally_spaced_layers(4, 2) == [0, 3]
    assert maximally_spaced_layers(4, 1) == [3]
    assert maximally_spaced_layers(32, 3) == [0, 15, 31]
    assert maximally_spaced_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="the teacher has 4"):
        maximally_spaced_layers(4, 5)


def test_student_copies_the_chosen_teacher_layers_and_everything_else(teacher) -> None:
    student = build_student(teacher, [1, 3])
    assert student.config.decoder_layers == 2 and teacher.config.decoder_layers == 4
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in student_state.items():
        if key.startswith("model.decoder.layers."):
            index, rest = key[len("model.decoder.layers."):].split(".", 1)
            source = f"model.decoder.layers.{[1, 3][int(index)]}.{rest}"
        else:
            source = key
        assert torch.equal(value, teacher_state[source]), key
    # copies, not shared tensors: training the student leaves the teacher as it was
    student.model.decoder.layers[0].fc1.weight.data.add_(1.0)
    assert not torch.equal(student.model.decoder.layers[0].fc1.weight, teacher.model.decoder.layers[1].fc1.weight)
    assert student.generation_config.alignment_heads == [[1, 0], [1, 1]]  # teacher's [[0, 0]] is not kept


def test_layer_ids_from_config_are_checked_against_the_teacher(teacher) -> None:
    assert student_layer_ids(teacher, DistillArguments("t", student_decoder_layers=2)) == [0, 3]
    assert student_layer_ids(teacher, DistillArguments("t", student_layer_ids=[2])) == [2]
    with pytest.raises(ValueError, match="decoder layers 0..3"):
        student_layer_ids(teacher, DistillArguments("t", student_layer_ids=[0, 4]))
    with pytest.raises(ValueError, match="the teacher has 4"):
        student_layer_ids(teacher, DistillArguments("t", student_decoder_layers=6))
    with pytest.raises(ValueError, match="distinct and increasing"):
        DistillArguments("t", student_layer_ids=[3, 0])
    with pytest.raises(ValueError, match="temperature"):
        DistillArguments("t", temperature=0)


def _direct_loss(student_logits, teacher_logits, labels, ce_weight, kl_weight, temperature):
    """The definition, token by token: CE on the label, KL(p_teacher || p_student) at temperature T."""
    ce_terms, kl_terms = [], []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] == -100:
                continue
            ce_terms.append(-F.log_softmax(student_logits[b, t], -1)[labels[b, t]])
            p = F.softmax(teacher_logits[b, t] / temperature, -1)
            q = F.softmax(student_logits[b, t] / temperature, -1)
            kl_terms.append((p * (p.log() - q.log())).sum())
    ce = torch.stack(ce_terms).mean()
    kl = torch.stack(kl_terms).mean() * temperature**2
    return ce_weight * ce + kl_weight * kl, ce, kl


@pytest.mark.parametrize("ce_weight,kl_weight,temperature", [(0.8, 1.0, 2.0), (0.0, 1.0, 1.0), (1.0, 0.0, 3.0)])
def test_loss_matches_the_direct_computation(ce_weight, kl_weight, temperature) -> None:
    torch.manual_seed(0)
    student_logits, teacher_logits = torch.randn(2, 5, 11), torch.randn(2, 5, 11) * 3
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 7, 8]])
    parts = distillation_loss(student_logits, teacher_logits, labels, ce_weight=ce_weight, kl_weight=kl_weight,
                              temperature=temperature)
    loss, ce, kl = _direct_loss(student_logits, teacher_logits, labels, ce_weight, kl_weight, temperature)
    assert torch.allclose(parts["ce"], ce, atol=1e-5) and torch.allclose(parts["kl"], kl, atol=1e-5)
    assert torch.allclose(parts["loss"], loss, atol=1e-5)


def test_kl_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(1, 3, 7)
    parts = distillation_loss(logits, logits.clone(), torch.tensor([[1, 2, -100]]), ce_weight=0.0, kl_weight=1.0,
                              temperature=2.0)
    assert parts["kl"].abs() < 1e-6


@pytest.mark.parametrize("freeze_encoder", [True, False])
def test_trainer_loss_uses_the_teacher_as_configured(teacher, tmp_path: Path, freeze_encoder: bool) -> None:
    """The trainer's loss equals the definition with the teacher run on its own (its own encoder too):
    reusing the student's frozen encoder output for the teacher changes nothing."""
    from transformers import Seq2SeqTrainingArguments

    from finetune.models.distill import DistillationTrainer

    student = build_student(teacher, [0, 3])
    student.model.encoder.requires_grad_(not freeze_encoder)
    for layer in student.model.decoder.layers:  # let the student differ from the teacher
        layer.fc2.weight.data.normal_(0, 0.5)
    distill = DistillArguments("t", student_decoder_layers=2, ce_weight=0.3, kl_weight=0.7, temperature=1.5)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = DistillationTrainer(model=student, args=args, teacher=teacher, distill=distill,
                                  reuse_student_encoder=freeze_encoder)
    torch.manual_seed(1)
    features = torch.randn(2, teacher.config.num_mel_bins, 2 * teacher.config.max_source_positions)
    labels = torch.tensor([[50257, 220, 11, 50256], [50257, 7, -100, -100]])
    student.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(student, {"input_features": features, "labels": labels})
        student_logits = student(input_features=features, labels=labels).logits
        teacher_logits = teacher(input_features=features, labels=labels).logits
    expected, _, kl = _direct_loss(student_logits, teacher_logits, labels, 0.3, 0.7, 1.5)
    assert kl > 1e-3
    assert torch.allclose(loss, expected, atol=1e-4)
