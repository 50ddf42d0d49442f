"""A model and its tokenizer must agree: a folder saved without its tokenizer files fails at load time.

Before the check, a Whisper folder without tokenizer.json loaded a tokenizer of 107 special tokens:
every transcript encoded to nothing and training, evaluation and the card reported WER 0.00%.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finetune.config import ModelArguments
from finetune.models.consistency import TokenizerMismatchError, check_tokenizer, round_trip_problem
from finetune.models.ctc import CTCArguments, build_tokenizer, build_vocab, load_ctc_model, load_tokenizer
from finetune.models.prototype_classifier import load_encoder
from finetune.models.text_classifier import load_saved_classifier, load_text_classifier
from finetune.models.whisper import load_whisper
from tests.helpers import build_tiny_wav2vec2
from tests.intent_helpers import build_tiny_bert


def _without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target)
    for name in names:
        (target / name).unlink(missing_ok=True)
    return target


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def test_whisper_without_tokenizer_json_is_refused(tiny_whisper_dir: Path, tmp_path: Path) -> None:
    broken = _without(tiny_whisper_dir, tmp_path / "whisper", "tokenizer.json")
    with pytest.raises(TokenizerMismatchError) as caught:
        load_whisper(ModelArguments(model_name_or_path=str(broken)))
    message = str(caught.value)
    assert str(broken) in message and "no tokenizer.json" in message
    assert "the tokenizer has 107 tokens, the model 51864" in message
    assert "decoder start id 50257" in message and "copy the tokenizer files" in message.lower()


def test_a_complete_whisper_folder_loads(tiny_whisper_dir: Path) -> None:
    model, processor = load_whisper(ModelArguments(model_name_or_path=str(tiny_whisper_dir)))
    tokenizer = processor.tokenizer
    assert tokenizer.decode(tokenizer("hello world 123", add_special_tokens=False).input_ids) == "hello world 123"


def test_audio_classification_keeps_only_the_encoder_and_needs_no_tokenizer(tiny_whisper_dir: Path,
                                                                          tmp_path: Path) -> None:
    broken = _without(tiny_whisper_dir, tmp_path / "whisper", "tokenizer.json")
    model, _ = load_whisper(ModelArguments(model_name_or_path=str(broken)), needs_tokenizer=False)
    assert model.config.model_type == "whisper"


def test_text_models_without_a_vocabulary_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    broken = _without(tiny_bert, tmp_path / "bert", "tokenizer.json", "vocab.txt")
    labels = {"a": 0, "b": 1}
    with pytest.raises(TokenizerMismatchError, match=r"the tokenizer has 5 tokens, the model 46"):
        load_text_classifier(ModelArguments(model_name_or_path=str(broken)), {0: "a", 1: "b"}, labels)
    with pytest.raises(TokenizerMismatchError, match="no tokenizer.json"):
        load_encoder(str(broken))
    model, tokenizer = load_text_classifier(ModelArguments(model_name_or_path=str(tiny_bert)), {0: "a", 1: "b"},
                                            labels)
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    with pytest.raises(TokenizerMismatchError):  # the tokenizer not saved beside the model
        load_saved_classifier(str(saved))
    tokenizer.save_pretrained(saved)
    assert load_saved_classifier(str(saved))[1] is not None


def test_ctc_tokenizers_are_checked_against_the_head(tmp_path: Path) -> None:
    # a character vocabulary from the transcripts lacks the sample's letters: its own characters round-trip
    tokenizer = build_tokenizer(build_vocab(["zero one two"]))
    encoder = build_tiny_wav2vec2(tmp_path / "encoder")
    model = load_ctc_model(ModelArguments(model_name_or_path=str(encoder)), CTCArguments(), tokenizer)
    check_tokenizer(tokenizer, model.config, encoder)
    saved = tmp_path / "tokenizer"
    tokenizer.save_pretrained(saved)
    assert len(load_tokenizer(str(saved), ModelArguments(model_name_or_path=str(encoder)))) == len(tokenizer)
    (saved / "vocab.json").unlink()
    with pytest.raises(TokenizerMismatchError, match="no tokenizer.json"):
        load_tokenizer(str(saved), ModelArguments(model_name_or_path=str(encoder)))
    model.config.pad_token_id = 3
    with pytest.raises(TokenizerMismatchError, match="CTC blank is id 3"):
        check_tokenizer(tokenizer, model.config, "ctc")


def test_a_tokenizer_of_special_tokens_only_or_a_garbling_one_fails() -> None:
    specials = build_tokenizer({"[PAD]": 0, "[UNK]": 1, "|": 2})
    with pytest.raises(TokenizerMismatchError, match="the tokenizer has 3 tokens, the model 32"):
        check_tokenizer(specials, _Config(vocab_size=32, pad_token_id=0), "ctc")
    assert "no words of its own" in round_trip_problem(specials)

    class Garbling:  # encodes fine, decodes to something else
        pad_token_id, unk_token_id, all_special_ids, all_special_tokens = 0, 1, [0, 1], ["<pad>", "<unk>"]

        def __len__(self) -> int:
            return 100

        def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
            return {"input_ids": [5, 6, 7]}

        def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
            return "hallo"

    with pytest.raises(TokenizerMismatchError, match="'hello world 123' encodes and decodes to 'hallo'"):
        check_tokenizer(Garbling(), _Config(vocab_size=100, pad_token_id=0), "garbling")


def test_more_tokens_than_the_model_has_embeddings_fails(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    with pytest.raises(TokenizerMismatchError, match="46 tokens, the model only 40"):
        check_tokenizer(tokenizer, _Config(vocab_size=40, pad_token_id=0), tiny_bert)


class _Config:
    is_encoder_decoder = False
    architectures = None

    def __init__(self, **values) -> None:
        self.__dict__.update(values)
