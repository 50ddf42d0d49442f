"""The task protocol, and the one skeleton that trains and evaluates every Trainer-based task.

A task is a :class:`Task` subclass: its option groups, its Trainer defaults, and hooks that read a split,
learn what the training data decides (vocabulary, label set), build the Trainer's parts and score
predictions. Everything around those hooks happens once, here, for every task:

    train:    check -> seed -> resume point -> prepare -> read train -> fit -> encode -> read + encode eval
              -> data report -> zero-shot score (saved; put back on resume) -> adapt model -> build trainer
              -> train -> finish model -> save -> score -> eval_results.json + predictions.jsonl
    evaluate: load saved model -> read + encode split -> score -> the same output files

The Trainer itself comes from :func:`finetune.training.trainers.build_trainer`, so crash-safe checkpoint
marking and duration-bounded batching apply to every task without a task asking for them; so does the
speed and noise augmentation of the training clips (:mod:`finetune.data.augmentation`), whose keys every
Trainer task that reads audio takes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
from transformers import Trainer, TrainingArguments, set_seed

from finetune.config import ConfigError, DataArguments, ModelArguments, RunArguments
from finetune.data.augmentation import (
    AugmentationArguments,
    AugmentingCollator,
    build_augmenter,
    mark_for_augmentation,
)
from finetune.data.report import DataReport, write_reports
from finetune.data.sources import same_source
from finetune.data.text import Normalizer, scoring_normalizer
from finetune.outputs import ZERO_SHOT_RESULTS, read_zero_shot, write_eval_outputs, write_zero_shot
from finetune.training.checkpoints import checkpoint_to_resume
from finetune.training.trainers import build_trainer, save_trained

logger = logging.getLogger(__name__)

# Trainer defaults (differing from transformers' own) for every task
TRAINER_DEFAULTS: dict[str, Any] = {"report_to": "none", "save_total_limit": 2}
# ...for every task that reads audio
AUDIO_TRAINER_DEFAULTS: dict[str, Any] = {
    **TRAINER_DEFAULTS,
    "remove_unused_columns": False,  # the collators need the raw audio column
    "label_names": ["labels"],
    "length_column_name": "duration",
}
# ...and for the speech recognizers among them: the best checkpoint is the one with the lowest WER
ASR_TRAINER_DEFAULTS: dict[str, Any] = {**AUDIO_TRAINER_DEFAULTS, "metric_for_best_model": "wer",
                                        "greater_is_better": False}
# Trainer defaults that only concern saving and choosing checkpoints: left out when only evaluating
_TRAINING_ONLY_DEFAULTS = {"save_total_limit", "metric_for_best_model", "greater_is_better"}


@dataclass(frozen=True)
class MetricFact:
    """One figure of eval_results.json as the card's model-index states it."""

    key: str                       # the key in eval_results.json
    metric_type: str               # the Hub's metric id (wer, cer, accuracy, f1)
    name: str                      # as the card shows it
    percent: bool = False          # model-index value in percent (WER/CER, as transformers' examples report)
    args: dict[str, Any] | None = None


@dataclass(frozen=True)
class CardFacts:
    """What a model card says about the models a task saves; :mod:`finetune.hub.card` stays generic."""

    pipeline_tag: str              # the Hub's pipeline tag, also the `pipeline()` task
    pipeline_name: str             # its readable name in the model-index
    what: str                      # "a speech recognition model (audio to text)"
    intended_use: str              # with {language} and {domain} placeholders
    metrics: tuple[MetricFact, ...]
    limitations: tuple[str, ...] = ()
    scoring_note: str = ""         # how the figures were computed (shown under the results table)


@dataclass(frozen=True)
class Scores:
    """A task's scoring of one split: the figures for eval_results.json and one row per example."""

    metrics: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass
