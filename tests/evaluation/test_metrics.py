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


def test_a_rate_over_no_reference_words_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="no reference words to score: all 1 reference transcript"):
        error_rates([""], [""])  # was 0.0: a perfect score over nothing
    with pytest.raises(ValueError, match="no reference words to score: all 2 reference transcript"):
        asr_metrics(["hello", "world"], ["", "  "])  # was 1.0 / 5.0 (errors over a length of 0)
    with pytest.raises(ValueError, match="all 1 reference transcript.* after scoring normalization"):
        asr_metrics(["um"], ["Um."])  # words as written, none left once the fillers are removed


def test_every_rate_states_its_count() -> None:
    rates = error_rates(["a b c", "d"], ["a x c", "d e"])
    assert rates["num_reference_words"] == 5 and rates["num_reference_chars"] == 8  # spaces count as characters
    metrics = asr_metrics(["Hello there", "General Kenobi"], ["hello there", "general kenobi um"])
    assert metrics["num_reference_words"] == 4  # normalized: 'um' is not a word to recognise
    assert metrics["wer"] == 0.0 and metrics["wer_raw"] > 0.0


def test_an_empty_reference_among_others_counts_its_insertions_and_has_a_defined_row_wer() -> None:
    from finetune.data.text import scoring_normalizer
    from finetune.evaluation.asr import score_transcripts

    metrics, rows = score_transcripts(["a b", "x y"], ["a b", ""], ["one.wav", "two.wav"], scoring_normalizer("en"),
                                      elapsed=1.0)
    assert metrics["num_samples"] == 2 and metrics["num_reference_words"] == 2
    assert metrics["wer"] == pytest.approx(2 / 2)  # two insertions over the two reference words
    assert [row["wer"] for row in rows] == [0.0, 2.0]
    # utterance_wer of an empty reference: 0.0 for an empty hypothesis, else one per hypothesis word
    assert utterance_wer("", "") == 0.0 and utterance_wer("", "[noise]") == 0.0
    assert utterance_wer("one", " ") == 1.0 and utterance_wer("three more words", "") == 3.0


def test_the_headline_states_both_counts() -> None:
    from finetune.evaluation.asr import asr_headline

    metrics = {"wer": 0.25, "wer_raw": 0.5, "cer": 0.1, "num_samples": 3, "num_reference_words": 8}
    assert asr_headline(metrics) == "WER 25.00% (raw 50.00%), CER 10.00% on 3 utterances (8 reference words)"
