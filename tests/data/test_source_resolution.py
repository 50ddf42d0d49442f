"""Which file a split is read from, and errors for names that point nowhere or at the wrong rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from finetune.config import ConfigError, DataArguments, parse_into
from finetune.data.sources import DataSourceError, load_source, looks_like_local_path, missing_path_message
from finetune.data.speech import load_speech_split
from finetune.data.text_data import load_text_split
from tests.helpers import tone, write_audiofolder


def _flat_folder(root: Path) -> Path:
    """An audiofolder with one metadata.csv at its root and no split folders."""
    root.mkdir(parents=True)
    sf.write(root / "a.wav", tone(0.3), 16000)
    sf.write(root / "b.wav", tone(0.3), 16000)
    (root / "metadata.csv").write_text("file_name,transcript\na.wav,alpha\nb.wav,beta\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------ one root metadata.csv: one split only


def test_a_root_metadata_file_is_not_both_the_training_and_the_test_split(tmp_path: Path) -> None:
    flat = _flat_folder(tmp_path / "flat")
    training = DataArguments(dataset_name=str(flat))  # train_split_name: train, eval_split_name: test
    with pytest.raises(DataSourceError) as error:
        load_speech_split(training, "train", sampling_rate=16000)  # refused before anything is decoded
    message = str(error.value)
    assert str(flat) in message and "no folder for split 'train'" in message and "'test'" in message
    assert f"{flat / 'train' / 'metadata.csv'} and {flat / 'test' / 'metadata.csv'}" in message
    assert "eval_dataset_name" in message and "eval_split_name: null" in message


def test_one_manifest_file_is_not_both_the_training_and_the_test_split(tmp_path: Path) -> None:
    """A manifest given as dataset_name with the default eval split once scored the training rows."""
    import finetune

    flat = _flat_folder(tmp_path / "flat")
    manifest = flat / "metadata.csv"
    values = {"task": "asr_seq2seq", "model_name_or_path": str(tmp_path / "never-loaded"),
              "dataset_name": str(manifest), "output_dir": str(tmp_path / "run"), "max_steps": 2}
    with pytest.raises(ConfigError) as error:
        finetune.train(values)  # refused before any model loads
    message = str(error.value)
    assert str(manifest) in message and "scored on the training rows" in message
    assert "eval_dataset_name" in message and "eval_split_name: null" in message
    # reading one split of it is fine (scripts, finetune evaluate)
    assert len(load_speech_split(DataArguments(dataset_name=str(manifest)), "train", sampling_rate=16000)[0]) == 2


def test_a_root_metadata_file_serves_the_one_split_asked_for(tmp_path: Path) -> None:
    flat = _flat_folder(tmp_path / "flat")
    # training without evaluation
    dataset, _ = load_speech_split(DataArguments(dataset_name=str(flat), eval_split_name=None), "train",
                                   sampling_rate=16000)
    assert list(dataset["text"]) == ["alpha", "beta"]
    # `finetune evaluate` on the folder (the split read is the eval split)
    dataset, _ = load_speech_split(DataArguments(dataset_name=str(flat), eval_split_name="test"), "test",
                                   sampling_rate=16000)
    assert len(dataset) == 2
    # training on it, evaluating on another source
    other = write_audiofolder(tmp_path / "other", "test", [("c.wav", tone(0.3), "gamma")])
    args = DataArguments(dataset_name=str(flat), eval_dataset_name=str(other))
    assert len(load_speech_split(args, "train", sampling_rate=16000)[0]) == 2
    assert list(load_speech_split(args, "test", source=str(other), sampling_rate=16000)[0]["text"]) == ["gamma"]
    # scripts that read one split through load_source directly
    assert len(load_source(str(flat), "validation")) == 2


def test_a_root_metadata_file_beside_split_folders_is_not_a_split(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.3), "alpha")])
    (root / "metadata.csv").write_text("file_name,transcript\ntrain/a.wav,alpha\n", encoding="utf-8")
    assert len(load_source(str(root), "train")) == 1
    with pytest.raises(DataSourceError, match=r"split 'test' has no folder .*split folders \(train\)"):
        load_source(str(root), "test")


def test_a_text_folder_with_one_root_metadata_file_is_refused_for_training_too(tmp_path: Path) -> None:
    (tmp_path / "intents").mkdir()
    (tmp_path / "intents" / "metadata.jsonl").write_text('{"text": "play jazz", "intent": "PlayMusic"}\n')
    with pytest.raises(DataSourceError, match="no folder for split 'train'"):
        load_text_split(DataArguments(dataset_name=str(tmp_path / "intents")), "train")
    dataset, _ = load_text_split(DataArguments(dataset_name=str(tmp_path / "intents"), eval_split_name=None), "train")
    assert list(dataset["label"]) == ["PlayMusic"]


def test_split_files_win_over_a_root_metadata_file_and_tsv_counts(tmp_path: Path) -> None:
    root = _flat_folder(tmp_path / "set")
    (root / "test.tsv").write_text("file_name\ttranscript\na.wav\tonly the test row\n", encoding="utf-8")
    dataset, _ = load_speech_split(DataArguments(dataset_name=str(root)), "test", sampling_rate=16000)
    assert list(dataset["text"]) == ["only the test row"]


# ------------------------------------------------------------------ names that point nowhere


def test_a_mistyped_local_path_is_named_with_its_closest_siblings(tmp_path: Path, monkeypatch) -> None:
    write_audiofolder(tmp_path / "data" / "fsdd", "train", [("a.wav", tone(0.1), "x")])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataSourceError) as error:
        load_source("./data/fsd", "train")
    assert "no such file or folder: ./data/fsd" in str(error.value)
    assert "did you mean data/fsdd?" in str(error.value)
    with pytest.raises(DataSourceError, match=r"did you mean data/fsdd/train/trian\?"):
        load_source("data/fssd/train/trian", "train")  # not owner/name: a local path, never a Hub lookup
    with pytest.raises(DataSourceError, match=r"no such file or folder: data/fsdd/trian; did you mean data/fsdd/train"):
        load_source("data/fsdd/trian", "train")
    with pytest.raises(DataSourceError, match="manifest not found: no such file or folder: data/train.csv"):
        load_source("data/train.csv", "train")


def test_an_owner_name_that_is_neither_on_the_hub_nor_local_mentions_the_local_folder(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    (tmp_path / "outputs" / "spoken_snips").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataSourceError) as error:
        load_source("outputs/spoken_snip", "train")  # offline in tests: the Hub lookup fails
    assert "nor is it a local folder: no such file or folder: outputs/spoken_snip" in str(error.value)
    assert "did you mean outputs/spoken_snips?" in str(error.value)


def test_what_counts_as_a_local_path() -> None:
    for name in ("./data", "../shared/data/fsdd/trian", "/abs/path", "~/data", "data/fsdd/train", "C:\\data"):
        assert looks_like_local_path(name), name
    for name in ("librispeech_asr", "openslr/librispeech_asr", "hf-internal-testing/x.y", "hf://datasets/a/b"):
        assert not looks_like_local_path(name), name
    assert missing_path_message("/no/such/root/at/all") == "no such file or folder: /no/such/root/at/all"


def test_a_file_that_is_not_a_manifest_is_named(tmp_path: Path) -> None:
    sf.write(tmp_path / "clip.wav", tone(0.1), 16000)
    with pytest.raises(DataSourceError, match=r"clip.wav: not a dataset folder or a manifest file"):
        load_source(str(tmp_path / "clip.wav"), "train")


# ------------------------------------------------------------------ CSV dialects


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.3), "hello")])
    metadata = root / "train" / "metadata.csv"
    metadata.write_bytes("\ufefffile_name,transcript\r\na.wav,hello\r\n".encode("utf-8"))  # Excel's "CSV UTF-8"
    raw = load_source(str(root), "train")
    assert raw.column_names == ["file_name", "transcript"]
    dataset, report = load_speech_split(DataArguments(dataset_name=str(root)), "train", sampling_rate=16000)
    assert not report.bad and list(dataset["text"]) == ["hello"]


def test_spaces_after_the_delimiter_are_not_part_of_names_or_cells(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.3), "x")])
    (root / "train" / "metadata.csv").write_text('file_name, transcript\na.wav, "hello, world"\n')
    dataset, report = load_speech_split(DataArguments(dataset_name=str(root)), "train", sampling_rate=16000)
    assert not report.bad and list(dataset["text"]) == ["hello, world"]


def test_a_row_with_more_cells_than_the_header_is_named_not_shifted(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.3), "x")])
    metadata = root / "train" / "metadata.csv"
    metadata.write_text("file_name,transcript\na.wav,hello\na.wav,hello, world\n")
    with pytest.raises(DataSourceError, match=r"metadata.csv: line 3 has 3 cells but the header names 2 columns"):
        load_source(str(root), "train")
    # a trailing delimiter (an empty extra cell) is harmless, and must not shift the columns of any row
    metadata.write_text("file_name,transcript\na.wav,hello,\na.wav,world\n")
    assert list(load_source(str(root), "train")["transcript"]) == ["hello", "world"]


# ------------------------------------------------------------------ max_*_samples


@pytest.mark.parametrize("key", ["max_train_samples", "max_eval_samples"])
@pytest.mark.parametrize("value", [0, -3])
def test_max_samples_below_one_is_refused_naming_the_key(key: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{key} must be at least 1, or null for all rows"):
        DataArguments(dataset_name="d", **{key: value})
    with pytest.raises(ConfigError, match=f"c.yaml: {key} must be at least 1"):
        parse_into((DataArguments,), {"dataset_name": "d", key: value}, source="c.yaml")
    assert getattr(DataArguments(dataset_name="d", **{key: 1}), key) == 1
    assert getattr(DataArguments(dataset_name="d", **{key: None}), key) is None


def test_a_hub_like_name_with_a_close_local_folder_suggests_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "fsdd").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataSourceError) as error:
        load_source("fssd", "train")  # offline in tests: the Hub lookup fails
    assert "nor is it a local folder: no such file or folder: fssd; did you mean fsdd?" in str(error.value)
    with pytest.raises(DataSourceError) as error:
        load_source("openslr/nothing_like_it", "train")
    assert "local folder" not in str(error.value)