class TaskOptions:
    """The parsed config of one run: the shared option groups, and each of the task's own by class."""

    run: RunArguments
    data: DataArguments
    training: TrainingArguments
    model: ModelArguments | None = None
    groups: dict[type, Any] = field(default_factory=dict)

    def __getitem__(self, cls: type) -> Any:
        return self.groups[cls]

    @classmethod
    def from_parsed(cls, parsed: tuple[Any, ...]) -> TaskOptions:
        shared = {RunArguments: "run", DataArguments: "data", ModelArguments: "model"}
        values: dict[str, Any] = {"groups": {}}
        for options in parsed:
            if type(options) in shared:
                values[shared[type(options)]] = options
            elif isinstance(options, TrainingArguments):
                values["training"] = options
            else:
                values["groups"][type(options)] = options
        return cls(**values)

    def all(self) -> tuple[Any, ...]:
        return tuple(o for o in (self.run, self.model, self.data, *self.groups.values(), self.training) if o)


@dataclass
class TaskRun:
    """One training or evaluation run as the skeleton hands it to a task's hooks.

    The hooks fill in ``model`` and ``processor`` (whatever the Trainer's ``processing_class`` is) and
    may keep what later hooks need in ``state`` (a label map, a teacher, a language model path).
    """

    options: TaskOptions
    resume_from: str | None = None
    model: Any = None
    processor: Any = None
    validation: Any = None  # the Trainer's evaluation set during training, when it is not the scored split
    language: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def normalizer(self) -> Normalizer:
        """The normalizer of the normalized WER: the language's (English unless known otherwise); with rows
        in several languages, the basic one (each row's own where rows are scored one by one)."""
        languages = self.state.get("row_languages")
        if languages:
            return scoring_normalizer(next(iter(languages)) if len(languages) == 1 else "mul")
        return scoring_normalizer(self.language)


