"""Shared fixtures: offline settings, the ../shared data, and tiny random models built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches go to a temp folder: tests never write outside it or the repo."""
    cache = tmp_path_factory.mktemp("caches")
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")
    os.environ.setdefault("FINETUNE_CACHE", str(cache / "finetune"))
    import datasets

    datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Whisper with the real tiny.en tokenizer, saved as a model dir."""
    from tests.helpers import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from a second thread (and lose a lot on a busy 2-core machine); killed
    subprocesses run with OMP_NUM_THREADS=1 too, so in-process runs match them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiktoken_file() -> Path:
    """The real multilingual.tiktoken (OpenAI's multilingual Whisper vocabulary): already in the user's cache,
    else fetched from PyPI (the openai-whisper sdist) into the tests' own cache; skipped where neither works."""
    from finetune.models.whisper_vocabulary import (
        WhisperVocabularyError,
        multilingual_tiktoken_path,
    )

    reason = ""
    user_cache = Path.home() / ".cache" / "finetune" / "whisper-vocabulary"
    for cache_dir, download in ((user_cache, False), (None, True)):
        try:
            return multilingual_tiktoken_path(cache_dir, download=download)
        except WhisperVocabularyError as error:
            reason = str(error)
    pytest.skip(f"the multilingual Whisper vocabulary cannot be obtained here: {reason}")


@pytest.fixture(scope="session")
def tiny_multilingual_dir(tiktoken_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer Whisper with the real multilingual vocabulary, saved as a model dir."""
    from tests.helpers import build_tiny_multilingual_whisper

    return build_tiny_multilingual_whisper(tmp_path_factory.mktemp("tiny-multilingual"), tiktoken_path=tiktoken_file)
