"""Write the model card (``README.md``) of a trained model from what the run saved beside it.

Everything on the card is read from files in the model directory, never typed in: the evaluation
(``eval_results.json``: WER/CER for ASR, accuracy/macro-F1 for classifiers), the exact config
(``finetune_config.yaml``), the Trainer's arguments and log (``training_args.json``,
``trainer_state.json``), the data report (``data_report.json``), the model's ``config.json``, the
pictures (``training_curve.png``, ``confusion_matrix.png``), and the license and attribution of local
training data from the ``SOURCE.md`` kept beside it. So ``finetune card --model DIR`` can regenerate
the card at any time and get the same result.

The YAML header follows the Hub's model-card spec (``license``, ``language``, ``tags``, ``datasets``,
``base_model``, ``pipeline_tag``, ``model-index``); it is built with ``huggingface_hub.ModelCardData``
and read back with ``huggingface_hub.ModelCard`` before the file is written (:func:`validate_card`),
so a malformed ``model-index`` fails here rather than on upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from finetune.data.text import language_code
from finetune.outputs import (
    CONFUSION_MATRIX,
    DATA_REPORT,
    EVAL_RESULTS,
    GENERATION_CONFIG,
    MODEL_CARD,
    MODEL_CONFIG,
    RUN_CONFIG,
    RUN_CONFIG_HISTORY,
    TRAINER_STATE,
    TRAINING_ARGS,
    TRAINING_CURVE,
    write_text,
)
from finetune.tasks import UnknownTaskError, all_tasks, detect_task, get_task
from finetune.tasks.base import CardFacts

logger = logging.getLogger(__name__)

# model_cards/template.md: read from the source tree (editable installs), or from where a wheel installs it
# (pyproject's data-files: <prefix>/share/finetune/model_cards/)
TEMPLATE_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "model_cards" / "template.md",
    Path(sys.prefix) / "share" / "finetune" / "model_cards" / "template.md",
)
CARD_NAME = MODEL_CARD


def default_template() -> Path:
    """The model card template shipped with finetune."""
    for candidate in TEMPLATE_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"model card template not found in {[str(c) for c in TEMPLATE_CANDIDATES]}: "
                            "reinstall finetune, or pass template=")

# Offline aliases of the registry -> where the weights come from, their license and language
KNOWN_BASE_MODELS = {
    "offline:whisper-tiny.en": ("openai/whisper-tiny.en", "apache-2.0", "en"),
    "offline:all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0", "en"),
}
SCRATCH_PREFIX = "scratch:"  # model_name_or_path of a run trained from random initialisation
# spelled-out licenses in SOURCE.md -> Hub license ids
LICENSE_IDS = (
    (re.compile(r"CC[ -]BY[ -]SA[ -]4\.0", re.I), "cc-by-sa-4.0"),
    (re.compile(r"CC[ -]BY[ -]4\.0", re.I), "cc-by-4.0"),
    (re.compile(r"\bCC0\b", re.I), "cc0-1.0"),
    (re.compile(r"\bMIT\b"), "mit"),
    (re.compile(r"Apache[ -]2\.0", re.I), "apache-2.0"),
)
# Trainer arguments worth a row in the hyperparameter table, in this order
HYPERPARAMETERS = (
    "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "warmup_steps", "warmup_ratio", "lr_scheduler_type", "optim",
    "weight_decay", "max_grad_norm", "seed", "fp16", "bf16", "gradient_checkpointing",
)
FRAMEWORKS = ("finetune", "transformers", "torch", "datasets", "tokenizers", "huggingface_hub")


class ModelCardError(ValueError):
    """A model dir that cannot be described, or a card whose metadata does not parse."""


@dataclass
class DataSource:
    """License and attribution of one local dataset, from its SOURCE.md."""

    title: str
    license: str
    attribution: str
    license_id: str | None


def write_model_card(output_dir: str | os.PathLike, *, repo_id: str | None = None, license: str | None = None,
                     language: str | None = None, template: Path | None = None) -> Path:
    """Render ``<output_dir>/README.md`` from the run's files; validate it; return its path.

    ``repo_id`` names the model in the usage snippet and the model-index (default: the folder name).
    ``license``/``language`` override what is derived (the base model's, where it is known).
    """
    model_dir = Path(output_dir)
    content = render_model_card(model_dir, repo_id=repo_id, license=license, language=language, template=template)
    validate_card(content, source=str(model_dir / CARD_NAME))
    path = model_dir / CARD_NAME
    write_text(path, content)
    logger.info("wrote model card %s", path)
    return path


def render_model_card(model_dir: Path, *, repo_id: str | None = None, license: str | None = None,
                      language: str | None = None, template: Path | None = None) -> str:
    """The card's text; :func:`write_model_card` validates and writes it."""
    from huggingface_hub import ModelCard, ModelCardData

    config = _read_json(model_dir / MODEL_CONFIG, required=True)
    results = _read_json(model_dir / EVAL_RESULTS)
    run_config = _read_yaml(model_dir / RUN_CONFIG)
    training_args = _read_json(model_dir / TRAINING_ARGS)
    state = _read_json(model_dir / TRAINER_STATE)
    data_report = _read_json(model_dir / DATA_REPORT)
    generation = _read_json(model_dir / GENERATION_CONFIG)
    history = _read_history(model_dir / RUN_CONFIG_HISTORY)
    roots = local_roots(model_dir)

    task_name = results.get("task") or run_config.get("task") or _task_from_architectures(model_dir)
    task = get_task(task_name)
    facts = task.card
    pipeline_tag = facts.pipeline_tag
    name = repo_id or model_dir.resolve().name
    base_source = str(run_config.get("model_name_or_path") or results.get("model") or "")
    if base_source.startswith(SCRATCH_PREFIX) or (run_config.get("model_config") and not base_source):
        base_source = ""  # random initialisation: there is no base model
    base_id, base_license, base_language = _base_model(base_source)
    dataset_source = str(run_config.get("dataset_name") or results.get("dataset") or "")
    eval_source = str(results.get("dataset") or run_config.get("eval_dataset_name") or dataset_source)
    sources = [s for s in dict.fromkeys([dataset_source, eval_source]) if s]
    data_sources = [found for s in sources if (found := find_data_source(s))]
    hub_datasets = [s for s in sources if _looks_like_hub_id(s)]
    languages = _card_languages(language or (generation or {}).get("finetune_languages") or run_config.get("language")
                                or _language_from_generation(generation) or base_language)

    eval_results = (_eval_results(results, facts, eval_source, run_config)
                    if _has_metrics(results, facts) else None)
    card_data = ModelCardData(
        license=license or base_license or "other",
        language=(languages[0] if len(languages) == 1 else languages) if languages else None,
        tags=_tags(pipeline_tag, config, task_name),
        datasets=hub_datasets or None,
        base_model=base_id,
        pipeline_tag=pipeline_tag,
        library_name="transformers",
        metrics=list(dict.fromkeys(m.metric_type for m in facts.metrics)) if eval_results else None,
        model_name=name,
        eval_results=eval_results,
    )
    if card_data.license == "other":
        card_data.license_name = "unspecified"  # the Hub asks for a name with 'other'
    context = {
        "model_name": name,
        "summary": _summary(facts, config, base_source, base_id, dataset_source, languages, roots),
        **_results_context(results, facts, eval_source, model_dir),
        "usage_python": task.usage_python(name, config),
        "usage_cli": task.usage_cli(name),
        "decoding_text": _decoding_text(generation),
        "intended_use": _intended_use(facts, dataset_source, languages, roots),
        "limitations": _limitations(facts, config, data_sources, results, history),
        "training_data": _training_data_text(dataset_source, run_config, data_sources, roots),
        "data_rows": _data_rows(data_report, roots),
        "data_sources": data_sources,
        "base_model_text": "\n\n".join(filter(None, [_base_model_text(base_source, base_id, run_config, roots),
                                                       _resumed_text(history, roots)])),
        "hyperparameters": _hyperparameters(training_args, run_config, state),
        "run_config": (yaml.safe_dump(without_local_paths(run_config, roots), sort_keys=False).strip()
                       if run_config else ""),
        "training_log": _training_log(state),
        "training_curve": _training_curve(model_dir, state, training_args),
        "framework_versions": _framework_versions(),
    }
    card = ModelCard.from_template(card_data, template_path=str(template or default_template()), **context)
    # the card is published: no folder of this machine is named on it, whatever a file beside the model held
    text = without_local_paths(str(card), roots, whole_values=False)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def validate_card(content: str, *, source: str = CARD_NAME) -> Any:
    """Parse the card back with huggingface_hub's tools; raise ModelCardError naming what is wrong.

    Offline stand-in for the Hub's own validation: the YAML header must parse, ``model-index`` must
    convert back into EvalResults, and the fields the Hub indexes must have the right types.
    """
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        card = ModelCard(content)
    except (ValueError, yaml.YAMLError) as error:
        raise ModelCardError(f"{source}: metadata does not parse: {error}") from error
    data = card.data.to_dict()
    problems = []
    if not data.get("license"):
        problems.append("no license")
    pipeline_tags = sorted({task.card.pipeline_tag for task in all_tasks()})
    if data.get("pipeline_tag") not in pipeline_tags:
        problems.append(f"pipeline_tag {data.get('pipeline_tag')!r} is not one of {pipeline_tags}")
    for key in ("tags", "datasets", "metrics"):
        if key in data and not (isinstance(data[key], list) and all(isinstance(v, str) for v in data[key])):
            problems.append(f"{key} must be a list of strings")
    if "model-index" in data:
        try:
            _, results = model_index_to_eval_results(data["model-index"])
        except (KeyError, TypeError, ValueError) as error:
            problems.append(f"model-index does not parse: {error}")
        else:
            for result in results:
                if not isinstance(result.metric_value, (int, float)):
                    problems.append(f"model-index value of {result.metric_type} is not a number")
    if problems:
        raise ModelCardError(f"{source}: invalid card metadata: " + "; ".join(problems))
    return card


# ---------------------------------------------------------------------------------------------- local paths

# Nothing published (the card, the files ``push`` uploads) names a folder of the machine the model was
# trained on: an absolute path is shown by its last component only, which is all a reader needs, while
# the rest may hold the user's name. One set of helpers for the card and for push.
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_PREFIXED = re.compile(r"^([A-Za-z][\w+.-]*:)(?!//)(.+)$", re.S)  # scratch:/abs/config.json; not http://
_FILE_URL = "file://"
_PATH_CHARS = r"[^\s`'\"|()\[\]{}<>,;]*"


def _homes() -> set[str]:
    home = os.path.expanduser("~")
    return {h.rstrip("/\\") for h in (home, str(Path(home).resolve())) if h != "~"}


def local_roots(model_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Folders never to be named in anything published: the user's home and ``model_dir`` (as given made
    absolute, and resolved), longest first; ``/`` itself is no root."""
    roots = _homes()
    if model_dir is not None:
        roots |= {os.path.abspath(model_dir).rstrip("/\\"), str(Path(model_dir).resolve()).rstrip("/\\")}
    return tuple(sorted((r for r in roots if len(Path(r).parts) > 1), key=len, reverse=True))


def _is_local(text: str, roots: Iterable[str]) -> bool:
    return (text.startswith(("/", "~")) or bool(_WINDOWS_ABSOLUTE.match(text))
            or any(text == root or text.startswith(root + "/") for root in roots))


def _last_component(text: str) -> str:
    stripped = text.rstrip("/\\")
    if stripped == "~" or stripped in _homes():
        return "~"  # the home folder's own name is the user's
    pure = PureWindowsPath(stripped) if _WINDOWS_ABSOLUTE.match(stripped) else PurePosixPath(stripped)
    return pure.name or text


def shown_path(name: str, roots: Iterable[str] = ()) -> str:
    """``name`` as published: an absolute local path (or one in the home folder or under ``roots``, also
    behind a ``scratch:``-style prefix or as a ``file://`` URL) by its last component; anything else
    (Hub ids, ``sample:`` names, URLs, plain words) as it is."""
    if not isinstance(name, str) or not name:
        return name
    roots = tuple(roots)
    if name.startswith(_FILE_URL):
        rest = name[len(_FILE_URL):]
        return _last_component(rest) if _is_local(rest, roots) else name
    if not _WINDOWS_ABSOLUTE.match(name) and (match := _PREFIXED.match(name)):
        prefix, rest = match.groups()
        return prefix + _last_component(rest) if _is_local(rest, roots) else name
    return _last_component(name) if _is_local(name, roots) else name


def without_roots(text: str, roots: Iterable[str]) -> str:
    """Every mention of a path under ``roots`` inside ``text`` (a message, a card) by its last component."""
    for root in roots:
        pattern = (r"(?<![\w.~/-])(?:file://)?" + re.escape(root) + r"(?![\w.-])(?:[/\\]" + _PATH_CHARS + ")?")
        text = re.sub(pattern, lambda m: _last_component(m[0].removeprefix(_FILE_URL)), text)
    return text


def without_local_paths(value: Any, roots: Iterable[str] = (), *, whole_values: bool = True,
                        keys: Callable[[str], bool] | None = None) -> Any:
    """``value`` (a string, or JSON/YAML data) with local paths replaced as :func:`shown_path` shows them,
    in every string (mapping keys too) and in text that mentions a path under ``roots``.

    ``whole_values=False`` only replaces the mentions of ``roots`` (for prose, where a leading ``/`` is
    not a path). ``keys`` limits the replacing to the values of the mapping keys it accepts, recursively
    (for a file of someone else's format whose other strings are data: tokens, templates)."""
    roots = tuple(roots)

    def scrub(item: Any, chosen: bool) -> Any:
        if isinstance(item, str):
            if not chosen:
                return item
            return without_roots(shown_path(item, roots) if whole_values else item, roots)
        if isinstance(item, dict):
            return {(scrub(k, True) if keys is None and isinstance(k, str) else k):
                    scrub(v, chosen or (keys is not None and isinstance(k, str) and keys(k)))
                    for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [scrub(v, chosen) for v in item]
        return item

    return scrub(value, keys is None)


# ---------------------------------------------------------------------------------------------- reading


def _read_json(path: Path, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelCardError(f"{path.parent}: no {path.name}, so this is not a saved model directory")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ModelCardError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise ModelCardError(f"{path}: expected a JSON object")
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ModelCardError(f"{path}: not valid YAML ({error})") from error
    return value if isinstance(value, dict) else {}


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The entries of finetune_config_history.yaml (a YAML list, oldest first); [] without one."""
    if not path.is_file():
        return []
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ModelCardError(f"{path}: not valid YAML ({error})") from error
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _task_from_architectures(model_dir: Path) -> str:
    """The task of a model dir without results or run config (an imported or hand-made model)."""
    try:
        return detect_task(model_dir)
    except UnknownTaskError as error:
        raise ModelCardError(str(error)) from None


def _base_model(source: str) -> tuple[str | None, str | None, str | None]:
    """(Hub id, license, language) of the starting weights, where they are known."""
    if source in KNOWN_BASE_MODELS:
        return KNOWN_BASE_MODELS[source]
    if _looks_like_hub_id(source):
        return source, None, None
    return None, None, None


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` that is not a local path or an alias."""
    if not name or ":" in name or name.startswith((".", "/", "~")) or Path(name).expanduser().exists():
        return False
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name))


def find_data_source(name: str) -> DataSource | None:
    """License and attribution from the SOURCE.md of a local dataset (or of the shipped sample).

    Looks in the data folder and up to two folders above it, so a split folder or a manifest inside
    the dataset finds the dataset's SOURCE.md. Relative names are tried from the working directory.
    """
    if name.startswith("sample:"):
        from finetune.data.sources import resolve_sample

        try:
            folder = resolve_sample(name)
        except ValueError:
            return None
    else:
        path = Path(name).expanduser()
        if not path.exists():
            return None
        folder = path if path.is_dir() else path.parent
    for candidate in (folder, folder.parent, folder.parent.parent):
        source_md = candidate / "SOURCE.md"
        if source_md.is_file():
            return parse_source_md(source_md)
    return None


def parse_source_md(path: Path) -> DataSource:
    """Title (first heading), the ``License:`` text and the ``Source:`` attribution of a SOURCE.md."""
    text = path.read_text(encoding="utf-8")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), path.parent.name)
    license_text = _field(text, "License") or "license not stated in SOURCE.md"
    attribution = _field(text, "Sources") or _field(text, "Source") or ""
    license_id = next((hub_id for pattern, hub_id in LICENSE_IDS if pattern.search(license_text)), None)
    return DataSource(title=title, license=license_text.rstrip("."), attribution=_sentence(attribution),
                      license_id=license_id)


def _field(text: str, name: str) -> str | None:
    """The value of ``Name: ...`` in SOURCE.md, continued over wrapped lines until a blank or new field."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"{name}:"):
            value = [line[len(name) + 1:].strip()]
            for following in lines[index + 1:]:
                if not following.strip() or re.match(r"^[A-Z][\w ]*:", following) or following.startswith("#"):
                    break
                value.append(following.strip())
            return " ".join(v for v in value if v)
    return None


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    return f"Source: {text}" if text.endswith(".") else f"Source: {text}."


def _card_languages(language: str | list[str] | None) -> list[str]:
    """One language or the list a multilingual run trained on, as codes."""
    given = [language] if isinstance(language, str) else list(language or [])
    return [code for code in dict.fromkeys(language_code(item) for item in given) if code]


def _language_from_generation(generation: dict[str, Any]) -> str | None:
    if generation and generation.get("is_multilingual") is False:
        return "en"
    return generation.get("language") if generation else None


def _tags(pipeline_tag: str, config: dict[str, Any], task: str | None) -> list[str]:
    tags = ["finetune", pipeline_tag]
    if config.get("model_type"):
        tags.append(str(config["model_type"]))
    if task:
        tags.append(task.replace("_", "-"))
    return list(dict.fromkeys(tags))


def _has_metrics(results: dict[str, Any], facts: CardFacts) -> bool:
    return any(metric.key in results for metric in facts.metrics)


# ---------------------------------------------------------------------------------------------- results


def _percent(value: float) -> float:
    return round(100.0 * float(value), 2)


def _eval_results(results: dict[str, Any], facts: CardFacts, dataset: str,
                  run_config: dict[str, Any]) -> list[Any]:
    """model-index entries, one per figure the task states, each naming the dataset and split."""
    from huggingface_hub import EvalResult

    split = results.get("split") or run_config.get("eval_split_name") or "test"
    common = {
        "task_type": facts.pipeline_tag,
        "task_name": facts.pipeline_name,
        "dataset_type": _dataset_type(dataset),
        "dataset_name": _dataset_title(dataset),
        "dataset_split": split,
        "dataset_config": run_config.get("dataset_config_name"),
    }
    return [EvalResult(metric_type=metric.metric_type, metric_name=metric.name, metric_args=metric.args,
                       metric_value=_percent(results[metric.key]) if metric.percent
                       else round(float(results[metric.key]), 4), **common)
            for metric in facts.metrics if metric.key in results]


def _dataset_type(dataset: str) -> str:
    """Hub id as is; a local folder or sample by its name (the model-index needs some identifier)."""
    if _looks_like_hub_id(dataset):
        return dataset
    name = dataset.split(":", 1)[1] if dataset.startswith("sample:") else Path(dataset).name or dataset
    return name or "local"


def _dataset_title(dataset: str) -> str:
    found = find_data_source(dataset)
    return found.title if found else _dataset_type(dataset)


def _results_context(results: dict[str, Any], facts: CardFacts, dataset: str, model_dir: Path) -> dict[str, Any]:
    if not _has_metrics(results, facts):
        return {"results_table": []}
    labels = {metric.key: metric.name.replace(", %)", ")") for metric in facts.metrics}
    table = [(labels[key], f"{_percent(results[key]):.2f}%") for key in labels if key in results]
    if "seconds_per_sample" in results:
        table.append(("seconds per example (evaluation)", f"{results['seconds_per_sample']:.4g}"))
    zero_shot = results.get("zero_shot") if isinstance(results.get("zero_shot"), dict) else {}
    zero_table = [(labels[k], f"{_percent(v):.2f}%") for k, v in zero_shot.items()
                  if k in labels and isinstance(v, (int, float))]
    per_class = results.get("per_class") if isinstance(results.get("per_class"), dict) else {}
    per_class_rows = [
        [label, f"{m.get('precision', 0):.3f}", f"{m.get('recall', 0):.3f}", f"{m.get('f1', 0):.3f}",
         str(m.get("support", ""))]
        for label, m in per_class.items()
    ] if len(per_class) <= 30 else []  # 77 intents make an unreadable table; the confusion matrix stays
    return {
        "results_table": table,
        "eval_dataset": _dataset_title(dataset),
        "eval_split": results.get("split", "test"),
        "eval_samples": results.get("num_samples", "?"),
        "skipped_rows": results.get("skipped_rows", 0),
        "zero_shot_table": zero_table,
        "per_class_table": per_class_rows,
        "confusion_matrix": CONFUSION_MATRIX if (model_dir / CONFUSION_MATRIX).is_file() else None,
        "asr_note": facts.scoring_note,
    }


# ---------------------------------------------------------------------------------------------- prose


def _summary(facts: CardFacts, config: dict[str, Any], base_source: str, base_id: str | None, dataset: str,
             languages: list[str], roots: tuple[str, ...] = ()) -> str:
    what = facts.what
    architecture = ", ".join(config.get("architectures") or [config.get("model_type", "model")])
    origin = base_id or shown_path(base_source, roots)
    start = f"fine-tuned from `{origin}`" if origin else "trained from scratch"
    data = f" on `{shown_path(dataset, roots)}`" if dataset else ""
    lang = f" Language{'s' if len(languages) > 1 else ''}: {', '.join(languages)}." if languages else ""
    tool = "[finetune](https://pypi.org/project/finetune/)"
    return f"This is {what}, a `{architecture}` {start}{data} with {tool}.{lang}"


def _intended_use(facts: CardFacts, dataset: str, languages: list[str], roots: tuple[str, ...] = ()) -> str:
    lang = f"{'/'.join(languages)} " if languages else ""
    dataset = shown_path(dataset, roots)
    domain = f"recordings like those of `{dataset}`" if dataset and facts.pipeline_tag != "text-classification" \
        else (dataset or "data like its training data")
    return facts.intended_use.format(language=lang, domain=domain)


def _limitations(facts: CardFacts, config: dict[str, Any], data_sources: list[DataSource],
                 results: dict[str, Any], history: list[dict[str, Any]] | None = None) -> list[str]:
    items = ["It was fine-tuned on a single dataset; expect lower accuracy on other speakers, accents, "
             "microphones, noise levels or wording than those the evaluation covers."]
    if config.get("model_type") == "whisper" and facts.pipeline_tag == "automatic-speech-recognition":
        items.append(_whisper_window_limit(config))
    items.extend(facts.limitations)
    if isinstance(results.get("oos"), dict):
        items.append(f"Out-of-scope queries are rejected below a confidence of {results['oos'].get('threshold')}.")
    for source in data_sources:
        if source.license_id and "sa" in source.license_id.split("-"):
            items.append(f"The training data ({source.title}) is licensed {source.license_id}: check whether its "
                         "ShareAlike terms apply to your use of this model.")
    deciding = _weight_deciding_changes(history or [])
    if deciding:
        items.append(f"Part of the training ran with other values of {', '.join(f'`{k}`' for k in deciding)} "
                     f"(the run was resumed with changed settings): neither {RUN_CONFIG} nor the earlier config in "
                     f"{RUN_CONFIG_HISTORY} alone describes how these weights were trained.")
    return items


def _decoding_text(generation: dict[str, Any]) -> str:
    """The decoding a Whisper was saved with (:mod:`finetune.models.decoding_defaults`), as the call that
    applies it with ``pipeline()``."""
    from finetune.models.decoding_defaults import saved_decoding

    saved = saved_decoding(generation)
    if not saved:
        return ""
    return ("It was meant to be decoded with these settings (saved in `generation_config.json` as "
            "`finetune_decoding`; `finetune transcribe` applies them, `pipeline()` takes them per call):\n\n"
            f'```python\nprint(asr("recording.flac", generate_kwargs={saved!r}))\n```')


def _whisper_window_limit(config: dict[str, Any]) -> str:
    """What a Whisper's window means for its users, as it was trained (fixed, short, or dynamic)."""
    seconds = round(config.get("max_source_positions", 1500) / 50)
    marker = config.get("finetune_dynamic_context")
    if isinstance(marker, dict):
        trained = marker.get("trained_seconds")
        pieces = (f"It learnt from recordings of up to {trained:g} s: give it longer ones in pieces of at most that, "
                  "cut at pauses (as How to use shows, and as `finetune transcribe` and `finetune slu` do), not "
                  "whole or walked by timestamps." if isinstance(trained, (int, float)) and trained < 30 else
                  "Recordings longer than 30 s are best cut at pauses (`finetune transcribe` does), not walked by "
                  "timestamps, which it was not trained to predict.")
        return ("It was trained at a dynamic encoder context (each batch at its own length) and keeps the full "
                "30 s window, so pipeline(), CTranslate2 and faster-whisper run it unchanged at 30 s; `finetune "
                f"transcribe` runs each clip at its own length. {pieces}")
    if seconds < 30:
        return (f"The encoder sees {seconds} s of audio at a time. A longer clip given to pipeline() directly is "
                f"lost beyond {seconds} s or repeated; `finetune transcribe` and `finetune slu` cut longer "
                "recordings at pauses into pieces that fit, and refuse speech with no pause to cut at.")
    return ("The encoder sees 30 s of audio at a time; longer recordings are transcribed window by window, steered "
            "by the timestamps the model predicts.")


def _training_data_text(dataset: str, run_config: dict[str, Any], data_sources: list[DataSource],
                        roots: tuple[str, ...] = ()) -> str:
    if not dataset:
        return "The training data was not recorded with this model."
    split = shown_path(str(run_config.get("train_split_name", "train")), roots)
    parts = [f"Trained on `{shown_path(dataset, roots)}`, split `{split}`"]
    if run_config.get("max_train_samples"):
        parts.append(f" (first {run_config['max_train_samples']} rows)")
    parts.append(".")
    if not data_sources and not _looks_like_hub_id(dataset):
        parts.append(" No SOURCE.md was found beside the data, so its license is not stated here.")
    return "".join(parts)


def _data_rows(report: dict[str, Any], roots: tuple[str, ...] = ()) -> list[list[str]]:
    rows = []
    for split in report.get("splits", []) if report else []:
        total = split.get("total", "")
        kept = split.get("kept", "")
        skipped = total - kept if isinstance(total, int) and isinstance(kept, int) else ""
        rows.append([shown_path(str(split.get("split", "")), roots),
                     f"`{shown_path(str(split.get('dataset', '')), roots)}`", str(total), str(kept), str(skipped)])
    return rows


def _base_model_text(base_source: str, base_id: str | None, run_config: dict[str, Any],
                     roots: tuple[str, ...] = ()) -> str:
    if not base_source:
        architecture = str(run_config.get("model_config") or run_config.get("model_name_or_path") or "")
        architecture = architecture[len(SCRATCH_PREFIX):] if architecture.startswith(SCRATCH_PREFIX) else architecture
        where = f" with the architecture in `{shown_path(architecture, roots)}`" if architecture else ""
        return f"Trained from random initialisation{where}."
    if base_source and base_id and base_source != base_id:
        return f"Starting weights: `{base_id}` (loaded offline as `{shown_path(base_source, roots)}`)."
    if base_source:
        return f"Starting weights: `{shown_path(base_source, roots)}`."
    return ""


def _resumed_text(history: list[dict[str, Any]], roots: tuple[str, ...] = ()) -> str:
    """What finetune_config_history.yaml says: each resume that went on with changed settings, and what."""
    if not history:
        return ""
    lines = [f"This run was resumed with changed settings; each earlier config is kept in `{RUN_CONFIG_HISTORY}` "
             f"(`{RUN_CONFIG}` holds the last one):", ""]
    for entry in history:
        changed = entry.get("changed") if isinstance(entry.get("changed"), dict) else {}
        where = shown_path(str(entry.get("resumed_from") or "a checkpoint"), roots)
        when = f" ({entry['replaced_at']})" if entry.get("replaced_at") else ""
        keys = "; ".join(f"`{key}`: {_change_text(change, roots)}" for key, change in changed.items())
        lines.append(f"- resumed from `{where}`{when}: {keys or 'no recorded changes'}")
    return "\n".join(lines)


def _change_text(change: Any, roots: tuple[str, ...]) -> str:
    if not isinstance(change, dict) or not {"old", "new"} <= set(change):
        return "changed"
    return f"{_value_text(change['old'], roots)} -> {_value_text(change['new'], roots)}"


def _value_text(value: Any, roots: tuple[str, ...], limit: int = 60) -> str:
    value = without_local_paths(value, roots)
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=1000)
    text = text.strip().removesuffix("...").strip().replace("`", "'").replace("|", "/").replace("\n", " ")
    return f"`{text if len(text) <= limit else text[:limit - 3] + '...'}`"


