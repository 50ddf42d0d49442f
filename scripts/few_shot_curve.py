"""Intent accuracy against the number of labelled examples per intent (k = 0, 1, 5, 10).

    python scripts/few_shot_curve.py                                   # snips + banking77, centroid, 5 draws
    python scripts/few_shot_curve.py --setfit snips --setfit-draws 3   # plus SetFit on snips

k = 0 is zero-shot (intent names made readable); k >= 1 draws k training examples per intent with
seeds ``seed, seed + 1, ...`` (one draw per seed) and reports the mean and sample standard deviation
over the draws. The encoder is the same for every centroid draw, so each test set and each training
row is embedded once and reused; SetFit tunes a new encoder per draw, so it re-embeds. The fully
fine-tuned figure (``finetune train configs/intent_<name>.yaml``) is read from its eval_results.json
and drawn as a reference line. Writes a JSON of every figure and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from finetune.config import DataArguments
from finetune.data.few_shot import intent_descriptions, sample_per_intent
from finetune.data.text_data import label_maps, load_text_split
from finetune.evaluation.metrics import classification_metrics
from finetune.models.contrastive import ContrastiveSettings, contrastive_tune
from finetune.models.prototype_classifier import embed_texts, load_encoder, prototypes_from
from finetune.models.registry import resolve_model_path

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("few_shot_curve")


class Embedder:
    """One encoder's embeddings of a dataset's rows, computed once each and kept."""

    def __init__(self, encoder, tokenizer, texts: list[str], max_length: int) -> None:
        self.encoder, self.tokenizer, self.texts, self.max_length = encoder, tokenizer, texts, max_length
        self.cache: dict[int, np.ndarray] = {}

    def rows(self, indices: list[int]) -> np.ndarray:
        missing = sorted(set(indices) - set(self.cache))
        if missing:
            vectors = embed_texts(self.encoder, self.tokenizer, [self.texts[i] for i in missing],
                                  max_length=self.max_length)
            self.cache.update(zip(missing, vectors))
        return np.stack([self.cache[i] for i in indices])


def score(prototypes: np.ndarray, test_embeddings: np.ndarray, intents: list[str], references: list[str]
          ) -> dict[str, float]:
    predicted = [intents[i] for i in (test_embeddings @ prototypes.T).argmax(axis=1)]
    scores = classification_metrics(predicted, references)
    return {"accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"]}


def summarize(draws: list[dict[str, float]], seeds: list[int], seconds: float) -> dict[str, Any]:
    accuracies = np.array([d["accuracy"] for d in draws])
    f1s = np.array([d["f1_macro"] for d in draws])
    spread = (lambda a: float(a.std(ddof=1)) if len(a) > 1 else 0.0)
    return {"accuracy_mean": float(accuracies.mean()), "accuracy_std": spread(accuracies),
            "f1_macro_mean": float(f1s.mean()), "f1_macro_std": spread(f1s), "seeds": seeds,
            "accuracy_per_draw": accuracies.tolist(), "seconds": round(seconds, 1)}


def run_dataset(name: str, data_dir: Path, args: argparse.Namespace, encoder, tokenizer) -> dict[str, Any]:
    data_args = DataArguments(dataset_name=str(data_dir), text_column_name="text", label_column_name="intent")
    train, _ = load_text_split(data_args, "train")
    test, _ = load_text_split(data_args, "test")
    train_labels, references = list(train["label"]), list(test["label"])
    intents = list(label_maps(train_labels)[0].values())
    started = time.perf_counter()
    test_embeddings = embed_texts(encoder, tokenizer, list(test["text"]), max_length=args.max_length)
    logger.info("%s: embedded %d test queries in %.0f s", name, len(test), time.perf_counter() - started)
    result: dict[str, Any] = {"num_intents": len(intents), "num_train": len(train), "num_test": len(test)}

    descriptions = intent_descriptions(intents)
    description_embeddings = embed_texts(encoder, tokenizer, [descriptions[i] for i in intents])
    zero = prototypes_from(description_embeddings, intents, intents)
    result["zero_shot"] = score(zero, test_embeddings, intents, references)
    logger.info("%s zero-shot: accuracy %.3f", name, result["zero_shot"]["accuracy"])

    embedder = Embedder(encoder, tokenizer, list(train["text"]), args.max_length)
    seeds = [args.seed + d for d in range(args.draws)]
    # centroid: the k examples alone; centroid_names: the intent's description counted as one more example
    # (the task's descriptions_as_examples)
    result["centroid"], result["centroid_names"] = {}, {}
    for k in args.shots:
        for method, extra in (("centroid", False), ("centroid_names", True)):
            started, draws = time.perf_counter(), []
            for seed in seeds:
                chosen = sample_per_intent(train_labels, k, seed, source=f"{name} [train]")
                vectors, labels = embedder.rows(chosen), [train_labels[i] for i in chosen]
                if extra:
                    vectors, labels = np.vstack([vectors, description_embeddings]), labels + list(intents)
                draws.append(score(prototypes_from(vectors, labels, intents), test_embeddings, intents, references))
            result[method][str(k)] = summarize(draws, seeds, time.perf_counter() - started)
            logger.info("%s %s k=%d: accuracy %.3f +- %.3f", name, method, k, result[method][str(k)]["accuracy_mean"],
                        result[method][str(k)]["accuracy_std"])

    if name in args.setfit:
        result["setfit"] = run_setfit(name, train, test, intents, args, tokenizer)
    full = ROOT / "outputs" / f"intent-{name}" / "eval_results.json"
    if full.is_file():
        figures = json.loads(full.read_text(encoding="utf-8"))
        result["full_fine_tuned"] = {"accuracy": figures["accuracy"], "f1_macro": figures["f1_macro"],
                                     "source": str(full.relative_to(ROOT))}
    return result


def run_setfit(name: str, train, test, intents: list[str], args: argparse.Namespace, tokenizer
               ) -> dict[str, Any]:
    """SetFit's contrastive tuning per draw, then nearest centroid with the tuned encoder."""
    train_labels, train_texts = list(train["label"]), list(train["text"])
    seeds = [args.seed + d for d in range(args.setfit_draws)]
    out: dict[str, Any] = {"num_iterations": args.setfit_iterations}
    for k in args.setfit_shots:
        started, draws = time.perf_counter(), []
        for seed in seeds:
            chosen = sample_per_intent(train_labels, k, seed, source=f"{name} [train]")
            texts, labels = [train_texts[i] for i in chosen], [train_labels[i] for i in chosen]
            settings = ContrastiveSettings(num_iterations=args.setfit_iterations, max_length=args.max_length,
                                           seed=seed)
            encoder = contrastive_tune(resolve_model_path(args.model), texts, labels, settings)
            prototypes = prototypes_from(embed_texts(encoder, tokenizer, texts, max_length=args.max_length), labels,
                                         intents)
            test_embeddings = embed_texts(encoder, tokenizer, list(test["text"]), max_length=args.max_length)
            draws.append(score(prototypes, test_embeddings, intents, list(test["label"])))
            logger.info("%s setfit k=%d seed %d: accuracy %.3f", name, k, seed, draws[-1]["accuracy"])
        out[str(k)] = summarize(draws, seeds, time.perf_counter() - started)
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        data = results["datasets"][name]
        for method, colour in (("centroid", "tab:blue"), ("centroid_names", "tab:orange"), ("setfit", "tab:green")):
            if method not in data:
                continue
            ks = [0] + [int(k) for k in data[method] if k.isdigit()]
            means = [data["zero_shot"]["accuracy"]] + [data[method][str(k)]["accuracy_mean"] for k in ks[1:]]
            stds = [0.0] + [data[method][str(k)]["accuracy_std"] for k in ks[1:]]
            label = {"centroid": "nearest centroid",
                     "centroid_names": "nearest centroid, intent name as one more example",
                     "setfit": "SetFit contrastive + centroid"}[method]
            draws = len(data[method][str(ks[-1])]["seeds"])
            ax.errorbar(ks, means, yerr=stds, marker="o", capsize=4, color=colour,
                        label=f"{label} (mean ± std, {draws} draws)")
        if "full_fine_tuned" in data:
            ax.axhline(data["full_fine_tuned"]["accuracy"], color="tab:red", linestyle="--",
                       label=f"fully fine-tuned on the train split: {data['full_fine_tuned']['accuracy']:.1%}")
        ax.set_title(f"{name}: {data['num_intents']} intents, {data['num_test']:,} test queries")
        ax.set_xlabel("labelled examples per intent (0 = zero-shot from intent names)")
        ax.set_ylabel("test accuracy")
        ax.set_xticks(sorted({0, *[int(k) for k in data["centroid"]]}))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Few-shot intents with {results['model']} (k-shot samples drawn with fixed seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=["snips", "banking77"])
    parser.add_argument("--model", default="offline:all-MiniLM-L6-v2")
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5, 10])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--setfit", nargs="*", default=[], help="datasets to also run SetFit on (slow on CPU)")
    parser.add_argument("--setfit-shots", nargs="+", type=int, default=[1, 5, 10])
    parser.add_argument("--setfit-draws", type=int, default=3)
    parser.add_argument("--setfit-iterations", type=int, default=20, help="pairs per example (SetFit's default)")
    parser.add_argument("--output", type=Path, default=ROOT / "scripts" / "results" / "few_shot.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "scripts" / "results" / "few_shot.png")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    started = time.perf_counter()
    encoder, tokenizer = load_encoder(args.model)
    results: dict[str, Any] = {"model": args.model, "draws": args.draws, "seed": args.seed,
                               "max_length": args.max_length, "std": "sample standard deviation over draws",
                               "datasets": {}}
    earlier = json.loads(args.output.read_text(encoding="utf-8")) if args.output.is_file() else {}
    for name in args.datasets:
        results["datasets"][name] = run_dataset(name, args.data_root / name, args, encoder, tokenizer)
        kept = earlier.get("datasets", {}).get(name, {}).get("setfit")
        if kept and name not in args.setfit:  # SetFit is slow: keep an earlier run's figures unless it is rerun
            results["datasets"][name]["setfit"] = kept
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, args.plot)
    print(f"wrote {args.output} and {args.plot}")


if __name__ == "__main__":
    main()
