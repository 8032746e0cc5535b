"""The incremental front end: feature frames of a stream, computed once each, as they complete.

Audio arrives in chunks of any size. Frame t covers samples [t * hop, t * hop + window) of the
stream, exactly as in the clip front end (`frontend.FrontEnd`), and is computed by the
same code (`FrontEnd.numpy` on just the samples of the new frames), so the frames of a stream
equal the clip front end's frames of the same samples. A ring buffer keeps the last
`frames` feature rows; `window()` returns them oldest first: the features of the last clip.

Example:
    >>> import numpy as np
    >>> from tinykws.features.frontend import FrontEnd
    >>> frontend = FrontEnd("micro")
    >>> stream = StreamingFrontEnd(frontend)
    >>> audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    >>> sum(stream.push(chunk) for chunk in np.array_split(audio, 7))
    49
    >>> bool(np.abs(stream.window() - frontend.numpy(audio)).max() <= 1e-5)
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.features.filterbanks import bilinear_matrix
from tinykws.features.frontend import FrontEnd


class StreamingFrontEnd:
    """Feature frames of a stream, with a ring buffer of the last window's frames.

    Args:
        frontend: the model's `tinykws.features.frontend.FrontEnd`.
    """

    def __init__(self, frontend) -> None:
        c = frontend.config
        self.frontend = frontend
        # Raw frames: a resized front end is resized per window (see `window`).
        self.raw = FrontEnd(dataclasses.replace(c, resize=None)) if c.resize else frontend
        self.window_samples, self.hop_samples = c.window_samples, c.hop_samples
        self.frames = frontend.n_frames(c.clip_samples)
        bins = c.n_mfcc if c.kind == "mfcc" else c.n_bands
        self.ring = np.zeros((self.frames, bins), np.float32)
        self.frames_done = 0  # frames computed since the start of the stream
        self.pending = np.zeros(0, np.float32)  # samples from the next frame's start on

    @property
    def samples_seen(self) -> int:
        """Samples pushed so far."""
        return self.frames_done * self.hop_samples + len(self.pending)

    def push(self, samples: np.ndarray) -> int:
        """Add samples (float32 in [-1, 1]); compute the frames they complete.

        Returns:
            The number of new frames (they are the last rows of the ring buffer).
        """
        samples = np.asarray(samples)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
            raise TinyKWSError(
                f"stream: samples must be float (n,); got {samples.dtype} {samples.shape}"
            )
        self.pending = np.concatenate([self.pending, samples.astype(np.float32, copy=False)])
        if len(self.pending) < self.window_samples:
            return 0
        n_new = 1 + (len(self.pending) - self.window_samples) // self.hop_samples
        span = (n_new - 1) * self.hop_samples + self.window_samples
        rows = self.raw.numpy(self.pending[:span])
        self._store(rows)
        self.pending = self.pending[n_new * self.hop_samples :]
        return n_new

    def _store(self, rows: np.ndarray) -> None:
        kept = rows[-self.frames :]  # older rows of a long chunk would be overwritten anyway
        first = self.frames_done + len(rows) - len(kept)
        self.ring[(first + np.arange(len(kept))) % self.frames] = kept
        self.frames_done += len(rows)

    def window(self) -> np.ndarray:
        """float32 (frames, bins): the features of the window ending at the latest frame,
        oldest frame first (resized when the front end resizes)."""
        if self.frames_done < self.frames:
            raise TinyKWSError(
                f"stream: {self.frames_done} frames so far; a window needs {self.frames}"
            )
        order = (self.frames_done + np.arange(self.frames)) % self.frames
        window = self.ring[order]
        c = self.frontend.config
        if c.resize is not None:
            rows = bilinear_matrix(c.resize[0], window.shape[0])
            window = (
                rows @ window.astype(np.float64) @ bilinear_matrix(c.resize[1], window.shape[1]).T
            )
            window = window.astype(np.float32)
        return window