def _weight_deciding_changes(history: list[dict[str, Any]]) -> list[str]:
    """Changed keys of the history that decide the weights (those a resume refuses unless allowed)."""
    from finetune.training.run_directory import refused_changes

    changes: dict[str, tuple[Any, Any]] = {}
    for entry in history:
        for key, change in (entry.get("changed") or {}).items() if isinstance(entry.get("changed"), dict) else ():
            if isinstance(change, dict):
                changes[str(key)] = (change.get("old"), change.get("new"))
    return sorted(refused_changes(changes)) if changes else []


def _hyperparameters(args: dict[str, Any], run_config: dict[str, Any], state: dict[str, Any]) -> list[tuple[str, str]]:
    source = {**run_config, **args}  # training_args.json holds every value the Trainer used
    skip = {"num_train_epochs"} if int(source.get("max_steps") or -1) > 0 else set()  # max_steps wins
    rows = [(key, str(source[key])) for key in HYPERPARAMETERS
            if key in source and key not in skip and source[key] not in (None, "")]
    if state.get("train_batch_size") and args.get("gradient_accumulation_steps"):
        world = int(args.get("world_size", 1) or 1)
        total = state["train_batch_size"] * int(args["gradient_accumulation_steps"]) * world
        rows.append(("total_train_batch_size (per device x accumulation x processes)", str(total)))
    if state.get("global_step"):
        rows.append(("steps trained", str(state["global_step"])))
        rows.append(("epochs trained", f"{float(state.get('epoch') or 0):.2f}"))
    return rows


