"""Verb: `tinykws stream` — keyword detections in long recordings or live audio."""

from __future__ import annotations

from tinykws.cli._common import add_verb
from tinykws.errors import TinyKWSError
from tinykws.io import write_json
from tinykws.stream_config import StreamConfig

STREAM_HELP = """\
Listen to long recordings (or the microphone) the way a device does: the network runs every
--hop-ms on the last window of audio, its scores are averaged over --window-ms, and a keyword is
detected when its average passes --threshold (then suppressed for --suppression-ms). Prints one
line per detection: file, time (s, end of the audio the network heard), label, score.

With --truth LABELS.csv (onset_s,offset_s,label, e.g. from `tinykws data stream-test`) it also
scores the detections (MLPerf Tiny streaming rules): hits, misses, false accepts per hour and
the false-reject rate, sweeps the threshold (--curve PNG) and names the threshold that keeps
false accepts within --target-fa per hour.

examples:
  tinykws stream runs/real10 recording.wav
  tinykws stream model_int8.safetensors long.wav --truth long.csv --json out.json --curve roc.png
  tinykws stream runs/real10 --live
"""


def register(subparsers) -> None:
    p = add_verb(subparsers, "stream", "keyword detections in long or live audio", stream_verb,
                 STREAM_HELP)  # fmt: skip
    p.add_argument("model", help="checkpoint, integer graph, .tflite/.onnx, or run directory")
    p.add_argument(
        "audio", nargs="*", help="wav or flac files (16 kHz mono; other rates resampled)"
    )
    p.add_argument("--backend", default="auto", help="torch, fakequant, int, litert, reference, "
                   "onnxruntime (default: as deployed)")  # fmt: skip
    p.add_argument("--threshold", type=float, help="detection threshold (default 0.7)")
    p.add_argument("--hop-ms", type=float, help="network every this many ms (default 40)")
    p.add_argument("--window-ms", type=float, help="averaging window (default 500)")
    p.add_argument("--suppression-ms", type=float, help="same keyword suppressed (default 1000)")
    p.add_argument("--minimum-count", type=int, help="fewest results to decide on (default 3)")
    p.add_argument("--truth", help="truth CSV of the (single) audio file: score the detections")
    p.add_argument("--target-fa", type=float, default=1.0,
                   help="false accepts per hour whose threshold is named (default 1)")  # fmt: skip
    p.add_argument("--curve", help="with --truth: write the threshold curve PNG here")
    p.add_argument("--json", dest="json_out", help="write events (and scores) as JSON here")
    p.add_argument("--live", action="store_true", help="listen to the default input device")
    p.add_argument("--seconds", type=float, default=0.0, help="--live: stop after this long")


def _config(args):
    names = ("threshold", "hop_ms", "window_ms", "suppression_ms", "minimum_count")
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    return StreamConfig.from_dict(given)


def stream_verb(args) -> int:
    # lazy: pulls torch
    from tinykws.measure.predictors import load_predictor

    config = _config(args)
    if args.live == bool(args.audio):
        raise TinyKWSError("give audio files or --live (one of the two)")
    if args.truth and len(args.audio) != 1:
        raise TinyKWSError("--truth scores one recording; give exactly one audio file")
    predictor = load_predictor(args.model, backend=args.backend)
    if args.live:
        # lazy: pulls torch
        from tinykws.stream.live import listen

        return listen(predictor, config, args.seconds)
    results = [_one_file(predictor, config, path, args) for path in args.audio]
    if args.json_out:
        write_json(args.json_out, results[0] if args.truth else {"recordings": results})
    return 0


def _one_file(predictor, config, path, args) -> dict:
    # lazy: pulls torch
    from tinykws.stream.evaluate import stream_recording, summary_lines

    result = stream_recording(predictor, path, config, args.truth, args.target_fa)
    for event in result["events"]:
        print(f"{path}\t{event['time_s']:.2f}\t{event['label']}\t{event['score']:.3f}")
    if not result["events"]:
        print(f"{path}: no keyword detected in {result['duration_s']:.1f} s")
    if args.truth:
        for line in summary_lines(result):
            print(line)
        if args.curve:
            # lazy: pulls numpy; `tinykws --help` stays fast
            from tinykws.stream.sweep import plot_curve

            plot_curve(result["sweep"], args.curve, result["at_target"], title=str(path))
        result = {**result["score"], **result}  # the scores at the top level of the JSON
    return result
