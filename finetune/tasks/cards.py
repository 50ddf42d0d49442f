"""Card facts several tasks share: what every speech recognizer (Whisper, CTC) and every classifier
(audio or text) says on its model card, and the ASR usage snippets."""

from __future__ import annotations

from finetune.tasks.base import CardFacts, MetricFact

ASR_CARD = CardFacts(
    pipeline_tag="automatic-speech-recognition",
    pipeline_name="Automatic Speech Recognition",
    what="a speech recognition model (audio to text)",
    intended_use="Transcribing {language}speech in {domain}: same kind of speakers, vocabulary and recording "
                 "conditions. Recordings longer than the model's window are transcribed window by window, or in "
                 "pieces cut at pauses (see How to use).",
    metrics=(MetricFact("wer", "wer", "WER (normalized, %)", percent=True),
             MetricFact("cer", "cer", "CER (normalized, %)", percent=True),
             MetricFact("wer_raw", "wer", "WER (raw, %)", percent=True),
             MetricFact("cer_raw", "cer", "CER (raw, %)", percent=True)),
    limitations=("Like any ASR model it can output plausible text for silence or noise (hallucinations).",),
    scoring_note="Normalized scores apply the text normalizer of the language spoken to both sides (Whisper's "
                 "English normalizer for English: case, punctuation, spelled numbers; the basic one otherwise); "
                 "raw scores compare the text as written.",
)


def asr_usage_python(repo_id: str, call_options: str) -> str:
    """The card's pipeline() snippet for a recognizer; ``call_options`` as the family decodes long audio."""
    return (f'asr = pipeline("automatic-speech-recognition", model="{repo_id}")\n'
            f'print(asr("recording.flac", {call_options}))  # a path needs ffmpeg; '
            'or pass {"raw": samples, "sampling_rate": 16000}')


def whisper_usage_python(repo_id: str, config: dict) -> str:
    """The card's snippet for a Whisper as it was trained: a stock 30 s model walks long audio by its
    timestamps; one trained at a short or dynamic context is given pieces no longer than what it learnt
    from, cut at pauses (:func:`finetune.inference.pauses.split_at_pauses`), or goes through finetune's
    Transcriber, which does the same batched (and, for a dynamic one, at each piece's own length)."""
    from finetune.models.dynamic_context import serving_window_seconds

    window = round(config.get("max_source_positions", 1500) / 50)
    dynamic = isinstance(config.get("finetune_dynamic_context"), dict)
    if window >= 30 and not dynamic:
        return asr_usage_python(repo_id, "return_timestamps=True")
    pieces = f"{serving_window_seconds(config, window):g}"
    return (f'from finetune.data.audio import load_audio  # pip install finetune: any format and rate\n'
            f'from finetune.inference.pauses import split_at_pauses\n\n'
            f'asr = pipeline("automatic-speech-recognition", model="{repo_id}")\n'
            f'samples = load_audio("recording.flac", 16000)\n'
            f'# pieces of at most {pieces} s (what the model learnt from), cut at pauses: no word cut or lost\n'
            f'pieces = split_at_pauses(samples, 16000, window_seconds={pieces})\n'
            f'print(" ".join(asr({{"raw": p.cut(samples), "sampling_rate": 16000}})["text"] for p in pieces))\n\n'
            f'# the same, batched{", each piece at its own encoder length" if dynamic else ""}:\n'
            f'from finetune import Transcriber\n'
            f'for result in Transcriber("{repo_id}")(["recording.flac"]):\n'
            f'    print(result.transcript.text)')


def asr_usage_cli(repo_id: str) -> str:
    return f"finetune transcribe --model {repo_id} recording.flac --timestamps segment --format srt"


CLASSIFIER_METRICS = (MetricFact("accuracy", "accuracy", "Accuracy"),
                      MetricFact("f1_macro", "f1", "F1 (macro)", args={"average": "macro"}))
CLOSED_SET = "It always answers with one of its training classes, even for inputs that belong to none of them."
