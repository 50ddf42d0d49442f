"""Publish a trained model directory to the Hugging Face Hub, or rehearse it with a dry run.

What goes up is an explicit list, never "the folder": safetensors weights, ``config.json``,
``generation_config.json``, the processor/tokenizer files, the model card ``README.md``,
``eval_results.json``, the card's pictures, ``finetune_config.yaml`` and, for a run resumed with changed
settings, ``finetune_config_history.yaml``. Checkpoints, optimizer states, pickles (``*.bin``, ``*.pt``),
per-row predictions, data reports (which hold local paths and transcripts), the Trainer's arguments and
state, and the saved zero-shot scores (already in ``eval_results.json``) stay home.

No published file names a folder of this machine: the run's own files (results, configs, the card) go up
as copies in which every absolute local path, and every mention of the home folder or of the model
directory, is shown by its last component only (:func:`finetune.hub.card.without_local_paths`, the card's
own rule); transformers' configs get the same for the values of keys naming a path (``_name_or_path``,
``tokenizer_file``...). The files in the model directory stay as they are. The upload itself is
huggingface_hub's ``HfApi.create_repo`` + one ``HfApi.create_commit`` of exactly those files.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, then ``hf auth login``'s file) via
``huggingface_hub.get_token()``; it is handed to the client and never logged or printed. ``HF_ENDPOINT``
is read when pushing, so a private Hub mirror (or a test server) set after import is honoured.

A dry run does everything except the network calls: it writes the card if missing, validates it,
and writes ``hub_upload_manifest.json`` (repo id, visibility, and each file's size and sha256, as sent:
a file whose local paths were replaced is marked ``local_paths_removed``) into the model directory,
listing exactly what a real push would send. A real push writes the same manifest with the commit URL
added.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from finetune.hub.card import local_roots, validate_card, without_local_paths, write_model_card
from finetune.outputs import (
    CONFUSION_MATRIX,
    EVAL_RESULTS,
    GENERATION_CONFIG,
    HUB_MANIFEST,
    MODEL_CARD,
    MODEL_CONFIG,
    RUN_CONFIG,
    RUN_CONFIG_HISTORY,
    TRAINING_CURVE,
    write_json,
)

logger = logging.getLogger(__name__)

MANIFEST = HUB_MANIFEST
# Top-level files that make a loadable, documented model repo (patterns are matched per file name).
UPLOAD_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "feature_extractor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "normalizer.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    MODEL_CARD,
    EVAL_RESULTS,
    TRAINING_CURVE,
    CONFUSION_MATRIX,
    RUN_CONFIG,
    RUN_CONFIG_HISTORY,
)
REQUIRED = (MODEL_CONFIG, MODEL_CARD)
# the run's own files: any string in them may be a local path (config values, dataset and model sources)
OWN_FILES = (EVAL_RESULTS, RUN_CONFIG, RUN_CONFIG_HISTORY, MODEL_CARD)
# transformers' configs: only values of keys naming a path; their other strings (tokens, templates) are data
MODEL_CONFIGS = (MODEL_CONFIG, GENERATION_CONFIG, "preprocessor_config.json", "processor_config.json",
                 "feature_extractor_config.json", "tokenizer_config.json", "model.safetensors.index.json")
PATH_KEY_SUFFIXES = ("name_or_path", "_path", "_dir", "_file", "_files")
UNSAFE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "pytorch_model.bin.index.json")


class PushError(ValueError):
    """A model dir that cannot be published as it is, or no credentials; the message says what to do."""


@dataclass
class PushResult:
    repo_id: str
    private: bool
    files: list[str]
    manifest: Path
    dry_run: bool
    commit_url: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)


def files_to_upload(model_dir: Path) -> list[str]:
    """The top-level files of ``model_dir`` that a push sends, sorted; checks that the set is complete."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PushError(f"{model_dir}: not a directory")
    present = {p.name for p in model_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    chosen = sorted(name for name in present if any(Path(name).match(pattern) for pattern in UPLOAD_PATTERNS))
    if not any(name.endswith(".safetensors") for name in chosen):
        unsafe = sorted(present & set(UNSAFE_WEIGHTS))
        hint = f" (found {', '.join(unsafe)}: re-save with safetensors, pickled weights are not published)" if unsafe \
            else ""
        raise PushError(f"{model_dir}: no *.safetensors weights to upload{hint}")
    missing = [name for name in REQUIRED if name not in chosen]
    if missing:
        raise PushError(f"{model_dir}: missing {', '.join(missing)}")
    return chosen


def push_model(model_dir: str | os.PathLike, repo_id: str, *, private: bool = False, dry_run: bool = False,
               commit_message: str | None = None, revision: str | None = None) -> PushResult:
    """Upload ``model_dir`` to ``repo_id`` (created if needed), or with ``dry_run`` only list what would go.

    The model card is written first if the directory has none, and validated in any case.
    """
    model_dir = Path(model_dir)
    _check_repo_id(repo_id)
    if not (model_dir / MODEL_CARD).is_file():
        write_model_card(model_dir, repo_id=repo_id)
    validate_card((model_dir / MODEL_CARD).read_text(encoding="utf-8"), source=str(model_dir / MODEL_CARD))
    files = files_to_upload(model_dir)
    published = published_copies(model_dir, files)
    sizes = {name: len(published[name]) if name in published else (model_dir / name).stat().st_size
             for name in files}
    manifest = {
        "repo_id": repo_id,
        "private": private,
        "revision": revision or "main",
        "dry_run": dry_run,
        "files": [{"path": name, "size": sizes[name],
                   "sha256": hashlib.sha256(published[name]).hexdigest() if name in published
                   else _sha256(model_dir / name),
                   **({"local_paths_removed": True} if name in published else {})} for name in files],
    }
    result = PushResult(repo_id=repo_id, private=private, files=files, manifest=model_dir / MANIFEST,
                        dry_run=dry_run, sizes=sizes)
    if dry_run:
        write_json(result.manifest, manifest)
        logger.info("dry run: %d files (%s) would be uploaded to %s", len(files), _megabytes(sizes), repo_id)
        return result

    message = commit_message or f"Upload {model_dir.name} with finetune"
    result.repo_id, result.commit_url = _upload(model_dir, repo_id, files, published, private=private,
                                                revision=revision, commit_message=message)
    write_json(result.manifest, {**manifest, "repo_id": result.repo_id, "commit_url": result.commit_url})
    logger.info("pushed %d files to %s: %s", len(files), result.repo_id, result.commit_url)
    return result


def published_copies(model_dir: Path, files: list[str]) -> dict[str, bytes]:
    """The content to send instead of the local file, for each of ``files`` that names a local folder
    (see the module docstring); files without one are absent and go up as they are."""
    model_dir = Path(model_dir)
    roots = local_roots(model_dir)
    copies = {}
    for name in files:
        if name not in OWN_FILES and name not in MODEL_CONFIGS:
            continue
        data = (model_dir / name).read_bytes()
        cleaned = _without_local_paths(name, data, roots)
        if cleaned != data:
            copies[name] = cleaned
    return copies


def _without_local_paths(name: str, data: bytes, roots: tuple[str, ...]) -> bytes:
    keys = None if name in OWN_FILES else (lambda key: key.lower().endswith(PATH_KEY_SUFFIXES))
    try:
        text = data.decode("utf-8")
        if name.endswith(".json"):
            value = json.loads(text)
            cleaned = without_local_paths(value, roots, keys=keys)
            return data if cleaned == value else (json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n").encode()
        if name.endswith((".yaml", ".yml")):
            value = yaml.safe_load(text)
            cleaned = without_local_paths(value, roots, keys=keys)
            if cleaned == value:
                return data
            comments = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(True)))
            return (comments + yaml.safe_dump(cleaned, sort_keys=False, allow_unicode=True)).encode()
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise PushError(f"{name} cannot be checked for local paths before it is published ({error}): fix or "
                        "remove it") from None
    # prose (the card): only what certainly is a path, the home folder's and the model directory's
    return without_local_paths(text, roots, whole_values=False).encode()


def _upload(model_dir: Path, repo_id: str, files: list[str], published: dict[str, bytes], *, private: bool,
            revision: str | None, commit_message: str) -> tuple[str, str]:
    """Create the repo if needed and commit ``files`` (``published``'s content where it has one);
    returns (full repo id, commit URL)."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (or use --dry-run)")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or constants.ENDPOINT, token=token)
    try:
        # a bare name is created under the token's account: the returned URL gives the full owner/name
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        operations = [CommitOperationAdd(path_in_repo=name,
                                         path_or_fileobj=published[name] if name in published
                                         else str(model_dir / name))
                      for name in files]
        info = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            repo_type="model",
        )
    except OfflineModeIsEnabled as error:
        raise PushError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use --dry-run") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise PushError(f"the Hub refused the upload to {repo_id} (HTTP {status}): {_first_line(error)}") from error
    return repo_id, str(info.commit_url)


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if not repo_id or len(parts) > 2 or not all(parts) or any(p.startswith((".", "-")) for p in parts):
        raise PushError(f"invalid repo id {repo_id!r}: expected 'name' or 'owner/name'")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _megabytes(sizes: dict[str, int]) -> str:
    return f"{sum(sizes.values()) / 1e6:.1f} MB"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