class Task:
    """The protocol every task implements (see the module docstring for the order of the hooks)."""

    name: ClassVar[str]
    architectures: ClassVar[frozenset[str]]   # saved models (config.json architectures) it can evaluate
    option_classes: ClassVar[tuple[type, ...]] = ()             # the task's own option groups
    evaluation_option_classes: ClassVar[tuple[type, ...]] = ()  # those `finetune evaluate` accepts
    training_arguments_class: ClassVar[type] = TrainingArguments
    uses_model_arguments: ClassVar[bool] = True
    uses_trainer: ClassVar[bool] = True
    reads_audio: ClassVar[bool] = True
    trainer_class: ClassVar[type] = Trainer
    defaults: ClassVar[dict[str, Any]] = TRAINER_DEFAULTS       # replace declared defaults of any key
    headline_metrics: ClassVar[tuple[str, ...]] = ()            # kept from a zero-shot score, in this order
    best_metric: ClassVar[str | None] = None                    # drawn beside the loss on the training curve
    zero_shot_key: ClassVar[str] = "zero_shot"
    card: ClassVar[CardFacts]

    # ------------------------------------------------------------------------------ the options

    def argument_classes(self) -> tuple[type, ...]:
        model = (ModelArguments,) if self.uses_model_arguments else ()
        augmentation = (AugmentationArguments,) if self.reads_audio and self.uses_trainer else ()
        return (RunArguments, *model, DataArguments, *self.option_classes, *augmentation,
                self.training_arguments_class)

    def check(self, options: TaskOptions) -> None:
        """Contradictions in the config, raised as ConfigError before anything loads."""

    def base_model_name(self, options: TaskOptions) -> str:
        """Where the weights came from, as eval_results.json and the card name it."""
        return str(options.model.model_name_or_path) if options.model else ""

    # ------------------------------------------------------------------------------ training hooks

    def prepare(self, run: TaskRun) -> None:
        """Load what reading the data needs (a processor, a model whose context bounds clip length)."""

    def read_split(self, run: TaskRun, split: str, source: str, max_samples: int | None, *,
                   training: bool) -> tuple[Any, DataReport | None]:
        """Decode and validate one split; bad rows go into the report."""
        raise NotImplementedError

    def fit(self, run: TaskRun, train_set: Any, report: DataReport | None) -> Any:
        """Learn what the training data decides and build ``run.model`` if ``prepare`` did not;
        returns the training rows (a task may hold some out as ``run.validation``)."""
        return train_set

    def encode(self, run: TaskRun, dataset: Any, report: DataReport | None, *, training: bool) -> Any:
        """Model inputs and labels for a split read by ``read_split`` (rows it cannot use are bad rows)."""
        return dataset

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        """Collator, processing class, metrics and any argument of the task's Trainer class."""
        raise NotImplementedError

    def zero_shot_model(self, run: TaskRun) -> Any:
        """The model scored before training (``evaluate_before_training``)."""
        return run.model

    def adapt_for_training(self, run: TaskRun, model: Any) -> Any:
        """Last changes before training (context trimming, freezing, adapters)."""
        return model

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        """After training, before saving (merge adapters, tune a threshold); returns figures for the
        results and eval_results.json."""
        return {}

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any]) -> str:
        shown = ", ".join(f"{key} {metrics[key]:.2%}" for key in self.headline_metrics if key in metrics)
        return f"{shown} on {metrics.get('num_samples', '?')} examples"

    def write_outputs(self, output_dir: str, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        write_eval_outputs(output_dir, payload, rows)

    # ------------------------------------------------------------------------------ the card

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        """The Python snippet the model card shows (it must run as shown)."""
        return ""

    def usage_cli(self, repo_id: str) -> str:
        """The shell snippet the model card shows, if any."""
        return ""

    # ------------------------------------------------------------------------------ evaluation hooks

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        """Set ``run.model`` and ``run.processor`` from a saved model directory."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ entry points

    def train(self, options: TaskOptions) -> dict[str, Any]:
        return run_training(self, options)

    def evaluate(self, model_dir: str, data: DataArguments, output_dir: str, *, batch_size: int = 8,
                 groups: dict[type, Any] | None = None) -> dict[str, Any]:
        return run_evaluation(self, model_dir, data, output_dir, batch_size=batch_size, groups=groups or {})


def zero_shot_results_path(output_dir: str) -> Path:
    return Path(output_dir) / ZERO_SHOT_RESULTS


AUGMENTER = "augmenter"  # run.state key of the run's Augmenter (finetune.data.augmentation)


def make_trainer(task: Task, run: TaskRun, model: Any, train_set: Any, eval_set: Any,
                 args: TrainingArguments | None = None) -> Any:
    """The task's Trainer through the one builder (checkpoint marking, duration batching); a training
    Trainer's collator perturbs the marked training rows when the run augments them."""
    kwargs = task.trainer_kwargs(run)
    augmenter = run.state.get(AUGMENTER)
    if augmenter is not None and train_set is not None:
        kwargs["data_collator"] = AugmentingCollator(kwargs["data_collator"], augmenter)
    return build_trainer(task.trainer_class, max_batch_seconds=run.options.data.max_batch_seconds,
                         model=model, args=args or run.options.training, train_dataset=train_set,
                         eval_dataset=eval_set, **kwargs)


def _augmented(run: TaskRun, train_set: Any) -> Any:
    """The training split marked for on-the-fly speed/noise augmentation when the config asks for it (the
    evaluation split never is). Slowed clips stay within max_duration_in_seconds, which the tasks have
    bounded by their model's input by now."""
    options = run.options.groups.get(AugmentationArguments)
    if options is None or not options.enabled:
        return train_set
    augmenter = build_augmenter(options, sampling_rate=_sampling_rate(run),
                                max_seconds=run.options.data.max_duration_in_seconds)
    run.state[AUGMENTER] = augmenter
    return mark_for_augmentation(train_set)


def _sampling_rate(run: TaskRun) -> int:
    """The model's input rate, from its processor (or the feature extractor an audio classifier uses as one)."""
    extractor = getattr(run.processor, "feature_extractor", run.processor)
    return int(extractor.sampling_rate)


def run_training(task: Task, options: TaskOptions) -> dict[str, Any]:
    """Train one task end to end; returns the results by phase (zero-shot, train, eval)."""
    args, data = options.training, options.data
    if data.max_batch_seconds and not task.reads_audio:
        raise ConfigError(f"max_batch_seconds bounds batches by audio seconds; task {task.name} reads text")
    _check_eval_source(data)
    task.check(options)
    set_seed(args.seed)
    logger.info("task %s on %s, world size %d", task.name, args.device, args.world_size)
    # the saving process sets aside checkpoints it cannot resume from; the others look after it has
    with args.main_process_first(local=bool(args.save_on_each_node), desc="choosing the checkpoint to resume"):
        resume_from = checkpoint_to_resume(args.output_dir, options.run.resume, set_aside=args.should_save)
    run = TaskRun(options, resume_from=resume_from, language=data.language)
    eval_source = data.eval_dataset_name or data.dataset_name
    eval_set = eval_report = None
    with args.main_process_first(desc="preparing model and data"):
        task.prepare(run)
        train_set, train_report = task.read_split(run, data.train_split_name, data.dataset_name,
                                                  data.max_train_samples, training=True)
        train_set = task.fit(run, train_set, train_report)
        train_set = task.encode(run, train_set, train_report, training=True)
        if data.eval_split_name:
            eval_set, eval_report = task.read_split(run, data.eval_split_name, eval_source, data.max_eval_samples,
                                                    training=False)
            eval_set = task.encode(run, eval_set, eval_report, training=False)
    if args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], args.output_dir)
    _warn_on_shared_clips(train_set, eval_set)
    train_set = _augmented(run, train_set)

    results: dict[str, Any] = {}
    if options.run.evaluate_before_training and eval_set is not None:
        results[task.zero_shot_key] = _zero_shot(task, run, eval_set, eval_source)
    elif run.resume_from is None and args.should_save:
        zero_shot_results_path(args.output_dir).unlink(missing_ok=True)  # another run's, never this one's

    run.model = task.adapt_for_training(run, run.model)
    validation = run.validation if run.validation is not None else eval_set
    trainer = make_trainer(task, run, run.model, train_set, validation)
    train_output = trainer.train(resume_from_checkpoint=run.resume_from)
    extras = task.finish_training(run, trainer)
    save_trained(trainer, args, metric=task.best_metric if validation is not None else None)
    results["train"] = train_output.metrics
    results.update(extras)
    if eval_set is None:
        return results

    scores = task.score(run, trainer, eval_set, "eval")
    payload = results_payload(task, task.base_model_name(options), eval_source, data.eval_split_name, scores,
                              eval_report)
    payload["train_runtime_s"] = round(train_output.metrics.get("train_runtime", 0.0), 1)
    payload.update(extras)
    if task.zero_shot_key in results:
        before = results[task.zero_shot_key]
        payload[task.zero_shot_key] = {key: before[key] for key in task.headline_metrics if key in before}
    results["eval"] = payload
    if trainer.is_world_process_zero():
        task.write_outputs(args.output_dir, payload, scores.rows)
    logger.info("after training: %s", task.headline(payload))
    return results


