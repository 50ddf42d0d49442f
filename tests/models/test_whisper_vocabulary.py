"""OpenAI's multilingual Whisper vocabulary as a transformers tokenizer, without the Hub: ids equal to
openai/whisper-tiny's, tiktoken's splits, transformers' prefix and timestamp rules, a tiny multilingual
model through pipeline() and language detection, and where the vocabulary file comes from."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from finetune.models import whisper_vocabulary as wv
from finetune.models.whisper_vocabulary import (
    WhisperVocabularyError,
    build_multilingual_tokenizer,
    multilingual_generation_config,
    multilingual_tiktoken_path,
    parse_tiktoken,
)

# a copy a user already fetched (or an installed openai-whisper) is read, never written, by tests

SENTENCES = {
    "fr": "Bonjour, je m'appelle Amélie et j'habite près de Genève.",
    "de": "Grüß Gott! Die Straße ist heute völlig überfüllt.",
    "hi": "नमस्ते, आज मौसम बहुत अच्छा है।",
    "zh": "今天天气很好，我们一起去公园散步吧。",
    "en": "It's 7:45 - don't forget the 3 o'clock meeting!",
}
# whitespace runs, contractions in both cases, long numbers, emoji, newlines: where regexes differ
TRICKY = ["  leading and trailing  ", "tabs\tand\n\nnew lines\r\n", "THEY'LL 'S we've", "1234567 3.14159",
          "emoji 😀👍🏽 ok", "x" * 40, "ünïcödé   ", " -- ((laughs)) [music] ♪♪"]

# openai/whisper-tiny's generation_config.json suppress_tokens (OpenAI's non-speech tokens + control tokens)
WHISPER_TINY_SUPPRESS = [
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503, 522, 542,
    873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961, 4183, 4667,
    6585, 6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635, 15265, 15618,
    16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435, 28279, 29464, 31650, 32302, 32470,
    36865, 42863, 47425, 49870, 50254, 50258, 50358, 50359, 50360, 50361, 50362,
]


@pytest.fixture(scope="module")
def tokenizer(tiktoken_file: Path):
    return build_multilingual_tokenizer(tiktoken_path=tiktoken_file)


@pytest.fixture
def fresh_tokenizer(tiktoken_file: Path):
    """A tokenizer of its own for tests that change the prefix (built from the cache: fast)."""
    return build_multilingual_tokenizer(tiktoken_path=tiktoken_file)


# --- ids -------------------------------------------------------------------------------------------


def test_ids_equal_openai_whisper_tiny(tokenizer) -> None:
    expected = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|zh|>": 50260,
                "<|fr|>": 50265, "<|su|>": 50357, "<|translate|>": 50358, "<|transcribe|>": 50359,
                "<|startoflm|>": 50360, "<|startofprev|>": 50361, "<|nospeech|>": 50362,
                "<|notimestamps|>": 50363, "<|0.00|>": 50364, "<|0.02|>": 50365, "<|30.00|>": 51864}
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in expected} == expected
    assert len(tokenizer) == 51865
    assert tokenizer.convert_ids_to_tokens(50256) == ""  # OpenAI's file ends with one empty token
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) == (
        50257,) * 4
    # transformers finds the first timestamp as the last special id + 1
    assert tokenizer.all_special_ids[0] == 50257 and tokenizer.all_special_ids[-1] == 50363
    assert "<|yue|>" not in tokenizer.get_vocab()


def test_hundred_languages_is_the_large_v3_layout(tiktoken_file: Path) -> None:
    large = build_multilingual_tokenizer(num_languages=100, tiktoken_path=tiktoken_file)
    ids = large.convert_tokens_to_ids(["<|yue|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>",
                                       "<|0.00|>", "<|30.00|>"])
    assert ids == [50358, 50359, 50360, 50364, 50365, 51865]
    assert len(large) == 51866
    with pytest.raises(ValueError, match="num_languages"):
        build_multilingual_tokenizer(num_languages=101, tiktoken_path=tiktoken_file)


def test_timestamps_are_unique_and_evenly_spaced() -> None:
    stamps = wv.timestamp_tokens()
    assert len(set(stamps)) == 1501 and stamps[:2] == ["<|0.00|>", "<|0.02|>"] and stamps[-1] == "<|30.00|>"


# --- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_round_trip(tokenizer, language: str) -> None:
    text = SENTENCES[language]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert max(ids) < 50257  # plain text never becomes a control token
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text


def test_ids_equal_tiktoken(tokenizer, tiktoken_file: Path) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    ranks = parse_tiktoken(tiktoken_file.read_text(encoding="utf-8"))
    specials = [*wv.special_tokens(), *wv.timestamp_tokens()]
    encoding = tiktoken.Encoding(name="whisper-multilingual", pat_str=wv.WHISPER_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={token: len(ranks) + i for i, token in enumerate(specials)})
    for text in [*SENTENCES.values(), *TRICKY]:
        assert tokenizer.encode(text, add_special_tokens=False) == encoding.encode(text), text
    marked = "<|startoftranscript|><|de|><|transcribe|><|0.00|> Guten Tag<|1.24|><|endoftext|>"
    assert tokenizer.encode(marked, add_special_tokens=False) == encoding.encode(marked, allowed_special="all")


def test_prefix_tokens_follow_transformers_rules(fresh_tokenizer) -> None:
    tokenizer = fresh_tokenizer
    tokenizer.set_prefix_tokens(language="fr", task="transcribe")
    assert tokenizer.prefix_tokens == [50258, 50265, 50359, 50363]
    text_ids = tokenizer.encode(" Bonjour", add_special_tokens=False)
    assert tokenizer(" Bonjour").input_ids == [50258, 50265, 50359, 50363, *text_ids, 50257]
    tokenizer.set_prefix_tokens(language="german", task="translate", predict_timestamps=True)
    assert tokenizer.prefix_tokens == [50258, 50261, 50358]
    assert tokenizer.get_decoder_prompt_ids(language="hi", task="transcribe") == [
        (1, 50276), (2, 50359), (3, 50363)]
    prompt = tokenizer.get_prompt_ids("Genève", return_tensors=None)
    assert prompt == [50361, *tokenizer.encode(" Genève", add_special_tokens=False)]
    with pytest.raises(ValueError, match="disallowed special token"):
        tokenizer.get_prompt_ids("<|en|>")


def test_decode_with_timestamps(tokenizer) -> None:
    words = tokenizer.encode(" Bonjour", add_special_tokens=False)
    ids = [50258, 50265, 50359, 50364, *words, 50364 + 50, 50257]
    assert tokenizer.decode(ids, skip_special_tokens=True) == " Bonjour"
    assert tokenizer.decode(ids, skip_special_tokens=True, decode_with_timestamps=True) == "<|0.00|> Bonjour<|1.00|>"
    assert tokenizer.decode(ids, output_offsets=True)["offsets"] == [{"text": " Bonjour", "timestamp": (0.0, 1.0)}]


def test_saved_tokenizer_loads_with_transformers(tokenizer, tiktoken_file: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, WhisperTokenizer, WhisperTokenizerFast

    assert WhisperTokenizerFast is WhisperTokenizer  # transformers 5 has one (tokenizers-backed) class
    build_multilingual_tokenizer(tmp_path, tiktoken_path=tiktoken_file)
    for loader in (WhisperTokenizerFast, AutoTokenizer):
        loaded = loader.from_pretrained(tmp_path)
        assert len(loaded) == 51865 and loaded.all_special_ids == tokenizer.all_special_ids
        assert loaded.convert_tokens_to_ids(["<|fr|>", "<|0.00|>"]) == [50265, 50364]
        for text in [*SENTENCES.values(), *TRICKY]:
            assert loaded.encode(text) == tokenizer.encode(text)


# --- generation ------------------------------------------------------------------------------------


def test_generation_config_matches_whisper_tiny(tokenizer, tiktoken_file: Path) -> None:
    config = multilingual_generation_config(tokenizer)
    assert config.is_multilingual is True
    assert len(config.lang_to_id) == 99 and config.lang_to_id["<|en|>"] == 50259
    assert config.lang_to_id["<|su|>"] == 50357 and "<|yue|>" not in config.lang_to_id
    assert config.task_to_id == {"translate": 50358, "transcribe": 50359}
    assert (config.decoder_start_token_id, config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        50258, 50257, 50257, 50257)
    assert config.no_timestamps_token_id == 50363 and config.prev_sot_token_id == 50361
    assert config.begin_suppress_tokens == [220, 50257]
    assert config.suppress_tokens == WHISPER_TINY_SUPPRESS
    assert (config.max_initial_timestamp_index, config.max_length) == (50, 448)
    assert config.forced_decoder_ids is None and not config.return_timestamps
    large_tokenizer = build_multilingual_tokenizer(num_languages=100, tiktoken_path=tiktoken_file)
    large = multilingual_generation_config(large_tokenizer, num_languages=100)
    assert large.lang_to_id["<|yue|>"] == 50358 and large.task_to_id["transcribe"] == 50360


def test_tiny_multilingual_model_in_pipeline(tiny_multilingual_dir: Path, one_torch_thread) -> None:
    from transformers import pipeline

    from tests.helpers import tone

    asr = pipeline("automatic-speech-recognition", model=str(tiny_multilingual_dir))
    out = asr(tone(1.0), generate_kwargs={"language": "fr", "task": "transcribe", "max_new_tokens": 4},
              return_language=True)
    assert isinstance(out["text"], str)
    assert [chunk["language"] for chunk in out["chunks"]] == ["french"]  # <|fr|> read back by _decode_asr
    assert asr.tokenizer.convert_tokens_to_ids("<|fr|>") == 50265


def test_tiny_multilingual_model_prompt_and_language_detection(tiny_multilingual_dir: Path,
                                                              one_torch_thread) -> None:
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from tests.helpers import tone

    model = WhisperForConditionalGeneration.from_pretrained(tiny_multilingual_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_multilingual_dir)
    features = processor(tone(1.0), sampling_rate=16000, return_tensors="pt").input_features
    detected = model.detect_language(features)
    assert detected.shape == (1,) and int(detected[0]) in model.generation_config.lang_to_id.values()
    seen: list[list[int]] = []

    class RecordPrompt(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            seen.append(input_ids[0].tolist())
            return scores

    with torch.no_grad():
        tokens = model.generate(features, language="fr", task="transcribe", max_new_tokens=3,
                                logits_processor=LogitsProcessorList([RecordPrompt()]))
    assert seen[0] == [50258, 50265, 50359, 50363]  # the decoder starts from OpenAI's prompt
    assert isinstance(processor.batch_decode(tokens, skip_special_tokens=True)[0], str)


# --- where the vocabulary comes from ---------------------------------------------------------------


def _tiny_tiktoken() -> bytes:
    """A valid stand-in vocabulary: the 256 bytes and two merges ("ab", "abc")."""
    import base64

    tokens = [bytes([byte]) for byte in range(256)] + [b"ab", b"abc"]
    return "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens)).encode()


@pytest.fixture
def no_installed_whisper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wv.importlib.util, "find_spec", lambda name: None)


def test_installed_openai_whisper_is_used_without_importing_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "whisper"
    (package / "assets").mkdir(parents=True)
    (package / "assets" / "multilingual.tiktoken").write_bytes(_tiny_tiktoken())
    spec = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(wv.importlib.util, "find_spec", lambda name: spec if name == "whisper" else None)
    assert multilingual_tiktoken_path(tmp_path / "cache") == package / "assets" / "multilingual.tiktoken"
    (package / "assets" / "multilingual.tiktoken").unlink()  # some other package named whisper
    with pytest.raises(WhisperVocabularyError):
        multilingual_tiktoken_path(tmp_path / "cache", download=False)


def test_cached_file_is_found(tmp_path: Path, no_installed_whisper) -> None:
    (tmp_path / "multilingual.tiktoken").write_bytes(_tiny_tiktoken())
    assert multilingual_tiktoken_path(tmp_path) == tmp_path / "multilingual.tiktoken"


def _fake_pip(archive_member: str, payload: bytes, calls: list[list[str]]):
    """Stands in for `pip download`: writes an sdist holding ``payload`` at ``archive_member``."""
    def run(command, **kwargs):
        calls.append(command)
        folder = Path(command[command.index("-d") + 1])
        with tarfile.open(folder / "openai_whisper-20250625.tar.gz", "w:gz") as sdist:
            for name, data in ((archive_member, payload), ("openai_whisper-20250625/setup.py", b"")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                sdist.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(command, 0, "Saved", "")
    return run


def test_download_extracts_only_the_vocabulary_atomically(tmp_path: Path, no_installed_whisper,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    member = "openai_whisper-20250625/whisper/assets/multilingual.tiktoken"
    monkeypatch.setattr(wv.subprocess, "run", _fake_pip(member, _tiny_tiktoken(), calls))
    path = multilingual_tiktoken_path(tmp_path)
    assert path == tmp_path / "multilingual.tiktoken" and path.read_bytes() == _tiny_tiktoken()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multilingual.tiktoken"]  # no temp file, no sdist
    assert calls[0][1:4] == ["-m", "pip", "download"] and "openai-whisper==20250625" in calls[0]
    assert {"--no-deps", "--no-binary", ":all:"} <= set(calls[0])


def test_failed_download_names_what_to_install(tmp_path: Path, no_installed_whisper,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(wv.subprocess, "run", offline)
    with pytest.raises(WhisperVocabularyError) as error:
        multilingual_tiktoken_path(tmp_path)
    message = str(error.value)
    assert "pip download openai-whisper --no-deps" in message and str(tmp_path / "multilingual.tiktoken") in message
    assert "no network" in message and not (tmp_path / "multilingual.tiktoken").exists()


def test_damaged_download_is_not_cached(tmp_path: Path, no_installed_whisper,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    member = "openai_whisper-20250625/whisper/assets/multilingual.tiktoken"
    lines = _tiny_tiktoken().splitlines(keepends=True)
    monkeypatch.setattr(wv.subprocess, "run", _fake_pip(member, b"".join(lines[:100] + lines[101:]), []))
    with pytest.raises(ValueError, match="ranks"):
        multilingual_tiktoken_path(tmp_path)
    assert not (tmp_path / "multilingual.tiktoken").exists()


def test_second_build_reads_the_cached_tokenizer(tokenizer, tiktoken_file: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the `tokenizer` fixture's build wrote the cache; the language count does not change the BPE part
    assert len(list(wv.default_cache_dir().glob("tokenizer-*.json"))) == 1

    def no_derivation(ranks):
        raise AssertionError("the cached tokenizer JSON was not used")

    monkeypatch.setattr(wv, "bpe_vocab_and_merges", no_derivation)
    again = build_multilingual_tokenizer(tiktoken_path=tiktoken_file)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.encode(SENTENCES["de"]) == tokenizer.encode(SENTENCES["de"])
    assert len(build_multilingual_tokenizer(num_languages=100, tiktoken_path=tiktoken_file)) == 51866
