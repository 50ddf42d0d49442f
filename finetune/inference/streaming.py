"""Whisper's log-mel features of a long recording, computed window by window, for sequential decoding.

Sequential long-form decoding (transformers' ``WhisperForConditionalGeneration.generate``) wants the
features of the whole recording, and the pipeline computes them in one go: 16 kHz samples, a complex STFT
and the mel spectrogram of the whole file at once (a 1-hour file: 2.9 GB peak RSS with a tiny model).
Yet generate reads them only a 30-second window at a time (``_get_input_segment``), plus the first window
for language detection (``detect_language``). So :class:`StreamedFeatures` hands generate a placeholder
of the right shape that holds no data (one NaN, expanded) and :func:`install` makes those two methods of
the model compute the frames they cut from the (streamed) samples instead.

The frames are bit-identical to the feature extractor's whole-file ones (the test checks it):

- the STFT is local: frame ``j`` sees samples ``[hop*j - n_fft/2, hop*j + n_fft/2)``, reflected at the
  file's ends as ``torch.stft(center=True)`` pads them, so a block of frames is computed from just its
  samples;
- the mel projection is a matrix product whose columns do not depend on how many there are, except for
  a single column (a matrix-vector product rounds differently): every block is computed at least one
  window (3000 frames) wide, extended into the audio before it (or, at the start, after it);
- Whisper clamps the log-mel at 8 (log10 units) below the maximum of the *whole* recording: a first pass
  over the file finds that maximum block by block (the maximum is exact whatever the order).

Memory then holds one window of samples and features whatever the file's length; the price is one
more decoding pass over the file (for the maximum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STREAMED_ATTR = "_finetune_streamed_features"  # set on the placeholder: which StreamedFeatures it stands for


class StreamedFeatures:
    """The log-mel features ``extractor`` would compute for all of ``audio``, frame range by frame range.

    ``audio``: 1-D float32 samples at the extractor's rate, or anything sliced like them with increasing
    starts (:class:`finetune.inference.transcribe.StreamedAudio`), longer than one window.
    """

    def __init__(self, audio: Any, extractor: Any) -> None:
        import torch

        if not self.supports(extractor):
            raise ValueError(f"{type(extractor).__name__} (dither={getattr(extractor, 'dither', None)}) "
                             "cannot be streamed; only WhisperFeatureExtractor without dither")
        self.audio, self.num_samples = audio, len(audio)
        self.n_fft, self.hop = int(extractor.n_fft), int(extractor.hop_length)
        self.window_frames = int(extractor.nb_max_frames)
        if self.num_samples <= extractor.n_samples:
            raise ValueError(f"{self.num_samples} samples fit one window: compute their features whole")
        self.num_frames = (self.num_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop  # less the last
        self.num_mels = int(extractor.feature_size)
        # as WhisperFeatureExtractor._torch_extract_fbank_features, on the CPU as the pipeline runs it
        self._hann = torch.hann_window(self.n_fft)
        self._filters = torch.from_numpy(extractor.mel_filters).to("cpu", torch.float32)
        peak = max(self._log_mel(start, min(start + self.window_frames, self.num_frames)).max()
                   for start in range(0, self.num_frames, self.window_frames))
        self._floor = peak - 8.0

    @staticmethod
    def supports(extractor: Any) -> bool:
        """Whether the features can be computed in blocks identical to the whole-file ones (dither adds
        random noise per call; other extractors compute features their own way)."""
        from transformers import WhisperFeatureExtractor

        return type(extractor) is WhisperFeatureExtractor and not getattr(extractor, "dither", 0.0)

    def placeholder(self, dtype: Any, device: Any) -> Any:
        """A ``(1, mels, frames)`` tensor with one element of storage (NaN, so frames read around
        :func:`install` cannot pass unnoticed), tagged with this object."""
        import torch

        tensor = torch.full((1, self.num_mels, 1), float("nan"), dtype=dtype, device=device)
        tensor = tensor.expand(1, self.num_mels, self.num_frames)
        setattr(tensor, STREAMED_ATTR, self)
        return tensor

    def frames(self, start: int, stop: int) -> Any:
        """Frames ``[start, stop)`` as ``(1, mels, stop - start)`` float32, equal to the whole-file ones."""
        import torch

        if not 0 <= start < stop <= self.num_frames:
            raise IndexError(f"frames [{start}, {stop}) out of [0, {self.num_frames})")
        log_spec = self._log_mel(start, stop)
        return (torch.maximum(log_spec, self._floor) + 4.0) / 4.0

    def _log_mel(self, start: int, stop: int) -> Any:
        """Unclamped log10 mel spectrogram of frames ``[start, stop)``, computed at least a window wide."""
        import torch

        first = max(0, min(start, stop - self.window_frames))  # widened back, or at the start forward
        last = min(self.num_frames, max(stop, first + self.window_frames))
        half = self.n_fft // 2
        low, high = self.hop * first - half, self.hop * (last - 1) - half + self.n_fft  # samples, padded ends
        samples = np.asarray(self.audio[max(low, 0):min(high, self.num_samples)], dtype=np.float32)
        if low < 0 or high > self.num_samples:  # as torch.stft(center=True) pads the whole recording
            samples = np.pad(samples, (max(-low, 0), max(high - self.num_samples, 0)), mode="reflect")
        waveform = torch.from_numpy(np.ascontiguousarray(samples))[None]
        stft = torch.stft(waveform, self.n_fft, self.hop, window=self._hann, center=False, return_complex=True)
        magnitudes = (stft.abs() ** 2).contiguous()
        mel_spec = self._filters.T @ magnitudes
        log_spec = torch.clamp(mel_spec, min=1e-10).log10()
        return log_spec[..., start - first:stop - first]


def install(model: Any) -> None:
    """Teach a Whisper model's generate to cut windows from a :meth:`StreamedFeatures.placeholder`.

    Wraps the two methods of ``model`` (on the instance; idempotent) through which generate reads its
    input features; any other input goes to the originals unchanged. An encoder pre-hook makes it an
    error for a placeholder's NaN to reach the encoder (a transformers version reading the features
    some other way), rather than a silently wrong transcript.
    """
    if getattr(model, STREAMED_ATTR, False):
        return
    get_input_segment, detect_language = model._get_input_segment, model.detect_language

    def streamed_input_segment(input_features, seek, seek_num_frames, num_segment_frames, cur_bsz, batch_idx_map):
        source = getattr(input_features, STREAMED_ATTR, None)
        if source is None:
            return get_input_segment(input_features, seek, seek_num_frames, num_segment_frames, cur_bsz,
                                     batch_idx_map)
        if cur_bsz != 1:
            raise ValueError("a streamed recording is decoded alone (batch of 1)")
        start = int(seek[batch_idx_map[0]])
        stop = start + int(seek_num_frames[batch_idx_map[0]])
        window = source.frames(start, stop).to(device=input_features.device, dtype=input_features.dtype)
        return get_input_segment(window, seek - start, seek_num_frames, num_segment_frames, cur_bsz, batch_idx_map)

    def streamed_detect_language(input_features=None, *args, **kwargs):
        source = getattr(input_features, STREAMED_ATTR, None)
        if source is not None:  # detect_language reads the first window
            frames = min(int(kwargs.get("num_segment_frames") or source.window_frames), source.num_frames)
            input_features = source.frames(0, frames).to(device=input_features.device, dtype=input_features.dtype)
        return detect_language(input_features, *args, **kwargs)

    def refuse_placeholder(_module, args, kwargs):
        features = args[0] if args else kwargs.get("input_features")
        if features is not None and features.ndim == 3 and features.numel() and features[:, 0, 0].isnan().any():
            raise RuntimeError("Whisper's generate read streamed features without cutting them through "
                               "_get_input_segment/detect_language (has transformers changed?)")

    model._get_input_segment = streamed_input_segment
    model.detect_language = streamed_detect_language
    model.get_encoder().register_forward_pre_hook(refuse_placeholder, with_kwargs=True)
    setattr(model, STREAMED_ATTR, True)
