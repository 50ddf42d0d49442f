"""WER/CER: corpus-level, raw and normalized kept apart."""

import pytest

from finetune.evaluation.metrics import asr_metrics, error_rates, utterance_wer


def test_corpus_wer_sums_errors_over_words() -> None:
    rates = error_rates(["a b c", "d"], ["a x c", "d e"])
    assert rates["wer"] == pytest.approx(2 / 5)  # one substitution + one deletion over five words


def test_normalized_wer_ignores_case_and_punctuation_but_raw_does_not() -> None:
    metrics = asr_metrics(["Ask not, what your country can do."], ["ask not what your country can do"])
    assert metrics["wer"] == 0.0
    assert metrics["wer_raw"] > 0.0
    assert metrics["cer"] == 0.0


def test_empty_prediction_is_all_deletions_and_lengths_must_match() -> None:
    assert utterance_wer("", "one two") == 1.0
    with pytest.raises(ValueError):
        error_rates(["a"], ["a", "b"])
