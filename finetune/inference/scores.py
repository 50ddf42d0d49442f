"""Confidence figures for a Whisper transcript, as faster-whisper and openai-whisper report them.

Per segment (and per file): ``avg_logprob`` (mean log-probability of the text's tokens and the end token),
``no_speech_prob`` (probability of Whisper's no-speech token at the start of the text), ``compression_ratio``
(text bytes over zlib-compressed bytes: repetition loops compress well), and word probabilities (the mean of
each word's token probabilities, as faster-whisper computes them). Per file: the language, with its
probability when it was detected rather than given.

Why a second, teacher-forced pass rather than figures kept from decoding: transformers' pipeline does not
return them, and the text of a file can come from chunked, sequential or pause-cut decoding. One encoder and
one decoder pass per segment (the segment's audio, its text forced as the decoder input, the prompt in front
when one was used) gives the same quantities for every path, at the cost of one pass of the text through the
model, small beside beam search. The encoder's output for a window decoded whole (a short file, a piece cut
at pauses) is kept from decoding (:class:`EncoderMemo`) rather than computed again, so scoring those costs a
decoder pass. It is only run when asked for (``TranscribeOptions.scores``, on by default for JSON output).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from typing import Any

import numpy as np

from finetune.data.collators import padded_samples
from finetune.inference.formats import Scores, Segment, Transcript

MIN_SEGMENT_S = 0.1  # shorter segments (a timestamp pair that collapsed) are scored on this much audio


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes (openai-whisper's measure); 0 for empty text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class EncoderMemo:
    """The encoder outputs of the last ``size`` inputs decoding ran, keyed by their input features, so the
    teacher-forced pass over a window decoded whole reuses its encoder output (a miss just computes it)."""

    def __init__(self, encoder: Any, size: int) -> None:
        self.size, self.recording = max(1, size), True
        self.outputs: OrderedDict[bytes, Any] = OrderedDict()
        self.handle = encoder.register_forward_hook(self._keep, with_kwargs=True)

    def _keep(self, _module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        if not self.recording:
            return
        features = args[0] if args else kwargs.get("input_features")
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        if features is None or hidden is None:
            return
        for row, state in zip(features, hidden):
            self.outputs[_key(row)] = state.detach()
            while len(self.outputs) > self.size:
                self.outputs.popitem(last=False)

    def get(self, features: Any) -> Any:
        """The encoder output for ``features`` (one input, no batch axis), or None."""
        return self.outputs.get(_key(features))

    def remove(self) -> None:
        self.handle.remove()
        self.outputs.clear()


def _key(features: Any) -> bytes:
    data = features.detach().contiguous().cpu()
    return hashlib.blake2b(data.numpy().tobytes() + str(tuple(data.shape)).encode(), digest_size=16).digest()


class TranscriptScorer:
    """Scores transcripts of one loaded Whisper pipeline (its model, tokenizer and feature extractor).

    ``language``: the code decoding was told to use (None: detected per file for a multilingual model,
    English for an English-only one); ``prompt_ids``: the prompt decoding was conditioned on, if any;
    ``step_seconds``: the dynamic-context step the model runs at (None: its fixed window).
    """

    def __init__(self, pipe: Any, *, language: str | None = None, task: str = "transcribe",
                 prompt_ids: Any = None, step_seconds: float | None = None, batch_size: int = 8) -> None:
        config = pipe.model.generation_config
        self.pipe, self.task, self.step_seconds = pipe, task, step_seconds
        self.lang_to_id: dict[str, int] = dict(getattr(config, "lang_to_id", None) or {})
        self.multilingual = bool(self.lang_to_id) and getattr(config, "is_multilingual", True) is not False
        self.language = language
        self.prompt = [] if prompt_ids is None else [int(t) for t in np.asarray(prompt_ids.cpu()).ravel()]
        self.no_speech_id = int(config.no_timestamps_token_id) - 1  # as transformers' no-speech detection
        self.eot_id = int(config.eos_token_id)
        self.sot_id = int(config.decoder_start_token_id)
        self.suppress = [int(t) for t in getattr(config, "suppress_tokens", None) or []]
        self.begin_suppress = [int(t) for t in getattr(config, "begin_suppress_tokens", None) or []]
        self.rate = int(pipe.feature_extractor.sampling_rate)
        self.window_samples = int(pipe.feature_extractor.n_samples)
        self.memo = EncoderMemo(pipe.model.get_encoder(), 2 * batch_size)

    def score(self, transcript: Transcript, audio: Any, windows: list[Segment] | None = None,
              timed: list[Segment] | None = None) -> None:
        """Fill ``transcript``'s language and scores, and its segments', reading ``audio`` (16 kHz samples, an
        array or a forward-sliced stream).

        What is scored is each window of audio the text was decoded from, as openai-whisper and
        faster-whisper do (the segments of one window share its figures): ``windows`` when the caller knows
        them (pieces cut at pauses), else runs of its segments (or of ``timed``, the timestamped stretches
        decoding found but the transcript does not show) that fit the model's window, else the whole file
        when it fits one. A longer file decoded without timestamps gets its language only.
        """
        language, probability = self._language(audio)
        transcript.language, transcript.language_probability = language, probability
        windows = windows or self._windows(transcript, transcript.segments or timed or [])
        scored = []
        for window in windows:
            start = round(window.start * self.rate)
            stop = max(round(window.end * self.rate), start + round(MIN_SEGMENT_S * self.rate))
            window.scores = self._score_text(audio[start:stop], window.text, language)
            scored.append(window.scores)
        for segment in transcript.segments:
            middle = (segment.start + segment.end) / 2
            segment.scores = next((w.scores for w in windows if w.start <= middle <= w.end), None)
        if not scored:
            return
        tokens = sum(s.tokens for s in scored)
        transcript.scores = scored[0] if len(scored) == 1 else Scores(
            avg_logprob=sum(s.avg_logprob * s.tokens for s in scored) / max(tokens, 1),
            no_speech_prob=min(s.no_speech_prob for s in scored),  # the file has speech if any part has
            compression_ratio=compression_ratio(transcript.text), tokens=tokens,
            words=[word for s in scored for word in s.words])
        if transcript.words and len(transcript.words) == len(transcript.scores.words):
            for word, (_, word_probability) in zip(transcript.words, transcript.scores.words):
                word.probability = word_probability

    def _windows(self, transcript: Transcript, segments: list[Segment]) -> list[Segment]:
        """Runs of consecutive segments spanning at most one window (the whole file when it fits)."""
        window_s = self.window_samples / self.rate
        if transcript.duration <= window_s + 1e-3:
            return [Segment(0.0, transcript.duration, transcript.text)]
        windows: list[Segment] = []
        for segment in segments:
            if windows and segment.end - windows[-1].start <= window_s:
                last = windows[-1]
                windows[-1] = Segment(last.start, segment.end, f"{last.text} {segment.text}")
            else:
                windows.append(Segment(segment.start, min(segment.end, segment.start + window_s), segment.text))
        return windows

    def _language(self, audio: Any) -> tuple[str | None, float | None]:
        """(code, probability): detected on the first window for a multilingual model told no language."""
        if not self.multilingual:
            return "en", None
        if self.language is not None:
            return self.language, None
        import torch

        logits = self._forward(self._features(audio[:self.window_samples]), [self.sot_id])
        codes = list(self.lang_to_id)
        ids = torch.tensor([self.lang_to_id[c] for c in codes], device=logits.device)
        probabilities = logits[0, -1].float().index_select(0, ids).softmax(-1)
        best = int(probabilities.argmax())
        return codes[best].strip("<|>"), float(probabilities[best])

    def _prefix(self, language: str | None) -> list[int]:
        tokenizer = self.pipe.tokenizer
        ids = [self.sot_id]
        if self.multilingual:
            ids.append(self.lang_to_id[f"<|{language or 'en'}|>"])
            ids.append(int(tokenizer.convert_tokens_to_ids(f"<|{self.task}|>")))
        ids.append(int(tokenizer.convert_tokens_to_ids("<|notimestamps|>")))
        return ids

    def _score_text(self, samples: np.ndarray, text: str, language: str | None) -> Scores:
        import torch

        tokenizer = self.pipe.tokenizer
        text_ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False) if text.strip() else []
        prefix = self.prompt + self._prefix(language)
        ids = prefix + text_ids + [self.eot_id]
        logits = self._forward(self._features(samples), ids[:-1])[0].float()
        first = len(prefix) - 1  # the position whose output is the first text token
        # no-speech: from the raw output at the start token; text tokens: from the distribution decoding
        # drew them from (suppressed tokens masked), as openai-whisper computes both
        no_speech = float(logits[len(self.prompt)].softmax(-1)[self.no_speech_id])
        targets = torch.tensor(ids[len(prefix):], device=logits.device)
        raw = logits[first:].log_softmax(-1).gather(1, targets[:, None])[:, 0]
        masked = logits[first:].clone()
        masked[:, self.suppress] = float("-inf")
        masked[0, self.begin_suppress] = float("-inf")
        token_logprobs = masked.log_softmax(-1).gather(1, targets[:, None])[:, 0]
        token_logprobs = torch.where(torch.isfinite(token_logprobs), token_logprobs, raw)  # a re-tokenized text
        return Scores(avg_logprob=float(token_logprobs.mean()), no_speech_prob=no_speech,
                      compression_ratio=compression_ratio(text), tokens=len(targets),
                      words=self._words(text_ids, token_logprobs[:-1].exp().tolist()))

    def _words(self, text_ids: list[int], probabilities: list[float]) -> list[tuple[str, float]]:
        """Group tokens into words (a token opening with a space starts one; punctuation stays attached)."""
        words: list[tuple[str, list[float]]] = []
        for token, probability in zip(text_ids, probabilities):
            piece = self.pipe.tokenizer.decode([token])
            if not words or piece.startswith(" "):
                words.append((piece.strip(), [probability]))
            else:
                words[-1] = (words[-1][0] + piece, [*words[-1][1], probability])
        return [(word, round(sum(p) / len(p), 4)) for word, p in words if word]

    def _features(self, samples: np.ndarray):
        samples = np.asarray(samples, dtype=np.float32)
        length = self.window_samples
        if self.step_seconds is not None:
            length = padded_samples(max(len(samples), 1), self.step_seconds, self.rate, self.window_samples)
        extractor = self.pipe.feature_extractor
        features = extractor(samples[:length], sampling_rate=self.rate, padding="max_length", max_length=length,
                             return_tensors="pt").input_features
        return features.to(self.pipe.model.device, dtype=self.pipe.model.dtype)

    def _forward(self, features: Any, ids: list[int]) -> Any:
        """Decoder logits for ``ids`` over ``features``, reusing the encoder output decoding computed."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        decoder_input_ids = torch.tensor([ids], device=self.pipe.model.device)
        hidden = self.memo.get(features[0])
        self.memo.recording = False
        try:
            with torch.inference_mode():
                if hidden is not None:
                    encoded = BaseModelOutput(last_hidden_state=hidden[None])
                    return self.pipe.model(encoder_outputs=encoded, decoder_input_ids=decoder_input_ids).logits
                return self.pipe.model(input_features=features, decoder_input_ids=decoder_input_ids).logits
        finally:
            self.memo.recording = True

