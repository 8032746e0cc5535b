"""Verbs: `tinykws data synth|download|stats|show`."""

from __future__ import annotations

from tinykws.cli._common import add_verb, comma_floats, comma_words
from tinykws.data.layout import LABEL_PRESETS, SPLIT_MODES

VERSIONS = ("v0.02", "v0.01", "test-v0.02")
FRONTENDS = ("logmel", "mfcc", "bark", "micro", "cnn3", "gostop")

DATA_HELP = """\
Make, fetch and inspect Speech Commands-style datasets.

  tinykws data synth data/synth --per-word 20           # synthetic corpus, no download
  tinykws data download data/sc --version v0.02         # official archive (2.4 GB)
  tinykws data stats data/sc --preset 12                # clips per split and class
  tinykws data show data/sc/yes/0a7c2a8d_nohash_0.wav --out clip.png
"""

STATS_HELP = """\
Print clips per split and class, and the class weights, of a Speech Commands folder (or an
official test-set folder). Nothing is decoded, so this is fast even on the full dataset.

Splits come from validation_list.txt / testing_list.txt when present, else from the speaker-hash
rule; `--split-mode random` makes a seeded 70/15/15 file split (it leaks speakers).
"""


def register(subparsers) -> None:
    group = add_verb(subparsers, "data", "make, download and inspect datasets", _help, DATA_HELP)
    verbs = group.add_subparsers(dest="data_verb", metavar="SUBVERB")
    group.set_defaults(run=_help, parser=group)

    p = add_verb(verbs, "synth", "write the synthetic (espeak-ng/flite) corpus", synth_verb)
    p.add_argument("out", help="folder to write (or complete)")
    p.add_argument("--per-word", type=int, default=20, help="clips per word (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=0, help="worker processes (0 = all cores)")
    p.add_argument(
        "--words", type=comma_words, default=(), metavar="W1,W2",
        help="extra words, e.g. your keyword or near-miss negatives",
    )  # fmt: skip

    p = add_verb(verbs, "download", "fetch and extract an official archive", download_verb)
    p.add_argument("out", help="folder to extract into")
    p.add_argument(
        "--version", choices=VERSIONS, default="v0.02", help="v0.02, v0.01, or test-v0.02"
    )

    p = add_verb(verbs, "stats", "clips per split and class", stats_verb, STATS_HELP)
    p.add_argument("root", help="Speech Commands-layout or test-set folder")
    p.add_argument("--preset", choices=tuple(LABEL_PRESETS), default="12")
    p.add_argument("--split-mode", choices=SPLIT_MODES, default="lists")
    p.add_argument("--unknown-fraction", type=float, default=0.2)
    p.add_argument("--silence-count", type=int, default=-1, help="-1 = mean command class size")
    p.add_argument("--seed", type=int, default=0)

    _add_stream_test(verbs)

    p = add_verb(verbs, "show", "plot waveform, spectrum, spectrogram, mel and MFCC", show_verb)
    p.add_argument("clip", help="a .wav or .flac file")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--frontend", choices=FRONTENDS, default="logmel")


def _add_stream_test(verbs) -> None:
    p = add_verb(verbs, "stream-test", "a long test stream with its truth CSV", stream_test_verb,
                 STREAM_TEST_HELP)  # fmt: skip
    p.add_argument("out", help="the WAV to write (its truth goes beside it as .csv)")
    p.add_argument("--data", required=True, help="Speech Commands-layout or test-set folder")
    p.add_argument("--split", choices=("train", "validation", "test"), default="validation")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--keywords", type=int, default=50, help="keyword clips (default 50)")
    p.add_argument("--unknown", type=int, default=-1, help="other words (default: as keywords)")
    p.add_argument("--snr-db", type=comma_floats, default=(10.0, 25.0), metavar="LOW,HIGH")
    p.add_argument("--preset", choices=tuple(LABEL_PRESETS), default="real10",
                   help="which words are keywords (default real10)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)


STREAM_TEST_HELP = """\
Write a long test stream for `tinykws stream --truth`: keyword clips and other words of one
split, in random order with random pauses, over that split's part of the background
recordings, each word at a random SNR; OUT.wav (16 kHz mono) and OUT.csv (onset_s, offset_s,
label of each word). The same seed gives the same files.

  tinykws data stream-test streams/val20 --data data/sc --minutes 20 --keywords 50 --seed 0
"""


def stream_test_verb(args) -> int:
    # lazy: pulls numpy; `tinykws --help` stays fast
    from tinykws.data.stream_test import StreamTestConfig, write_stream_test

    config = StreamTestConfig(
        split=args.split, minutes=args.minutes, keywords=args.keywords, unknown=args.unknown,
        snr_db=args.snr_db, preset=args.preset, seed=args.seed,
    )  # fmt: skip
    wav, csv = write_stream_test(args.out, args.data, config)
    print(f"{wav}\n{csv}")
    return 0


def _help(args) -> int:
    args.parser.print_help()
    return 2


def synth_verb(args) -> int:
    # lazy: pulls numpy; `tinykws --help` stays fast
    from tinykws.data.synth import SynthConfig, synthesize

    config = SynthConfig(per_word=args.per_word, seed=args.seed, jobs=args.jobs, words=args.words)
    print(synthesize(args.out, config))
    return 0


def download_verb(args) -> int:
    # lazy: pulls tarfile and its compressors; `tinykws --help` stays fast
    from tinykws.data.download import download

    print(download(args.out, args.version))
    return 0


def stats_verb(args) -> int:
    from rich.console import Console

    # lazy: pulls numpy; `tinykws --help` stays fast
    from tinykws.data.speech_commands import DataConfig, load_dataset
    from tinykws.data.stats import stats_table

    config = DataConfig(
        preset=args.preset,
        split=args.split_mode,
        unknown_fraction=args.unknown_fraction,
        silence_count=args.silence_count,
        seed=args.seed,
    )
    Console().print(stats_table(load_dataset(args.root, config)))
    return 0


def show_verb(args) -> int:
    # lazy: pulls numpy; `tinykws --help` stays fast
    from tinykws.report.clip import plot_clip

    plot_clip(args.clip, args.out, args.frontend)
    print(args.out)
    return 0