def _training_log(state: dict[str, Any]) -> dict[str, list] | None:
    """One row per evaluation during training (step, epoch, last training loss, eval loss and metrics)."""
    history = state.get("log_history") or []
    evals = [h for h in history if any(k.startswith("eval_") for k in h) and "eval_runtime" in h]
    if not evals:
        return None
    metric_keys = sorted((k for k in evals[-1] if k.startswith("eval_") and k not in (
        "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")), key=lambda k: (k != "eval_loss", k))
    header = ["step", "epoch", "training loss", *[k.replace("eval_", "eval ") for k in metric_keys]]
    rows = []
    for entry in evals:
        losses = [h["loss"] for h in history if "loss" in h and h.get("step", 0) <= entry.get("step", 0)]
        rows.append([str(entry.get("step", "")), f"{float(entry.get('epoch') or 0):.2f}",
                     f"{losses[-1]:.4f}" if losses else "-",
                     *[_fmt(entry.get(k)) for k in metric_keys]])
    return {"header": header, "rows": rows}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")


def _training_curve(model_dir: Path, state: dict[str, Any], args: dict[str, Any]) -> str | None:
    """Use the run's training_curve.png; draw it from trainer_state.json when the run did not."""
    path = model_dir / TRAINING_CURVE
    if path.is_file():
        return TRAINING_CURVE
    if not any("loss" in h for h in state.get("log_history") or []):
        return None
    from finetune.evaluation.plots import plot_training_curve

    drawn = plot_training_curve(model_dir / TRAINER_STATE, path, metric=args.get("metric_for_best_model"))
    return TRAINING_CURVE if drawn else None


def _framework_versions() -> list[tuple[str, str]]:
    versions = []
    for name in FRAMEWORKS:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return versions
