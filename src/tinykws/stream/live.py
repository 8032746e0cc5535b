"""Live detection from the default input device (PortAudio through `sounddevice`)."""

from __future__ import annotations

import queue
import time

import numpy as np

from tinykws.errors import TinyKWSError
from tinykws.stream.detector import StreamDetector


def open_input():
    """The `sounddevice` module with a default input device, or a one-line error."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise TinyKWSError(
            f"--live needs PortAudio and the sounddevice package ({exc}); install PortAudio "
            "(Debian: apt-get install libportaudio2) or stream a recorded file instead"
        ) from None
    try:
        sd.query_devices(kind="input")
    except Exception:  # sounddevice.PortAudioError, ValueError: no default input device
        raise TinyKWSError(
            "--live: no audio input device on this machine; stream a recorded file instead"
        ) from None
    return sd


def listen(predictor, config, seconds: float = 0.0) -> int:
    """Print detections from the microphone until Ctrl-C (or for `seconds` when > 0)."""

    sd = open_input()
    detector = StreamDetector(predictor, config, keep_scores=False)
    rate = detector.sample_rate_hz
    blocks: queue.Queue = queue.Queue()

    def on_audio(data, frames, time_info, status) -> None:  # PortAudio's thread
        blocks.put(np.array(data[:, 0], np.float32))

    hop = config.hop_samples(rate)
    start = time.monotonic()
    print(f"listening at {rate} Hz (Ctrl-C stops)")
    with sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=hop,
                        callback=on_audio):  # fmt: skip
        while seconds <= 0 or time.monotonic() - start < seconds:
            for event in detector.push(blocks.get()):
                print(f"{time.monotonic() - start:8.2f} s\t{event.label}\t{event.score:.3f}")
    return 0
