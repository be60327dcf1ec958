"""One clip's audio: reading WAV files, and the MFCC features the keyword-spotting models take.

Features follow the authors' / MLPerf Tiny reference: peak-normalise, right-pad to 1 s,
STFT 480/320/512 with a periodic Hann window, magnitude, 40 mel bins 20-4000 Hz, log(mel + 1e-6),
first 10 MFCCs, shape (49, 10, 1). One deliberate departure fixes a defect of the reference: it
divides by max(x), which is NaN/inf for a clip with no positive sample; here a clip whose maximum is
<= 0 is divided by max|x|, and an all-zero clip stays all zeros. Clips longer than 1 s are cut to
their first 16,000 samples before the peak is taken (the reference's pad would fail on them; the
official data has none).
"""

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import scipy.signal
import tensorflow as tf

from common.errors import UserError

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
FRAME_LENGTH, FRAME_STEP, FFT_LENGTH = 480, 320, 512
N_FRAMES = 1 + (CLIP_SAMPLES - FRAME_LENGTH) // FRAME_STEP  # 49
N_MEL, MEL_LOW_HZ, MEL_HIGH_HZ, LOG_OFFSET = 40, 20.0, 4000.0, 1e-6
N_MFCC = 10
FEATURE_SHAPE = (N_FRAMES, N_MFCC, 1)
INT16_FULL_SCALE = 32768.0
MFCC_CHUNK = 1024  # clips per tf call when featurising numpy arrays (bounds the STFT's memory)