def _zero_shot(task: Task, run: TaskRun, eval_set: Any, eval_source: str) -> dict[str, Any]:
    """The untouched model's scores on the eval split: measured before the first step and saved in the
    run dir, so that a resumed run (whose model is no longer untouched once the checkpoint loads) puts the
    same figures back into its results. Measured again on resume only if none were saved for this split."""
    args, data = run.options.training, run.options.data
    scored = {"model": task.base_model_name(run.options), "dataset": eval_source, "split": data.eval_split_name,
              "max_eval_samples": data.max_eval_samples, "num_rows": _num_rows(eval_set)}
    if run.resume_from is not None:
        saved = read_zero_shot(args.output_dir, scored)
        if saved is not None:
            logger.info("%s (measured when the run started, from %s): %s", task.zero_shot_key,
                        zero_shot_results_path(args.output_dir).name, task.headline(saved))
            return saved
    scorer = make_trainer(task, run, task.zero_shot_model(run), None, eval_set)
    metrics = task.score(run, scorer, eval_set, task.zero_shot_key).metrics
    logger.info("%s: %s", task.zero_shot_key, task.headline(metrics))
    if args.should_save:
        write_zero_shot(args.output_dir, scored, metrics)
    return metrics


def _num_rows(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # a streamed split
        return None


def _check_eval_source(data: DataArguments) -> None:
    """An evaluation that would score the training rows under another split's name is refused; one that
    names the training split itself (a check that the model can learn at all) is said in the log."""
    if not data.eval_split_name or not same_source(data.eval_dataset_name or data.dataset_name, data.dataset_name):
        return
    if data.eval_split_name == data.train_split_name:
        logger.warning("eval_split_name is the training split %r: the results measure fit to the training rows, "
                       "not accuracy on new data (eval_results.json and the card name the split)",
                       data.train_split_name)
    elif Path(str(data.dataset_name)).expanduser().is_file():
        raise ConfigError(
            f"{data.dataset_name}: a manifest file holds one split's rows, but this run would read both "
            f"{data.train_split_name!r} and {data.eval_split_name!r} from it, so the results would be scored on "
            "the training rows. Give the evaluation split its own file (eval_dataset_name: test.jsonl), or set "
            "eval_split_name: null to train without evaluating")


def _warn_on_shared_clips(train_set: Any, eval_set: Any, column: str = "source_file") -> None:
    """Clips in both splits make the scores overstate what the model does on new audio: say how many."""
    if not all(isinstance(d, datasets.Dataset) and column in d.column_names for d in (train_set, eval_set)):
        return
    shared = set(train_set[column]) & set(eval_set[column])
    if shared:
        logger.warning("%d of the %d evaluation clips are training clips too (e.g. %s): the evaluation overstates "
                       "how the model does on new audio", len(shared), len(eval_set), sorted(shared)[0])


def evaluation_arguments(task: Task, output_dir: str, batch_size: int) -> TrainingArguments:
    """Trainer arguments for scoring only: the task's defaults that matter to prediction."""
    known = {f.name for f in dataclasses.fields(task.training_arguments_class)}
    defaults = {k: v for k, v in task.defaults.items() if k in known and k not in _TRAINING_ONLY_DEFAULTS}
    return task.training_arguments_class(output_dir=output_dir, per_device_eval_batch_size=batch_size,
                                         **{**defaults, "report_to": "none"})


def run_evaluation(task: Task, model_dir: str, data: DataArguments, output_dir: str, *, batch_size: int,
                   groups: dict[type, Any]) -> dict[str, Any]:
    """Score a saved model on one split; writes eval_results.json, predictions.jsonl and data_report.json."""
    options = TaskOptions(run=RunArguments(task=task.name), data=data,
                          training=evaluation_arguments(task, output_dir, batch_size),
                          model=ModelArguments(model_name_or_path=model_dir), groups=dict(groups))
    run = TaskRun(options, language=data.language)
    task.load_saved(run, model_dir)
    split = data.eval_split_name or "test"
    dataset, report = task.read_split(run, split, data.dataset_name, data.max_eval_samples, training=False)
    dataset = task.encode(run, dataset, report, training=False)
    scorer = make_trainer(task, run, run.model, None, dataset) if task.uses_trainer else None
    scores = task.score(run, scorer, dataset, "eval")
    payload = results_payload(task, model_dir, data.dataset_name, split, scores, report)
    task.write_outputs(output_dir, payload, scores.rows)
    if report:
        write_reports([report], output_dir)
    return payload


def results_payload(task: Task, model: str, dataset: str, split: str | None, scores: Scores,
             report: DataReport | None) -> dict[str, Any]:
    """eval_results.json: what was scored where, then the task's figures, then the skipped-row count."""
    payload = {"task": task.name, "model": str(model), "dataset": dataset, "split": split, **scores.metrics}
    if report is not None:
        payload["skipped_rows"] = len(report.bad)
    return payload
