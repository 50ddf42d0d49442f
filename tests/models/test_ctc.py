"""CTC builders: vocabulary, tokenizer, scratch configs, model loading, frame arithmetic, n-gram LM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.config import ModelArguments
from finetune.evaluation.ctc_decoding import CTCDecodingArguments, decoder_labels, write_arpa
from finetune.models.ctc import (
    CTCArguments,
    build_tokenizer,
    build_vocab,
    ctc_frames_needed,
    load_ctc_model,
    load_feature_extractor,
    output_frames,
    scratch_config,
)
from finetune.models.speech_encoder import FreezeArguments, SpecAugmentArguments
from tests.helpers import build_tiny_wav2vec2


def test_vocabulary_is_characters_with_blank_first() -> None:
    vocab = build_vocab(["zero one", "two"])
    assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1 and vocab["|"] == 2
    assert [c for c, _ in sorted(vocab.items(), key=lambda kv: kv[1])][3:] == sorted(set("zeroonetwo"))
    assert build_vocab(["two", "zero one"]) == vocab  # the same data gives the same ids


def test_vocabulary_rejects_reserved_symbols_and_empty_text() -> None:
    with pytest.raises(ValueError, match=r"'\|'"):
        build_vocab(["a|b"])
    with pytest.raises(ValueError, match="no characters"):
        build_vocab(["", "  "])


def test_tokenizer_round_trip_and_unknown_characters() -> None:
    tokenizer = build_tokenizer(build_vocab(["zero one"]))
    ids = tokenizer("one zero").input_ids
    assert tokenizer.decode(ids, group_tokens=False) == "one zero"
    assert tokenizer("zx").input_ids[1] == tokenizer.unk_token_id
    # CTC output: repeats merge, blanks (pad) split real repeats and vanish
    o, n, e, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("o", "n", "e", "[PAD]"))
    assert tokenizer.decode([o, o, pad, n, n, e, pad]) == "one"
    assert len(tokenizer) == len(build_vocab(["zero one"]))  # no BOS/EOS added


def test_frames_needed_counts_a_blank_between_repeats() -> None:
    assert ctc_frames_needed([5, 6, 7]) == 3
    assert ctc_frames_needed([5, 5, 6, 6, 6]) == 8


def test_scratch_config_from_json_yaml_and_type(tmp_path: Path) -> None:
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"model_type": "hubert", "hidden_size": 48, "conv_dim": [8, 8], "conv_stride": [5, 4],
                                "conv_kernel": [10, 8]}))
    config = scratch_config(str(path))
    assert config.model_type == "hubert" and config.hidden_size == 48 and config.num_feat_extract_layers == 2
    yaml_path = tmp_path / "small.yaml"
    yaml_path.write_text("hidden_size: 40\n")
    assert scratch_config(str(yaml_path)).model_type == "wav2vec2"
    assert scratch_config("wavlm").model_type == "wavlm"
    path.write_text(json.dumps({"hiden_size": 48}))
    with pytest.raises(ValueError, match="hiden_size"):
        scratch_config(str(path))
    with pytest.raises(ValueError, match="not a file, a folder or one of"):
        scratch_config("bert")


def test_pretrained_encoder_gets_a_fresh_head_sized_to_the_vocabulary(tmp_path: Path) -> None:
    encoder = build_tiny_wav2vec2(tmp_path / "enc")
    tokenizer = build_tokenizer(build_vocab(["zero one two"]))
    args = CTCArguments(layerdrop=0.05, final_dropout=0.2)
    model = load_ctc_model(ModelArguments(model_name_or_path=str(encoder)), args, tokenizer,
                           spec_augment=SpecAugmentArguments(mask_time_prob=0.1))
    assert model.lm_head.out_features == len(tokenizer) and model.config.pad_token_id == 0
    assert model.config.mask_time_prob == 0.1 and model.config.layerdrop == 0.05 and model.config.final_dropout == 0.2
    assert model.config.ctc_loss_reduction == "mean"
    # the feature encoder is frozen by default for a pretrained encoder, the transformer is not
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.wav2vec2.encoder.parameters())
    saved = _saved_weight(encoder, "layers.0.feed_forward.output_dense.weight")
    assert torch.equal(model.wav2vec2.encoder.layers[0].feed_forward.output_dense.weight, saved)
    extractor = load_feature_extractor(ModelArguments(model_name_or_path=str(encoder)), args)
    assert extractor.sampling_rate == 16000 and extractor.return_attention_mask


def _saved_weight(path: Path, suffix: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return next(v for k, v in load_file(str(path / "model.safetensors")).items() if k.endswith(suffix))


def test_scratch_model_trains_its_feature_encoder(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 64, "conv_dim": [8, 8], "conv_stride": [5, 4],
                                "conv_kernel": [10, 8], "num_conv_pos_embeddings": 8,
                                "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer"}))
    args = CTCArguments(model_config=str(path))
    tokenizer = build_tokenizer(build_vocab(["ab"]))
    model = load_ctc_model(ModelArguments(model_name_or_path=None), args, tokenizer)
    assert all(p.requires_grad for p in model.parameters())
    # conv (kernel 10, stride 5) then (8, 4): floor((n - kernel) / stride) + 1 per layer
    assert output_frames(model, [16000, 400]) == [798, 18]
    extractor = load_feature_extractor(ModelArguments(model_name_or_path=None), args)
    assert extractor.return_attention_mask and extractor.do_normalize


def test_decoder_labels_map_blank_delimiter_and_unknown() -> None:
    vocab = build_vocab(["ab c"])
    assert decoder_labels(vocab, "[PAD]", "[UNK]", "|") == ["", "⁇", " ", "a", "b", "c"]


def test_decoding_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="decoding: beam"):
        CTCDecodingArguments(lm_order=2)
    with pytest.raises(ValueError, match="not both"):
        CTCDecodingArguments(decoding="beam", lm_order=2, lm_path="x.arpa")
    with pytest.raises(ValueError, match=r"'decoding' must be one of \['greedy', 'beam'\]"):
        CTCDecodingArguments(decoding="viterbi")


def _read_arpa(path: Path) -> tuple[dict, dict]:
    logp, backoff, order = {}, {}, 0
    for line in path.read_text().splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
            continue
        parts = line.split("\t")
        if order and len(parts) >= 2:
            gram = tuple(parts[1].split())
            logp[gram] = float(parts[0])
            if len(parts) == 3:
                backoff[gram] = float(parts[2])
    return logp, backoff


def _prob(word: str, history: tuple, logp: dict, backoff: dict) -> float:
    if (*history, word) in logp:
        return 10 ** logp[(*history, word)]
    if not history:
        return 10 ** logp[("<unk>",)]
    return 10 ** backoff.get(history, 0.0) * _prob(word, history[1:], logp, backoff)


@pytest.mark.parametrize("order", [2, 3])
def test_arpa_language_model_is_a_proper_distribution(tmp_path: Path, order: int) -> None:
    sentences = ["zero", "one", "two one", "zero zero", "three", "one two three", "one"]
    path = write_arpa(sentences, tmp_path / "lm.arpa", order=order)
    text = path.read_text()
    assert f"ngram {order}=" in text and "\\end\\" in text
    logp, backoff = _read_arpa(path)
    words = ["zero", "one", "two", "three", "</s>", "<unk>"]
    for history in [(), ("<s>",), ("one",), ("zero",), ("four",), ("one", "two"), ("<s>", "one"), ("two", "two")]:
        context = history[len(history) - (order - 1):] if history else ()
        total = sum(_prob(w, context, logp, backoff) for w in words)
        assert math.isclose(total, 1.0, abs_tol=1e-4), (history, total)
    # seen continuations are more likely than unseen ones
    assert _prob("two", ("one",), logp, backoff) > _prob("zero", ("one",), logp, backoff)


def test_arpa_loads_in_kenlm(tmp_path: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    path = write_arpa(["zero one", "one"], tmp_path / "lm.arpa", order=2)
    model = kenlm.Model(str(path))
    assert model.order == 2 and model.score("one", bos=True, eos=True) > model.score("one one one", bos=True, eos=True)


def test_beam_search_decodes_frame_scores() -> None:
    pytest.importorskip("pyctcdecode")
    from finetune.evaluation.ctc_decoding import BeamSearchDecoder

    vocab = build_vocab(["zero one"])
    labels = decoder_labels(vocab, "[PAD]", "[UNK]", "|")
    frames = np.full((8, len(labels)), -8.0, dtype=np.float32)
    for t, symbol in enumerate(["o", "o", "", "n", "e", "", "", ""]):
        frames[t, labels.index(symbol)] = 0.0
    decoder = BeamSearchDecoder(labels, lm_path=None, alpha=0.5, beta=1.0, beam_width=8)
    assert decoder.decode([frames]) == ["one"]


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_every_family_member_trains_from_scratch(tmp_path: Path, model_type: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps({"model_type": model_type, "hidden_size": 32, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [8, 16],
                                "conv_kernel": [10, 8], "conv_stride": [5, 4], "num_conv_pos_embeddings": 8}))
    args = CTCArguments(model_config=str(path))
    tokenizer = build_tokenizer(build_vocab(["yes no"]))
    model = load_ctc_model(ModelArguments(model_name_or_path=None), args, tokenizer,
                           freeze=FreezeArguments(freeze_feature_encoder=True),
                           spec_augment=SpecAugmentArguments(mask_time_length=2))
    assert model.config.model_type == model_type and model.lm_head.out_features == len(tokenizer)
    assert not any(p.requires_grad for p in model.base_model.feature_extractor.parameters())
    labels = torch.tensor(tokenizer(["yes", "no"], padding=True).input_ids)
    labels[labels == tokenizer.pad_token_id] = -100
    loss = model(input_values=torch.randn(2, 8000), labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