class WavReadError(UserError):
    """A WAV file that cannot be read or holds no usable samples; the message names the file and `reason`
    says why in a few words ("truncated", "non-finite samples"...), for counting skipped clips."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


def _to_int16_scale(data: np.ndarray) -> np.ndarray:
    """Samples as float32 on the int16 scale, whatever the WAV sample format."""
    if data.dtype == np.int16:
        return data.astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) * 256.0
    if data.dtype == np.int32:  # 24- and 32-bit PCM are left-aligned in int32
        return (data.astype(np.float64) / 65536.0).astype(np.float32)
    if data.dtype.kind == "f":
        return (data.astype(np.float64) * INT16_FULL_SCALE).astype(np.float32)
    raise ValueError(f"unsupported sample type {data.dtype}")


def _truncation(raw: bytes) -> str | None:
    """ "truncated header" when a RIFF file ends before its data chunk starts, "truncated" when the data
    chunk holds fewer bytes than its header declares, else None (also for what is not RIFF at all)."""
    if raw[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        return None
    order = "big" if raw[:4] == b"RIFX" else "little"
    offset = 12
    while offset + 8 <= len(raw):
        size = int.from_bytes(raw[offset + 4 : offset + 8], order)
        if raw[offset : offset + 4] == b"data":
            return "truncated" if size != 0xFFFFFFFF and size > len(raw) - offset - 8 else None
        offset += 8 + size + (size & 1)
    return "truncated header"


def read_wav(path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz, int16 PCM values as floats (not scaled to [-1, 1]).

    Stereo keeps the first channel; another sample rate is resampled (scipy.signal.resample_poly).
    Raises WavReadError, with a `reason`, for a file that is empty, not a readable WAV, truncated (in its
    header, or holding fewer samples than its header declares), without samples, or holding NaN or
    infinite samples (float WAVs).
    """
    path = Path(path)
    fix = "delete or replace the file (or download the data set again)"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise WavReadError(f"Cannot read {path} ({err}); {fix}", "unreadable") from err
    if not raw:
        raise WavReadError(f"Cannot read {path}: the file is empty (0 bytes); {fix}", "empty file")
    truncated = _truncation(raw)
    if truncated:
        where = "inside its header" if truncated == "truncated header" else "before the end of its samples"
        raise WavReadError(
            f"Cannot read {path}: the WAV file is truncated, it ends {where} ({len(raw)} bytes); {fix}", truncated
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            rate, data = scipy.io.wavfile.read(io.BytesIO(raw))
        samples = _to_int16_scale(np.asarray(data))
    except Exception as err:  # malformed headers fail inside scipy in many ways (ValueError, struct.error...)
        raise WavReadError(
            f"Cannot read {path} as a WAV file ({type(err).__name__}: {err}); {fix}", "not a readable WAV file"
        ) from err
    if samples.ndim == 2:
        samples = samples[:, 0] if samples.shape[1] else samples.reshape(-1)
    if samples.size == 0:
        raise WavReadError(f"WAV file {path} holds no samples; delete or replace it", "no samples")
    if not np.isfinite(samples).all():
        raise WavReadError(
            f"WAV file {path} holds {np.count_nonzero(~np.isfinite(samples))} NaN or infinite samples; {fix}",
            "non-finite samples",
        )
    if rate != SAMPLE_RATE:
        if rate <= 0:
            raise WavReadError(f"WAV file {path} declares sample rate {rate}; delete or replace it", "bad sample rate")
        divisor = math.gcd(SAMPLE_RATE, int(rate))
        samples = scipy.signal.resample_poly(
            samples.astype(np.float64), SAMPLE_RATE // divisor, int(rate) // divisor
        ).astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def peak_divisor(clip: np.ndarray) -> np.float32:
    """The normalising divisor of a (cut) clip: its maximum; max|x| when that is <= 0; 1 when silent."""
    if clip.size == 0:
        return np.float32(1.0)
    peak = clip.max()
    if peak <= 0:
        peak = np.abs(clip).max()
    return np.float32(peak if peak > 0 else 1.0)


def normalize(clip: np.ndarray) -> np.ndarray:
    """float32: a clip cut to its first 16,000 samples and divided by its `peak_divisor`: the one
    normalisation of the pipeline (test.sh reads clips through it; the training cache keeps int16 samples
    and their `peak_divisor`, which its pipeline divides by)."""
    clip = np.asarray(clip, dtype=np.float32).reshape(-1)[:CLIP_SAMPLES]
    return clip / peak_divisor(clip)


def normalize_and_pad(audio: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """float32 (N, 16000): each clip `normalize`d, then zero-padded on the right."""
    out = np.zeros((len(audio), CLIP_SAMPLES), np.float32)
    for row, clip in enumerate(audio):
        normalized = normalize(clip)
        out[row, : len(normalized)] = normalized
    return out


@tf.function(input_signature=[tf.TensorSpec([None, CLIP_SAMPLES], tf.float32)])
def mfcc(audio: tf.Tensor) -> tf.Tensor:
    """MFCCs (N, 49, 10, 1) float32 of normalised, padded clips (N, 16000), as the reference computes them."""
    spectrogram = tf.abs(
        tf.signal.stft(
            audio,
            frame_length=FRAME_LENGTH,
            frame_step=FRAME_STEP,
            fft_length=FFT_LENGTH,
            window_fn=tf.signal.hann_window,
        )
    )
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(N_MEL, FFT_LENGTH // 2 + 1, SAMPLE_RATE, MEL_LOW_HZ, MEL_HIGH_HZ)
    log_mel = tf.math.log(tf.tensordot(spectrogram, mel_matrix, 1) + LOG_OFFSET)
    coefficients = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :N_MFCC]
    return tf.reshape(coefficients, [-1, *FEATURE_SHAPE])


def compute_mfcc(audio: np.ndarray, chunk: int = MFCC_CHUNK) -> np.ndarray:
    """`mfcc` of a numpy float32 (N, 16000) array, in chunks of `chunk` clips: float32 (N, 49, 10, 1)."""
    out = np.empty((len(audio), *FEATURE_SHAPE), np.float32)
    for begin in range(0, len(audio), chunk):
        out[begin : begin + chunk] = mfcc(np.asarray(audio[begin : begin + chunk], dtype=np.float32)).numpy()
    return out
