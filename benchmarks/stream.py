"""Streaming detection of a long test stream: the Python detector on the integer graph against
the generated C detector (kws_stream), with the MLPerf Tiny streaming scores.

1. A test stream (`tinykws data stream-test`) from a Speech Commands folder: `--minutes` of
   the split's background noise with `--keywords` command words and as many other words.
2. The model (a quantized checkpoint or a run directory whose final model is one) runs on it
   with the Python detector on the integer graph (`tinykws.stream`): hits, misses, false
   accepts (per hour), the false-reject rate, and the threshold sweep with the false-reject
   rate at `--target-fa` false accepts per hour.
   With --jobs N the hops are split into N consecutive ranges scored by N processes (each
   range's windows are exactly the windows of the whole stream), and the averaging and
   decisions then run once over all hops, as `tinykws.stream.detector.detect` does.
3. The same graph is exported as C (`tinykws.export.c`, with the detector's StreamConfig);
   kws_stream (gcc -O2) runs on the same WAV file; its events must equal the Python events
   (time and label; scores to the 4 printed decimals). Host time per hop of the C front end
   and network (kws_stream --profile), and, when the export measured them on the emulated
   Cortex-M4 (mcu.json), instructions per hop: the front end's per-clip count scaled to the
   frames of one hop, plus the network's.

    python benchmarks/stream.py runs/real10_stream/int8/model.safetensors \\
        --data ../shared/data/speech_commands_dev --minutes 20 --keywords 50 --out runs/stream20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tinykws.data.stream_test import StreamTestConfig, write_stream_test
from tinykws.export.c import export_c
from tinykws.io import write_json
from tinykws.measure.predictors import load_predictor
from tinykws.stream.evaluate import stream_recording, summary_lines
from tinykws.stream.native import build_kws_stream, run_kws_stream
from tinykws.stream.sweep import plot_curve
from tinykws.stream_config import StreamConfig

CORTEX_M4 = "off"  # "auto": also sizes and emulated instruction counts (ARM tools installed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="quantized checkpoint or run directory")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--keywords", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--target-fa", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=1, help="processes scoring the hops")
    parser.add_argument("--snr-db", type=float, nargs=2, default=(10.0, 25.0))
    args = parser.parse_args()
    out = Path(args.out)
    config = StreamTestConfig(
        split=args.split, minutes=args.minutes, keywords=args.keywords, seed=args.seed,
        snr_db=tuple(args.snr_db),
    )  # fmt: skip
    wav, csv = out / "test.wav", out / "test.csv"
    if not (wav.is_file() and csv.is_file()):
        write_stream_test(wav, args.data, config)
    stream = StreamConfig(threshold=args.threshold)
    predictor = load_predictor(args.model, backend="int")
    start = time.perf_counter()
    cached = out / "python.json"
    if cached.is_file():  # the slow part (the interpreter at every hop) is kept between runs
        result = json.loads(cached.read_text())
    else:
        result = score_stream(args.model, predictor, wav, csv, stream, args)
        result["seconds"] = round(time.perf_counter() - start, 1)
        write_json(cached, result)
    python_s = result["seconds"]
    plot_curve(result["sweep"], out / "curve.png", result["at_target"], title=str(args.model))
    for line in summary_lines(result):
        print(line)
    c = compare_with_c(predictor, wav, stream, result, out)
    summary = {
        "model": str(args.model),
        "stream": {"minutes": args.minutes, "keywords": args.keywords, "seed": args.seed},
        "score": result["score"],
        "at_target": result["at_target"],
        "python_seconds": round(python_s, 1),
        "hops": result["hops"],
        **c,
    }
    write_json(out / "result.json", summary | {"sweep": result["sweep"]})
    print(json.dumps(summary, indent=2))


def score_stream(model, predictor, wav, csv, stream: StreamConfig, args) -> dict:
    """`stream_recording` with the hops scored by `args.jobs` processes."""
    if args.jobs <= 1:
        return stream_recording(predictor, wav, stream, csv, args.target_fa)
    from concurrent.futures import ProcessPoolExecutor

    from tinykws.stream.detector import StreamDetector
    from tinykws.stream.evaluate import read_stream_audio
    from tinykws.stream.recognize import smooth
    from tinykws.stream.score import read_truth, score_events
    from tinykws.stream.sweep import sweep_thresholds, threshold_for

    samples = read_stream_audio(wav)
    detector = StreamDetector(predictor, stream)
    f = detector.frontend
    hop, span = stream.hop_samples(16000), (f.frames - 1) * f.hop_samples + f.window_samples
    n_hops = 1 + (len(samples) - span) // hop
    bounds = np.linspace(0, n_hops, args.jobs + 1).astype(int)
    parts = [(str(model), samples[a * hop : (b - 1) * hop + span], a * hop, stream)
             for a, b in zip(bounds[:-1], bounds[1:])]  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:
        for times, probs in pool.map(_hop_scores, parts):
            detector.scores.append(times, probs)
    detector.hops = len(detector.scores.times)
    scores = detector.scores
    valid, top, score = smooth(scores.times, scores.probs, detector.window, stream.minimum_count)
    events = detector.recognizer.decide(scores.times, valid, top, score)
    duration_s = len(samples) / 16000
    truth = read_truth(csv, duration_s)
    points = sweep_thresholds(detector, truth, duration_s)
    return {
        "duration_s": duration_s, "config": stream.to_dict(),
        "events": [e.to_dict() for e in events], "hops": detector.hops,
        "score": score_events(events, truth, duration_s), "sweep": points,
        "target_fa_per_hour": args.target_fa, "at_target": threshold_for(points, args.target_fa),
    }  # fmt: skip


def _hop_scores(part):
    """(times, probabilities) of every hop of one range (a worker process)."""
    from tinykws.stream.detector import detect

    model, samples, offset, stream = part
    _, detector = detect(load_predictor(model, backend="int"), samples, stream)
    return detector.scores.times + offset, detector.scores.probs


def compare_with_c(predictor, wav, stream: StreamConfig, result: dict, out: Path) -> dict:
    """Export, build and run kws_stream; compare its events with the Python events."""
    graph = predictor.graph
    graph.metadata = {**graph.metadata, **predictor.meta, "stream": stream.to_dict()}
    folder = export_c(graph, out / "c", cortex_m4=CORTEX_M4)
    binary = build_kws_stream(folder)
    start = time.perf_counter()
    events, profile = run_kws_stream(binary, wav, profile=True)
    c_s = time.perf_counter() - start
    python = [(f"{e['time_s']:.4f}", e["label"], f"{e['score']:.4f}") for e in result["events"]]
    native = [(f"{e.time_s:.4f}", e.label, f"{e.score:.4f}") for e in events]
    same = python == native
    print(f"C detector: {len(native)} events, identical to Python: {same}; {profile.strip()}")
    figures = {"c_events": len(native), "python_events": len(python), "identical": same}
    figures |= {"c_seconds": round(c_s, 1), "c_profile": profile.strip()}
    mcu = folder / "mcu.json"
    if mcu.is_file():
        figures["cortex_m4_per_hop"] = per_hop_instructions(json.loads(mcu.read_text()), folder)
    return figures


def per_hop_instructions(mcu: dict, folder: Path) -> dict:
    """Emulated Cortex-M4 instructions of one hop: the front end's frames and the network."""
    header = (folder / "stream.h").read_text() + (folder / "frontend.h").read_text()

    def define(name: str) -> int:
        line = next(x for x in header.splitlines() if x.startswith(f"#define {name} "))
        return int(line.split()[2])

    hop_frames, frames = define("TINYKWS_STREAM_HOP_FRAMES"), define("TINYKWS_FEATURE_FRAMES")
    frontend = round(mcu["frontend_instructions"] * hop_frames / frames)
    return {
        "frontend": frontend,
        "network": mcu["network_instructions"],
        "total": frontend + mcu["network_instructions"],
        "hop_frames": hop_frames,
        "optimization": mcu["optimization"],
    }


if __name__ == "__main__":
    main()
