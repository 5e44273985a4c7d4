"""The command line: ``python -m audioclf`` or ``audioclf``.

    audioclf demo                                   # synthesise the demo data set
    audioclf extract DATA --features mfcc           # features into the cache
    audioclf train DATA --model gru --epochs 30     # train, print epochs and test metrics
    audioclf evaluate RUN_ID                        # per-class report and confusion matrix
    audioclf evaluate DATA --cv 5                   # k-fold cross-validation of a config
    audioclf predict clip.wav folder/ clips.zip --run RUN_ID --format csv
    audioclf predict long.wav --segments --threshold 0.6  # which class when
    audioclf runs [list | show ID | compare ID ID... | delete ID... | cancel ID]
    audioclf check DATA --features yamnet           # duplicates, leakage, mislabelled clips...
    audioclf tune DATA --trials 30 --vary model.kind=gru,bilstm   # hyperparameter search
    audioclf studies [list | show STUDY | cancel STUDY | delete STUDY]
    audioclf export RUN_ID --out bundle/            # TFLite + standalone predict.py

A thin layer over the library, like the app: every command calls the same
functions the pages call. Errors people can fix print one line to stderr and
exit with status 1 (argparse's usage errors exit with 2).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import AudioclfError

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
FEATURE_KINDS = ("auto", "mfcc", "spectral", "yamnet")
FORMATS = ("table", "csv", "json")
PROGRESS_STEPS = 10  # lines per phase when stderr is not a terminal
ENV_DEBUG = "AUDIOCLF_DEBUG"  # set to 1 to get tracebacks instead of one-line errors
LOCAL_ADDRESS = "127.0.0.1"  # `audioclf app` (and .streamlit/config.toml): only this machine
SHARED_ADDRESS = "0.0.0.0"  # `audioclf app --share`: every network interface
_UNSET = object()  # --sr not given (None means "native": keep each file's rate)


class CLIError(AudioclfError):
    """A command line that cannot be carried out; message is for people."""


# ---------------------------------------------------------------- output helpers

def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        # Scores read best as 0.937; tiny settings (l2 1e-4) must not print as 0.000.
        return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10 ** -(digits - 1) else f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as an aligned plain-text table (columns: the first row's keys)."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _write_rows(rows: list[dict], fmt: str, out=None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
    elif fmt == "csv":
        if rows:
            w = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    elif rows:
        print(format_table(rows), file=out)


class Progress:
    """`done/total` on stderr: one rewritten line on a terminal, a few lines otherwise."""

    def __init__(self, label: str, quiet: bool = False):
        self.label, self.quiet = label, quiet
        self.tty = sys.stderr.isatty()
        self.last_step = -1
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total <= 0:
            return
        elapsed = time.perf_counter() - self.t0
        text = f"{self.label}: {done}/{total} ({100 * done / total:.0f}%, {elapsed:.1f}s)"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if done >= total else ""))
            sys.stderr.flush()
            return
        step = done * PROGRESS_STEPS // total
        if step > self.last_step:
            self.last_step = step
            _err(text)


# ---------------------------------------------------------------- config options

def _number_list(text: str, cast, example: str) -> tuple:
    """'64,32' (or '64 32') -> (64, 32) with `cast`; '', 'none', 'off' or '0' -> ()."""
    text = text.strip().lower()
    if text in ("", "none", "off", "0"):
        return ()
    try:
        return tuple(cast(u) for u in text.replace(" ", ",").split(",") if u)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {example} or 'none', got {text!r}") from None


def _units(text: str) -> tuple[int, ...]:
    """'64,32' -> (64, 32); '' or 'none' -> () (no layers)."""
    return _number_list(text, int, "layer sizes like 64 or 128,64")


def _patience(text: str) -> int | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs or 'none', got {text!r}") from None


def _optional_float(text: str) -> float | None:
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _factors(text: str) -> tuple[float, ...]:
    """'0.9,1.1' -> (0.9, 1.1); '' or 'none' -> ()."""
    return _number_list(text, float, "factors like 0.9,1.1")


def _rate(text: str) -> int | None:
    if text.strip().lower() in ("native", "none", "file"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sample rate in Hz or 'native', got {text!r}") from None


def _defaults(cls) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def add_feature_args(p: argparse.ArgumentParser) -> None:
    from .features import MFCCConfig, SpectralConfig

    m, s = _defaults(MFCCConfig), _defaults(SpectralConfig)
    g = p.add_argument_group("features (defaults are those of MFCCConfig / SpectralConfig)")
    g.add_argument("--features", choices=FEATURE_KINDS, default=None,
                   help="auto: try YAMNet and MFCC on the training clips and keep the better; mfcc: MFCC "
                        "sequence; spectral: MFCC + centroid, roll-off, ZCR, chroma, RMS; yamnet: pretrained "
                        "YAMNet embeddings. Model and training options you do not give take the chosen "
                        "type's defaults (default: auto when a YAMNet model is available, else mfcc)")
    g.add_argument("--sr", type=_rate, default=_UNSET, help=f"sample rate in Hz, or 'native' for mfcc "
                   f"(default: mfcc {m['sr']}, spectral {s['sr']})")
    g.add_argument("--n-mfcc", type=int, help=f"MFCC coefficients (default: {m['n_mfcc']} / {s['n_mfcc']})")
    g.add_argument("--n-fft", type=int, help=f"FFT window in samples (default: {m['n_fft']} / {s['n_fft']})")
    g.add_argument("--hop-length", type=int,
                   help=f"hop between frames in samples (default: {m['hop_length']} / {s['hop_length']})")
    g.add_argument("--n-mels", type=int, help=f"mel bands (default: {m['n_mels']} / {s['n_mels']})")
    g.add_argument("--deltas", action=argparse.BooleanOptionalAction, default=None,
                   help=f"mfcc: append delta and delta-delta coefficients (default: {m['deltas']})")
    g.add_argument("--trim-db", type=_optional_float, default=_UNSET,
                   help="mfcc: cut leading/trailing audio this many dB below the clip's peak, "
                        f"'none' to keep it (default: {_fmt(m['trim_db'])})")
    g.add_argument("--fmax", type=_optional_float, default=_UNSET,
                   help=f"mfcc: top of the mel filter bank in Hz, 'none' for half the rate (default: {_fmt(m['fmax'])})")
    g.add_argument("--yamnet-model", default="",
                   help="yamnet: a .tflite file, SavedModel folder or TF Hub URL "
                        "(default: $AUDIOCLF_YAMNET, then <workspace>/models/yamnet/yamnet.tflite)")


def feature_kind(args: argparse.Namespace, auto_ok: bool = True) -> str:
    """--features, or what a new user gets: auto with a YAMNet model available, else mfcc.
    Where a command extracts one feature type (`auto_ok=False`), that is YAMNet when
    available, else MFCC; "auto" itself is refused there."""
    from .features import yamnet
    from .training.defaults import AUTO, default_feature_kind

    if args.features == AUTO and not auto_ok:
        raise CLIError("--features auto chooses a feature type for training; here choose mfcc, spectral or yamnet.")
    if args.features:
        return args.features
    kind = default_feature_kind(not yamnet.availability(args.yamnet_model))
    return kind if auto_ok or kind != AUTO else "yamnet"


def feature_config(args: argparse.Namespace, auto_ok: bool = True):
    """The FeatureConfig the options describe (only options given override the defaults)."""
    from .features import MFCCConfig, SpectralConfig, YAMNetConfig
    from .training.defaults import AutoFeatures

    kind = feature_kind(args, auto_ok)

    given = {k: getattr(args, k) for k in ("n_mfcc", "n_fft", "hop_length", "n_mels")
             if getattr(args, k) is not None}
    if args.sr is not _UNSET:
        given["sr"] = args.sr
    mfcc_only = {k: getattr(args, k) for k in ("trim_db", "fmax") if getattr(args, k) is not _UNSET}
    if args.deltas is not None:
        mfcc_only["deltas"] = args.deltas
    if kind == "auto":
        if given or mfcc_only:
            raise CLIError(f"--{next(iter({**given, **mfcc_only})).replace('_', '-')} needs a feature type: "
                           "with --features auto each candidate uses its own defaults.")
        return AutoFeatures(yamnet_model=args.yamnet_model)
    if kind == "yamnet":
        if given or mfcc_only:
            raise CLIError(f"--{next(iter({**given, **mfcc_only})).replace('_', '-')} does not apply to "
                           "yamnet features (YAMNet has its own fixed front end).")
        return YAMNetConfig(model=args.yamnet_model)
    if kind == "spectral":
        if mfcc_only:
            raise CLIError(f"--{next(iter(mfcc_only)).replace('_', '-')} applies to mfcc features only.")
        if "sr" in given and given["sr"] is None:
            raise CLIError("spectral features need a fixed --sr (e.g. 22050).")
        return SpectralConfig(**given)
    return MFCCConfig(**given, **mfcc_only)


def add_split_args(p: argparse.ArgumentParser, flag: str = "--split") -> None:
    from .datasets import METHODS, SplitConfig

    d = _defaults(SplitConfig)
    g = p.add_argument_group("split (SplitConfig)")
    g.add_argument(flag, dest="split_method", choices=METHODS, default=d["method"],
                   help="stratified: per-class shares; group: no group (speaker...) in two splits; "
                        "fixed: the data set's own train/val/test (default: %(default)s)")
    g.add_argument("--val", type=float, default=d["val"], help="validation share (default: %(default)s)")
    g.add_argument("--test", type=float, default=d["test"], help="test share (default: %(default)s)")
    g.add_argument("--split-seed", type=int, default=d["seed"], help="seed of the split (default: %(default)s)")
    g.add_argument("--group-pattern", default=d["group_pattern"],
                   help=r"regex whose capture group names a clip's group from its file name, "
                        r"e.g. '^\d+_([a-z]+)_' for FSDD speakers (for --split group)")


def split_config(args: argparse.Namespace):
    from .datasets import SplitConfig

    return SplitConfig(method=args.split_method, val=args.val, test=args.test, seed=args.split_seed,
                       group_pattern=args.group_pattern or None)


def add_model_args(p: argparse.ArgumentParser) -> None:
    from .model.configs import ACTIVATIONS, KINDS, POOLINGS

    d = _per_feature_defaults("model")
    g = p.add_argument_group("model (ModelConfig; defaults depend on the feature type)")
    g.add_argument("--model", choices=KINDS, default=_UNSET,
                   help="recurrent network, or baseline: a dense network on clip mean/std (default: %s)" % d["kind"])
    g.add_argument("--rnn-units", type=_units, default=_UNSET,
                   help="units per recurrent layer, 1-3 layers, e.g. 128,64 (default: %s)" % d["rnn_units"])
    g.add_argument("--dense-units", type=_units, default=_UNSET,
                   help="units per dense layer, 0-3 layers, 'none' for none (default: %s)" % d["dense_units"])
    g.add_argument("--activation", choices=ACTIVATIONS, default=_UNSET,
                   help="dense layer activation (default: %s)" % d["activation"])
    g.add_argument("--dropout", type=float, default=_UNSET, help="dropout rate (default: %s)" % d["dropout"])
    g.add_argument("--l2", type=float, default=_UNSET, help="L2 weight penalty (default: %s)" % d["l2"])
    g.add_argument("--clip-norm", action=argparse.BooleanOptionalAction, default=_UNSET,
                   help="recurrent models: subtract each clip's mean frame first, which removes "
                        "speaker/microphone colouring (default: %s)" % d["clip_norm"])
    g.add_argument("--input-noise", type=float, default=_UNSET,
                   help="Gaussian noise on the standardised inputs while training, in standard "
                        "deviations (default: %s)" % d["input_noise"])
    g.add_argument("--clip-scale", action=argparse.BooleanOptionalAction, default=_UNSET,
                   help="with --clip-norm: also divide by each clip's std per feature (default: %s)" % d["clip_scale"])
    g.add_argument("--pooling", choices=POOLINGS, default=_UNSET,
                   help="recurrent models: classify from the last hidden state, or the mean (and max) "
                        "of all outputs over the clip (default: %s)" % d["pooling"])
    g.add_argument("--time-mask", type=int, default=_UNSET,
                   help="training only: zero a random run of up to this many frames per clip (default: %s)" % d["time_mask"])
    g.add_argument("--feature-mask", type=int, default=_UNSET,
                   help="training only: zero a random run of up to this many feature dimensions per clip "
                        "(default: %s)" % d["feature_mask"])
    g.add_argument("--members", type=int, default=_UNSET,
                   help="ensemble: train this many copies of the network side by side and average "
                        "their probabilities; steadier results, N times the training time (default: %s)" % d["members"])


def model_config(args: argparse.Namespace):
    return _settings(args)[0]


def add_train_args(p: argparse.ArgumentParser) -> None:
    d = _per_feature_defaults("train")
    g = p.add_argument_group("training (TrainConfig; defaults depend on the feature type)")
    g.add_argument("--learning-rate", "--lr", type=float, default=_UNSET,
                   help="Adam learning rate (default: %s)" % d["learning_rate"])
    g.add_argument("--batch-size", type=int, default=_UNSET, help="(default: %s)" % d["batch_size"])
    g.add_argument("--epochs", type=int, default=_UNSET, help="at most this many epochs (default: %s)" % d["epochs"])
    g.add_argument("--patience", type=_patience, default=_UNSET,
                   help="stop after this many epochs without a better validation loss and keep the best "
                        "weights; 'none' trains all epochs (default: %s)" % d["patience"])
    g.add_argument("--min-epochs", type=int, default=_UNSET,
                   help="early stopping neither stops nor picks its best epoch before this one "
                        "(default: %s)" % d["min_epochs"])
    g.add_argument("--no-class-weights", dest="class_weights", action="store_const", const=False, default=_UNSET,
                   help="do not weight rare classes up")
    g.add_argument("--seed", type=int, default=_UNSET, help="training seed (default: %s)" % d["seed"])
    g.add_argument("--reduce-lr", type=_patience, default=_UNSET,
                   help="halve the learning rate after this many epochs without a better validation loss; "
                        "'none' keeps it constant (default: %s)" % d["reduce_lr"])
    g.add_argument("--warp-augment", type=_factors, default=_UNSET,
                   help="mfcc: extra training copies with the frequency axis scaled by each factor, "
                        "e.g. 0.9,1.1; 'none' for no copies (default: %s)" % d["warp_augment"])


def train_config(args: argparse.Namespace):
    return _settings(args)[1]


# ModelConfig / TrainConfig field -> the argparse dest that sets it.
MODEL_OPTIONS = {"kind": "model", "rnn_units": "rnn_units", "dense_units": "dense_units",
                 "activation": "activation", "dropout": "dropout", "l2": "l2", "clip_norm": "clip_norm",
                 "input_noise": "input_noise", "clip_scale": "clip_scale", "pooling": "pooling",
                 "time_mask": "time_mask", "feature_mask": "feature_mask", "members": "members"}
TRAIN_OPTIONS = {"learning_rate": "learning_rate", "batch_size": "batch_size", "epochs": "epochs",
                 "patience": "patience", "min_epochs": "min_epochs", "class_weights": "class_weights",
                 "seed": "seed", "reduce_lr": "reduce_lr", "warp_augment": "warp_augment"}


def _per_feature_defaults(part: str) -> dict[str, str]:
    """{field: "40" or "mfcc 15, yamnet 5"}: each setting's default for the help text."""
    from .training.config import resolve_settings
    from .training.defaults import FEATURE_KINDS

    per_kind = {k: resolve_settings(k)[0 if part == "model" else 1] for k in FEATURE_KINDS}
    out = {}
    for name in (MODEL_OPTIONS if part == "model" else TRAIN_OPTIONS):
        values = {k: _fmt(getattr(c, name)) for k, c in per_kind.items()}
        distinct = dict.fromkeys(values.values())
        out[name] = next(iter(distinct)) if len(distinct) == 1 else \
            ", ".join(f"{k} {v}" for k, v in values.items())
    return out


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{"model.dropout": 0.3, ...}: the model and training options given on the command line."""
    out = {}
    for prefix, options in (("model", MODEL_OPTIONS), ("train", TRAIN_OPTIONS)):
        for name, dest in options.items():
            value = getattr(args, dest, _UNSET)
            if value is not _UNSET:
                out[f"{prefix}.{name}"] = value
    return out


def _settings(args: argparse.Namespace):
    """(ModelConfig, TrainConfig) of the options: the feature type's defaults, given options on top."""
    from .training.config import resolve_settings

    kind = feature_kind(args)
    return resolve_settings("mfcc" if kind == "auto" else kind, overrides(args))


def _chosen(cfg):
    """A run config whose feature type is chosen: Auto decides now, on the training and
    validation clips of the split (never the test clips), as a training run would."""
    if not cfg.is_auto:
        return cfg
    from .training.feature_choice import choose_features, feature_config as config_of
    from .training.prepare import prepare_run

    prepared = prepare_run(cfg)
    choice = choose_features([*prepared.split.train, *prepared.split.val], prepared.labels, cfg.features,
                             progress=Progress("choosing the feature type", False), seed=int(cfg.split.seed))
    _err(f"auto: {choice.reason}")
    return cfg.resolved(config_of(choice.winner, cfg.features))


def run_config(args: argparse.Namespace):
    from .training.config import RunConfig

    return RunConfig(dataset=args.data, split=split_config(args), features=feature_config(args),
                     name=args.name or "", overrides=overrides(args))


def _load_dataset(source: str):
    # Same resolution as a training run: a path, or the name of a workspace data set.
    from .training.prepare import resolve_dataset

    return resolve_dataset(source)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with fd 2 muted: its C++ runtime logs CUDA probing there at import,
    before TF_CPP_MIN_LOG_LEVEL applies. Python errors still surface after the import."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ---------------------------------------------------------------- commands

def cmd_app(args: argparse.Namespace) -> int:
    """Become the Streamlit server of the app (optionally read-only); does not return."""
    from . import workspace

    app = Path(__file__).resolve().parents[1] / "app.py"
    if not app.is_file():
        raise ValueError(f"The app's entry point is not at {app}: run `audioclf app` from a source "
                         "checkout installed with `pip install -e .`.")
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
           "--server.address", args.address, "--browser.gatherUsageStats", "false"]
    if args.readonly:
        from . import limits

        env[workspace.ENV_READONLY] = "1"
        # Streamlit's own upload route then checks the read-only size too (the app's guard does first).
        cmd += ["--server.maxUploadSize", str(max(1, limits.READONLY_UPLOAD_BYTES // limits.MB))]
    if args.headless:
        cmd += ["--server.headless", "true"]
    sys.stdout.flush()
    # exec, not a child process: signals (Ctrl-C, a service manager's TERM) reach the server itself.
    os.execve(sys.executable, cmd, env)
    return EXIT_ERROR  # not reached


def cmd_demo(args: argparse.Namespace) -> int:
    from . import workspace
    from .datasets.demo import CLIPS_PER_CLASS, SEED, make_demo_dataset

    # Read-only mode still builds the workspace's own demo (as the app does), nothing else.
    if args.dest:
        workspace.require_writable("write the demo data set into a folder of yours (--dest)")
    if (args.clips, args.seed) != (CLIPS_PER_CLASS, SEED):
        workspace.require_writable("build the demo data set with other --clips or --seed")
    path = make_demo_dataset(args.dest, clips_per_class=args.clips, seed=args.seed)
    print(path)
    return EXIT_OK


def cmd_download_esc50(args: argparse.Namespace) -> int:
    from .datasets.download import ESC50_URL, download_esc50

    bar = Progress("downloading (MB)", args.quiet)
    path = download_esc50(args.dest, url=args.url or ESC50_URL,
                          progress=lambda done, total: bar(done >> 20, max(1, total >> 20)))
    print(path)
    return EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    from .features import CacheStats, extract_many
    from .training.prepare import check_features

    cfg = feature_config(args, auto_ok=False)
    check_features(cfg)  # YAMNet without a model: one message, not one error per clip
    if args.engine or args.store or args.address:
        return _extract_with_engine(args, cfg)
    ds = _load_dataset(args.data)
    stats = CacheStats()
    paths = [str(it.path) for it in ds.items]
    results = extract_many(paths, cfg, cache=not args.no_cache, n_jobs=args.jobs,
                           progress=Progress(f"extracting {cfg.kind}", args.quiet), stats=stats)
    good = [r for r in results if not isinstance(r, Exception)]
    frames = [r.n_frames for r in good]
    summary = {"data set": ds.name, "clips": stats.total, "classes": len(ds.labels),
               "features": cfg.kind, "dims": good[0].dims if good else None,
               "frames (min/median/max)": f"{min(frames)}/{sorted(frames)[len(frames) // 2]}/{max(frames)}"
               if frames else "-", "from cache": stats.cached, "computed": stats.computed,
               "unreadable": stats.errors, "workers": stats.workers, "seconds": round(stats.seconds, 2)}
    width = max(map(len, summary))
    for k, v in summary.items():
        print(f"{k.ljust(width)}  {_fmt(v)}")
    for where, why in ds.problems[:20]:
        _err(f"skipped {where}: {why}")
    for p, r in zip(paths, results):
        if isinstance(r, Exception):
            _err(f"unreadable: {r}")
    return EXIT_OK if good else EXIT_ERROR


def _extract_with_engine(args: argparse.Namespace, cfg) -> int:
    """`extract MANIFEST --engine ray --address ADDR --store DIR`: into a feature store, on any engine."""
    from .engines import get_engine

    source = args.data if args.data.lower().endswith((".csv", ".tsv", ".parquet", ".pq")) or "://" in args.data \
        else _load_dataset(args.data)
    with get_engine(args.engine or "local", args.address) as engine:
        result = engine.extract(source, cfg, store=args.store,
                                progress=Progress(f"extracting {cfg.kind} ({engine.name})", args.quiet))
    summary = {"engine": result.engine, "clips": result.total, "extracted": result.extracted,
               "already stored": result.skipped, "unreadable": len(result.errors),
               "store": result.store or "the workspace's feature cache", "seconds": round(result.seconds, 2)}
    for node, n in sorted(result.by_node.items()):
        summary[f"on {node}"] = n
    width = max(map(len, summary))
    for k, v in summary.items():
        print(f"{k.ljust(width)}  {_fmt(v)}")
    for path, why in result.errors:
        _err(f"unreadable: {why}")
    return EXIT_OK if result.ok else EXIT_ERROR


def cmd_engines(args: argparse.Namespace) -> int:
    from .engines import get_engine

    with get_engine(args.engine, args.address) as engine:
        info = engine.describe()
    if args.format == "json":
        print(json.dumps(info.to_dict(), indent=1))
        return EXIT_OK
    print(f"engine {info.engine}" + (f" at {info.address}" if info.address else "")
          + f": {len([n for n in info.nodes if n.alive])} node(s), {info.cpus:g} CPUs"
          + (f", {info.busy_cpus:g} busy" if info.busy_cpus is not None else ""))
    for n in info.nodes:
        print(f"  {'head ' if n.is_head else 'node '}{n.host} {n.node_id[:12]}  {n.cpus:g} CPUs"
              + ("" if n.alive else "  (dead)"))
    for name in info.running:
        print(f"  running: {name}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .insight.health import check_dataset

    cfg = feature_config(args, auto_ok=False)
    ds = _load_dataset(args.data)
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = Progress({"reading": "reading clips", "features": f"extracting {cfg.kind}",
                                    "checking": "checking"}.get(stage, stage), args.quiet)
        bars[stage](done, total)

    report = check_dataset(ds, cfg, top=args.top, progress=progress)
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    rows = [{"severity": f.severity, "kind": f.kind, "files": ", ".join(Path(p).name for p in f.paths[:3])
             + (f" (+{len(f.paths) - 3})" if len(f.paths) > 3 else ""), "message": f.message, "fix": f.fix}
            for f in report.findings]
    if args.format == "csv":
        rows = [{**r, "files": ";".join(f.paths)} for r, f in zip(rows, report.findings)]
        _write_rows(rows, "csv")
        return EXIT_OK
    print(f"{report.dataset}: {report.n_clips} clips, {report.n_classes} classes, {len(report.findings)} "
          f"finding(s) ({report.features} features; {report.n_suspects} mislabel suspect(s), top {args.top} listed)")
    for note in report.notes:
        print(f"note: {note}")
    if rows:
        print()
        print(format_table([{k: r[k] for k in ("severity", "kind", "files", "message")} for r in rows]))
    else:
        print("No problems found.")
    return EXIT_OK


class _StopFlag:
    """First Ctrl-C asks training to stop cleanly (run marked cancelled); the second aborts."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            _err("\nstopping after this batch (Ctrl-C again to abort)...")
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (e.g. called from a test runner thread)
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def __call__(self) -> bool:
        return self.stop


def _epoch_line(e: dict) -> str:
    parts = [f"epoch {e['epoch']}/{e['epochs']}", f"loss {e.get('loss', float('nan')):.4f}",
             f"acc {e.get('accuracy', float('nan')):.3f}"]
    if "val_loss" in e:
        parts += [f"val_loss {e['val_loss']:.4f}", f"val_acc {e.get('val_accuracy', float('nan')):.3f}"]
    return "  ".join(parts + [f"{e.get('elapsed', 0):.1f}s"])


def _train_progress(quiet: bool) -> Callable[[dict], None]:
    bar = Progress("extracting features", quiet)

    def on_event(e: dict) -> None:
        if e.get("phase") == "extracting":
            bar(int(e.get("done", 0)), int(e.get("total", 0)))
        elif e.get("phase") == "training" and not quiet:
            _err(_epoch_line(e))
    return on_event


def _metrics_rows(metrics: dict) -> list[dict]:
    return [{"split": s, "clips": (metrics.get(s) or {}).get("n"),
             "accuracy": (metrics.get(s) or {}).get("accuracy"),
             "macro_f1": (metrics.get(s) or {}).get("macro_f1")} for s in ("val", "test") if metrics.get(s)]


def cmd_train(args: argparse.Namespace) -> int:
    from .training import runs
    from .training.background import start_training
    from .training.prepare import prepare_run
    from .training.run import train

    cfg = run_config(args)
    prepare_run(cfg)  # every check the run makes, before a background process or a long extraction
    if args.background:
        run_id = start_training(cfg)
        print(run_id)
        _err(f"training in the background; follow it with `audioclf runs show {run_id}`, "
             f"stop it with `audioclf runs cancel {run_id}`")
        return EXIT_OK
    _import_tensorflow_quietly()
    with _StopFlag() as stop:
        run_id = train(cfg, progress=_train_progress(args.quiet), should_stop=stop)
    run = runs.load_run(run_id)
    if run.info.state != "done":
        _err(f"run {run_id} {run.info.state}: {run.info.message}")
        return EXIT_INTERRUPTED if run.info.state == "cancelled" else EXIT_ERROR
    m = run.metrics
    summary = (f"run {run_id}: {m.get('epochs_trained')} epochs (best {m.get('best_epoch')}), "
               f"{m.get('train_seconds')} s training, {m.get('n_train')} training clips")
    if args.format == "table":
        print(summary)
        _write_rows(_metrics_rows(m), args.format)
    else:  # machine-readable stdout: only the rows (each names its run); people read stderr
        _err(summary)
        _write_rows([{"run": run_id, **row} for row in _metrics_rows(m)], args.format)
    return EXIT_OK


def _tune_progress(quiet: bool) -> Callable[[dict], None]:
    bar = Progress("extracting features", quiet)
    last: list = [None]

    def on_event(e: dict) -> None:
        phase = e.get("phase")
        if phase == "extracting":
            bar(int(e.get("done", 0)), int(e.get("total", 0)))
        elif phase == "searching" and not quiet:
            key = (e.get("trials"), e.get("complete"), e.get("pruned"), e.get("best_value"))
            if key != last[0]:
                last[0] = key
                target = e.get("target")
                _err(f"trials {e.get('trials')}{'/' + str(target) if target else ''}: "
                     f"{e.get('complete')} finished, {e.get('pruned')} pruned, best val macro F1 "
                     f"{_fmt(e.get('best_value'))}")
        elif phase == "training" and not quiet:
            _err(f"training the best config (trial {e.get('trial')}) as a run...")
    return on_event


def cmd_tune(args: argparse.Namespace) -> int:
    from . import tuning

    if args.resume:
        if args.data:
            raise CLIError("--resume continues a study with its own data set and settings; drop DATA.")
        study, cfg = args.resume, None
        tuning.study_dir(study)
    else:
        if not args.data:
            raise CLIError("give a data set (DATA), or --resume STUDY")
        base = _chosen(run_config(args))
        space = tuning.default_space(base.features.kind) if args.space == "default" else tuning.SearchSpace()
        for text in args.vary or []:
            space = space.with_param(tuning.parse_vary(text))
        for name in args.fix or []:
            space = space.without(name)
        trials = args.trials if args.trials is not None or args.timeout is not None else tuning.TuneConfig.trials
        cfg = tuning.TuneConfig(base=base, space=space, objective=args.objective, folds=args.folds,
                                trials=trials, timeout=args.timeout, sampler=args.sampler, pruner=args.pruner,
                                workers=args.workers, seed=base.train.seed, final_run=not args.no_run,
                                engine=args.engine or "local", address=args.address or "")
        tuning.check_space(cfg.space, cfg.base, cfg.sampler)
        tuning.search_items(cfg)  # a bad split or objective fails before anything is written
        study = None
    if args.background:
        name = tuning.start_tuning(cfg, study, trials=args.trials if study else None,
                                   timeout=args.timeout if study else None, name=args.study or "")
        print(name)
        _err(f"searching in the background; follow it with `audioclf studies show {name}`, "
             f"stop it with `audioclf studies cancel {name}`")
        return EXIT_OK
    if study is None:
        study = tuning.create_study(cfg, args.study or "")
    _err(f"study {study} (in {tuning.study_dir(study)})")
    _import_tensorflow_quietly()
    with _StopFlag() as stop:
        result = tuning.run_study(study=study, trials=args.trials if cfg is None else None,
                                  timeout=args.timeout if cfg is None else None,
                                  progress=_tune_progress(args.quiet), should_stop=stop, workers=args.workers,
                                  final_run=False if args.no_run else None)
    _print_study(study, result, args.format, args.top)
    if result.state == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.state == "done" else EXIT_ERROR


def _print_study(study: str, result, fmt: str, top: int) -> None:
    from . import tuning
    from .training import runs

    board = tuning.leaderboard(study)
    test = None
    if result.run_id:
        test = (runs.load_run(result.run_id).metrics.get("test") or {}).get("macro_f1")
    if fmt == "json":
        _write_rows([{**result.to_dict(), "test_macro_f1": test, "leaderboard": board}], "json")
        return
    if fmt == "csv":
        _write_rows(board, "csv")
        return
    shown = board[:top] if top else board
    if shown:
        print(format_table(shown, [c for c in shown[0] if c != "note"]))
    print(f"\nstudy      {study}: {result.state}{' (' + result.message + ')' if result.message not in ('', 'Done') else ''}")
    print(f"trials     {result.n_trials} ({result.n_complete} finished, {result.n_pruned} pruned, "
          f"{result.n_failed} failed)" + (f"; the last search took {result.seconds:.0f} s"
                                          if result.state in tuning.FINAL_STATES else ""))
    if result.best_trial is not None:
        print(f"best       trial {result.best_trial}: val macro F1 {_fmt(result.best_value)}")
        for k, v in sorted(result.best_params.items()):
            print(f"  {k}  {_fmt(v, 4)}")
    if result.run_id:
        print(f"run        {result.run_id}: test macro F1 {_fmt(test)} (see `audioclf runs show {result.run_id}`)")


def cmd_studies(args: argparse.Namespace) -> int:
    from . import tuning

    if args.action == "list":
        if args.ids:
            raise CLIError("`studies list` takes no names; use `studies show STUDY`.")
        rows = tuning.list_studies()
        if args.format == "table":
            rows = [{**r, "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))} for r in rows]
        _write_rows(rows, args.format) if rows else _err("no studies yet")
        return EXIT_OK
    if not args.ids:
        raise CLIError(f"`studies {args.action}` needs at least one study name (see `audioclf studies`).")
    for study in args.ids:
        if args.action == "show":
            _print_study(study, tuning.summarize(study), args.format, args.top)
        elif args.action == "cancel":
            print(f"{study}: {tuning.cancel_tuning(study)}")
        else:
            tuning.delete_study(study)
            print(f"{study}: deleted")
    return EXIT_OK


def _report(metrics, fmt: str, title: str) -> None:
    """Per-class report and confusion matrix of one evaluation.Metrics."""
    per_class = [{"class": lab, **{k: (v if k != "support" else int(v)) for k, v in d.items()}}
                 for lab, d in metrics.per_class.items()]
    if fmt != "table":
        _write_rows([{"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "clips": metrics.n,
                      "per_class": per_class, "confusion": [list(r) for r in metrics.confusion],
                      "labels": list(metrics.labels), "misclassified": list(metrics.misclassified)}]
                    if fmt == "json" else per_class, fmt)
        return
    print(f"{title}: {metrics.n} clips, accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}\n")
    print(format_table(per_class) + "\n")
    labels = list(metrics.labels)
    cm = [{"true \\ predicted": lab, **{p: n for p, n in zip(labels, row)}}
          for lab, row in zip(labels, metrics.confusion)]
    print("confusion matrix (rows: true class)")
    print(format_table(cm))
    if metrics.misclassified:
        print(f"\nmost confident mistakes ({len(metrics.misclassified)} in all):")
        print(format_table(list(metrics.misclassified)[:10]))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.cross_validation import cross_validate
    from .evaluation.metrics import Metrics, evaluate
    from .training import runs

    if args.cv:
        try:
            cfg = _run_config_of(runs.run_dir(args.target).name)
        except runs.RunError:
            args.data = args.target
            cfg = run_config(args)
        from .training.prepare import prepare_run

        prepare_run(cfg, folds=args.cv)  # the same checks as a training run, before any extraction
        bar = Progress("extracting features", args.quiet)
        _import_tensorflow_quietly()

        def on_event(e: dict) -> None:
            if e.get("phase") == "extracting":
                bar(int(e.get("done", 0)), int(e.get("total", 0)))
            elif e.get("phase") == "fold" and not args.quiet:
                held = f" (held out: {', '.join(e['groups'])})" if e.get("groups") else ""
                _err(f"fold {e['fold']}/{e['folds']}{held}: macro F1 {e['macro_f1']:.3f}, "
                     f"accuracy {e['accuracy']:.3f}")
        res = cross_validate(cfg, k=args.cv, progress=on_event)
        rows = [{"fold": i + 1, **({"held out": ",".join(res.groups[i])} if res.groups else {}),
                 "macro_f1": f, "accuracy": a, "epochs": e}
                for i, (f, a, e) in enumerate(zip(res.macro_f1, res.accuracy, res.epochs or [None] * res.k))]
        if args.format == "json":
            _write_rows([res.to_dict()], "json")
        else:
            _write_rows(rows, args.format)
            if args.format == "table":
                print(f"\n{res.k}-fold: macro F1 {res.macro_f1_mean:.3f} ± {res.macro_f1_std:.3f}, "
                      f"accuracy {res.accuracy_mean:.3f} ± {res.accuracy_std:.3f}")
        return EXIT_OK

    run = runs.load_run(args.target)
    if args.data:  # a new labelled data set, through the run's model
        from .inference.predict import Predictor

        ds = _load_dataset(args.data)
        _import_tensorflow_quietly()
        pred = Predictor.load(run.info.id)
        results = pred.predict_files([it.path for it in ds.items], progress=Progress("predicting", args.quiet))
        ok = [(it, r) for it, r in zip(ds.items, results) if r.prediction is not None]
        for r in results:
            if r.error:
                _err(f"skipped: {r.error}")
        if not ok:
            raise CLIError(f"No clip of {args.data} could be read.")
        import numpy as np

        metrics = evaluate([it.label for it, _ in ok], np.stack([r.prediction.probs for _, r in ok]),
                           list(pred.labels), paths=[r.path for _, r in ok])
        _report(metrics, args.format, f"run {run.info.id} on {ds.name}")
        return EXIT_OK
    if run.info.state != "done":
        raise CLIError(f"Run {run.info.id} is {run.info.state}, not done: it has no metrics yet.")
    stored = run.metrics.get(args.split)
    if not stored:
        raise CLIError(f"Run {run.info.id} has no {args.split} split to report (its split share was 0).")
    _report(Metrics.from_dict(stored), args.format, f"run {run.info.id}, {args.split} split")
    return EXIT_OK


def _run_config_of(run_id: str):
    from .training import runs
    from .training.config import RunConfig

    return RunConfig.from_dict(runs.load_run(run_id).config)


def _audio_files(sources: Sequence[str], tmp: Path) -> list[str]:
    """Files from files, folders (recursive) and zips (unpacked safely into `tmp`)."""
    from .audio import SUPPORTED_EXTENSIONS
    from .datasets import safe_extract

    out: list[str] = []
    for i, src in enumerate(sources):
        path = Path(src).expanduser()
        if path.is_file() and path.suffix.lower() == ".zip":
            path = safe_extract(path, tmp / f"zip{i}")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                           and not any(part.startswith(".") or part == "__MACOSX" for part in p.parts[-3:]))
            if not found:
                _err(f"no audio files ({', '.join(SUPPORTED_EXTENSIONS)}) in {src}")
            out += [str(p) for p in found]
        else:
            out.append(str(path))  # a missing or bad file gets its error from load_audio
    return out


def _prediction_rows(results, k: int, fmt: str) -> list[dict]:
    """One row per file: predicted class, confidence, top-k (flat columns, or a list in JSON)."""
    rows = []
    for r in results:
        p = r.prediction
        row: dict[str, Any] = {"path": r.path, "predicted": p.label if p else None,
                               "confidence": round(p.confidence, 4) if p else None}
        top = p.top_k(k) if p else []
        if fmt == "json":
            row["top_k"] = [{"label": lab, "probability": round(pr, 4)} for lab, pr in top]
        else:
            for i in range(k):
                lab, pr = top[i] if i < len(top) else (None, None)
                row[f"top{i + 1}"] = lab
                row[f"p{i + 1}"] = round(pr, 4) if pr is not None else None
        row["silent"] = bool(p.silent) if p else None
        row["error"] = r.error or None
        rows.append(row)
    return rows


def _prediction_table(rows: list[dict]) -> str:
    # Errors go to stderr; a silent column only when some clip is silent.
    ok = [{**r, "path": Path(r["path"]).name, "silent": "silent" if r["silent"] else ""}
          for r in rows if not r["error"]]
    cols = [c for c in (ok[0] if ok else {}) if c != "error" and (c != "silent" or any(r["silent"] for r in ok))]
    return format_table(ok, cols)


def _threshold(given: float | None, suggested: float | None, quiet: bool) -> float:
    """--threshold, else the run's suggestion (0 = off), said on stderr."""
    if given is not None:
        return given
    if not quiet:
        _err(f"'not sure' threshold {suggested:.2f} (the run's suggestion; --threshold 0 turns it off)"
             if suggested else "no 'not sure' threshold (the run suggests none; set one with --threshold)")
    return suggested or 0.0


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1 (0 = off), got {text!r}")
    return value


def _segment_rows(results) -> list[dict]:
    """One row per segment of each file: which class when (see Prediction.segments)."""
    return [{"path": r.path, **seg.to_dict()} for r in results if r.prediction
            for seg in r.prediction.segments()]


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference.predict import Predictor
    from .training import runs

    run_id = args.run
    if not run_id:
        best = runs.best_run()
        if best is None:
            raise CLIError("No finished run to predict with; train one (`audioclf train DATA`) or give --run ID.")
        run_id = best.id
        _err(f"using run {run_id} (best validation macro F1 {best.val_macro_f1:.3f}); choose one with --run")
    runs.run_dir(run_id)  # a wrong id fails before the slow import
    _import_tensorflow_quietly()
    predictor = Predictor.load(run_id)
    threshold = _threshold(args.threshold, predictor.suggested_threshold, args.quiet)
    with tempfile.TemporaryDirectory(prefix="audioclf-predict-") as tmp:
        paths = _audio_files(args.paths, Path(tmp))
        if not paths:
            raise CLIError("No audio files to predict.")
        results = predictor.predict_files(paths, progress=Progress("predicting", args.quiet or len(paths) < 20),
                                          threshold=threshold)
    if args.segments:
        segments = _segment_rows(results)
        if args.format == "table":
            segments = [{**r, "path": Path(r["path"]).name} for r in segments]
        _write_rows(segments, args.format)
    else:
        rows = _prediction_rows(results, max(1, min(args.top_k, len(predictor.labels))), args.format)
        table = _prediction_table(rows) if args.format == "table" else ""
        if table:
            print(table)
        elif args.format != "table":
            _write_rows(rows, args.format)
    failed = [r for r in results if r.error]
    for r in failed:
        _err(f"error: {r.error}")
    return EXIT_ERROR if failed else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .export.bundle import export_run
    from .training import runs

    runs.run_dir(args.run)  # a wrong id fails before the slow import
    _import_tensorflow_quietly()
    result = export_run(args.run, args.out, progress=None if args.quiet else lambda m: _err(f"export: {m}"))
    if not result.tflite:
        _err(f"note: no model.tflite ({result.tflite_error}); the bundle's saved_model/ needs TensorFlow")
    print(result.path)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from .training import runs

    action = args.action or "list"
    ids = args.ids
    if action != "list" and not ids:
        raise CLIError(f"`runs {action}` needs at least one run id (see `audioclf runs list`).")
    if action == "list":
        rows = [{"id": r.id, "name": r.name, "state": r.state, "data set": Path(r.dataset).name,
                 "features": r.features, "model": r.model, "val_f1": r.val_macro_f1,
                 "test_f1": r.test_macro_f1, "test_acc": r.test_accuracy} for r in runs.list_runs()]
        if not rows and args.format == "table":
            _err("no runs yet; train one with `audioclf train DATA`")
        _write_rows(rows, args.format)
    elif action == "show":
        for run_id in ids:
            _show_run(run_id, args.format)
    elif action == "compare":
        _write_rows(_transpose(runs.compare_runs(ids)) if args.format == "table" else runs.compare_runs(ids),
                    args.format)
    elif action == "delete":
        for run_id in ids:
            runs.delete_run(run_id)
            _err(f"deleted run {run_id}")
    elif action == "cancel":
        from .training.background import cancel_run

        for run_id in ids:
            print(f"{run_id}: {cancel_run(run_id)}")
    return EXIT_OK


def _transpose(rows: list[dict]) -> list[dict]:
    """Runs side by side: one row per setting, one column per run; differing settings marked."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "id"))
    out = []
    for k in keys:
        vals = [r.get(k) for r in rows]
        differs = len({json.dumps(v, default=str) for v in vals}) > 1
        out.append({"setting": ("* " if differs else "  ") + k,
                    **{r["id"]: v for r, v in zip(rows, vals)}})
    return out


def _show_run(run_id: str, fmt: str) -> None:
    from .training import runs

    run = runs.load_run(run_id)
    status = runs.run_status(run_id)
    if fmt == "json":
        _write_rows([{"id": run_id, "state": status.state, "message": status.message,
                      "epoch": status.epoch, "epochs": status.epochs, "config": run.config,
                      "labels": run.labels, "metrics": run.metrics, "history": run.history}], "json")
        return
    print(f"run {run_id} {('(' + run.info.name + ')') if run.info.name else ''}".rstrip())
    print(f"state      {status.state}{': ' + status.message if status.message else ''}")
    if status.epochs:
        print(f"epoch      {status.epoch}/{status.epochs}, {status.elapsed:.0f} s"
              + (f", about {status.eta:.0f} s left" if status.eta else ""))
    elif status.phase_total and not status.final:
        print(f"progress   {status.phase_done}/{status.phase_total}")
    flat = {k: v for k, v in runs.compare_runs([run_id])[0].items()
            if k.split(".")[0] in ("dataset", "split", "features", "model", "train")}
    width = max(map(len, flat), default=0)
    print("\nconfig")
    for k, v in flat.items():
        print(f"  {k.ljust(width)}  {_fmt(v)}")
    if run.labels:
        print(f"\nclasses    {', '.join(run.labels)}")
    if run.history:
        print("\nlast epoch " + _epoch_line(run.history[-1]))
    if run.metrics:
        print()
        print(format_table(_metrics_rows(run.metrics)))


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="audioclf", description="Classify sounds: extract features, train sequence models, "
        "evaluate and predict. Everything is stored in the workspace ($AUDIOCLF_HOME, default ./workspace).",
        epilog="Run `audioclf COMMAND --help` for the options of a command.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"audioclf {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, desc: str = "") -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=desc or help_)
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
        return sp

    def data_arg(sp, help_=None):
        sp.add_argument("data", metavar="DATA", help=help_ or "a data set: a folder with one sub-folder "
                        "per class (optionally under train/ val/ test/), a .zip of one, a CSV manifest "
                        "(path,label[,split][,group]), ESC-50, or the name of a workspace data set")

    def engine_args(sp):
        sp.add_argument("--engine", choices=("local", "ray"), default=None,
                        help="where the work runs: this machine's process pool (default) or a Ray cluster")
        sp.add_argument("--address", default=None, help="the Ray cluster to join (host:port, ray://host:10001; "
                        "default $AUDIOCLF_RAY_ADDRESS, else a Ray instance on this machine)")

    def format_arg(sp):
        sp.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")

    sp = add("extract", "extract features of a data set into the cache",
             "Extract features of every clip of a data set into the workspace's feature cache "
             "(in parallel; cached clips are skipped), and print a summary.")
    data_arg(sp)
    add_feature_args(sp)
    sp.add_argument("--jobs", type=int, help="worker processes (default: all cores)")
    sp.add_argument("--no-cache", action="store_true", help="recompute and do not store")
    engine_args(sp)
    sp.add_argument("--store", help="a feature store to fill (a folder, NFS, s3://...); DATA may then be a "
                    "manifest (.csv or .parquet: path[,label][,group]), local or s3:// / gs://")
    sp.set_defaults(func=cmd_extract)

    sp = add("engines", "where work runs: the engine's nodes, CPUs and what is running",
             "Describe the engine: this machine (local), or the Ray cluster at --address "
             "($AUDIOCLF_RAY_ADDRESS) with its nodes, CPUs and running tasks.")
    engine_args(sp)
    format_arg(sp)
    sp.set_defaults(func=cmd_engines)

    sp = add("train", "train a model on a data set",
             "Split a data set, extract features, train a model with early stopping and evaluate it on "
             "the validation and test splits. Prints each epoch on stderr and the final metrics; the run "
             "(model, config, history, metrics) is saved in the workspace. Ctrl-C cancels cleanly.")
    data_arg(sp)
    sp.add_argument("--name", default="", help="a name for the run")
    sp.add_argument("--background", action="store_true",
                    help="train in a separate process; print the run id and return at once")
    format_arg(sp)
    add_split_args(sp)
    add_feature_args(sp)
    add_model_args(sp)
    add_train_args(sp)
    sp.set_defaults(func=cmd_train)

    sp = add("evaluate", "report a run's metrics, or cross-validate a config",
             "With a run id: accuracy, macro F1, per-class precision/recall/F1, confusion matrix and the "
             "most confident mistakes on the run's validation or test split (or on another labelled data "
             "set with --data). With --cv K: k-fold cross-validation of a config, given as a run id or as "
             "a data set plus the same options as `train`.")
    sp.add_argument("target", metavar="RUN_ID|DATA", help="a run id (see `audioclf runs`), or a data set with --cv")
    sp.add_argument("--split", choices=("val", "test"), default="test", help="which split of the run")
    sp.add_argument("--data", help="evaluate the run's model on this labelled data set instead")
    sp.add_argument("--cv", type=int, metavar="K", help="k-fold cross-validation with K folds (2-20)")
    sp.add_argument("--name", default="", help=argparse.SUPPRESS)
    format_arg(sp)
    add_split_args(sp, "--split-method")
    add_feature_args(sp)
    add_model_args(sp)
    add_train_args(sp)
    sp.set_defaults(func=cmd_evaluate)

    sp = add("tune", "search hyperparameters with Optuna",
             "Search for the settings that score best on the validation split (or in k-fold "
             "cross-validation of the non-test clips), with Optuna: TPE by default, hopeless trials pruned "
             "from their per-epoch validation macro F1. The test split is never seen by the search; the best "
             "config is then trained as a run and scored once on it. The study is kept in the workspace "
             "(tuning/STUDY/): --resume STUDY adds trials. The split, feature, model and training options "
             "set the base config that the search varies. Ctrl-C stops cleanly.")
    sp.add_argument("data", nargs="?", metavar="DATA", help="a data set, as for `train`")
    g = sp.add_argument_group("search")
    g.add_argument("--trials", type=int, help="trials to run (default: 30 unless --timeout is given; "
                   "with --resume: the study's own number more)")
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the search after this long")
    g.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe", help="(default: %(default)s)")
    g.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="stop hopeless trials early (default: %(default)s)")
    g.add_argument("--objective", choices=("val", "cv"), default="val",
                   help="val: validation macro F1; cv: mean macro F1 of k folds of the non-test clips, "
                        "for small data sets (default: %(default)s)")
    g.add_argument("--folds", type=int, default=3, help="k for --objective cv (default: %(default)s)")
    g.add_argument("--space", choices=("default", "none"), default="default",
                   help="start from the feature type's default search space, or from nothing (default: "
                        "%(default)s)")
    g.add_argument("--vary", action="append", metavar="NAME=VALUES",
                   help="add or change a searched setting: a list (model.kind=gru,bilstm), a range "
                        "(model.dropout=0:0.5), a log range (train.learning_rate=1e-4:1e-2:log) or a stepped "
                        "range (model.dropout=0:0.5:0.1); one value fixes it. Repeatable. Settings: "
                        "features.*, model.* (model.rnn_layers, model.rnn_units, model.dense_layers, "
                        "model.dense_units), train.*")
    g.add_argument("--fix", action="append", metavar="NAME", help="do not search this setting of the "
                   "default space; the base config's value is used. Repeatable")
    engine_args(g)
    g.add_argument("--workers", type=int, help="trials at once (default: 2 on a multi-core machine for small "
                   "data sets, else 1)")
    g.add_argument("--study", help="a name for the new study (default: study-<time>)")
    g.add_argument("--resume", metavar="STUDY", help="continue this study with more trials")
    g.add_argument("--no-run", action="store_true", help="do not train the best config as a run")
    g.add_argument("--background", action="store_true", help="search in a separate process; print the study name")
    g.add_argument("--top", type=int, default=10, help="leaderboard rows to print, 0 for all (default: %(default)s)")
    sp.add_argument("--name", default="", help=argparse.SUPPRESS)
    format_arg(sp)
    add_split_args(sp)
    add_feature_args(sp)
    add_model_args(sp)
    add_train_args(sp)
    sp.set_defaults(func=cmd_tune)

    sp = add("studies", "list, show, cancel or delete hyperparameter searches",
             "list: every study in the workspace, newest first; show STUDY...: leaderboard and best trial; "
             "cancel STUDY...: stop background searches; delete STUDY...: remove studies (their best runs "
             "stay).")
    sp.add_argument("action", nargs="?", choices=("list", "show", "cancel", "delete"), default="list")
    sp.add_argument("ids", nargs="*", metavar="STUDY")
    sp.add_argument("--top", type=int, default=10, help="leaderboard rows, 0 for all (default: %(default)s)")
    format_arg(sp)
    sp.set_defaults(func=cmd_studies)

    sp = add("predict", "predict the classes of audio files",
             "Predict audio files, folders (searched recursively) or .zip archives with a trained run, "
             "and print the top-k classes per file. Files that cannot be read are reported on stderr "
             "and make the exit status 1.")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or .zip files")
    sp.add_argument("--run", help="run id (default: the finished run with the best validation macro F1)")
    sp.add_argument("--top-k", type=int, default=3, help="classes per file (default: 3)")
    sp.add_argument("--threshold", type=_probability, default=None, metavar="P",
                    help="below this confidence the answer is 'unknown' (none of the classes); "
                         "default: the run's suggestion from its validation predictions; 0 turns it off")
    sp.add_argument("--segments", action="store_true",
                    help="print which class when instead: start,end,label,confidence rows per file "
                         "(windows of long clips, neighbours with the same answer merged)")
    format_arg(sp)
    sp.set_defaults(func=cmd_predict)

    sp = add("export", "export a run as a bundle that runs without audioclf",
             "Write a finished run's model as TFLite (model.tflite), a TensorFlow SavedModel and the Keras "
             "file, with labels.json, features.json, a standalone predict.py (numpy, soundfile, soxr, "
             "ai-edge-litert, librosa for MFCCs) and its requirements.txt, into a new folder; YAMNet runs "
             "include yamnet.tflite. Prints the folder.")
    sp.add_argument("run", metavar="RUN_ID", help="a finished run (see `audioclf runs`)")
    sp.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the bundle")
    sp.set_defaults(func=cmd_export)

    sp = add("runs", "list, show, compare, delete or cancel training runs",
             "list: all runs, newest first; show ID...: config, progress and metrics; compare ID ID...: "
             "settings and scores side by side (* marks differences); delete ID...: remove runs; "
             "cancel ID...: stop background runs.")
    sp.add_argument("action", nargs="?", choices=("list", "show", "compare", "delete", "cancel"), default="list")
    sp.add_argument("ids", nargs="*", metavar="ID")
    format_arg(sp)
    sp.set_defaults(func=cmd_runs)

    sp = add("check", "find duplicates, leakage, mislabelled and bad clips in a data set",
             "Health check of a data set: exact duplicates (same decoded audio) and near duplicates, "
             "leakage across train/val/test folders, likely mislabelled clips (out-of-fold predictions "
             "that confidently disagree with the label), silent, clipped, very short or long clips, mixed "
             "sample rates or channels, and class imbalance. YAMNet features find mislabelled sound events "
             "best. Fix them on the Data page's Health tab.")
    data_arg(sp)
    sp.add_argument("--top", type=int, default=20, help="mislabel suspects to list (default: 20)")
    format_arg(sp)
    add_feature_args(sp)
    sp.set_defaults(func=cmd_check)

    sp = add("app", "start the app in the browser",
             "Start the Streamlit app (`streamlit run app.py`), for this machine only unless --share. "
             "--readonly makes a shared demo: nothing can be trained, deleted or added to data sets "
             "(same as AUDIOCLF_READONLY=1), and the Present page opens first.")
    sp.add_argument("--readonly", action="store_true", help="no training, deleting or data set editing")
    sp.add_argument("--port", type=int, default=8501, help="(default: 8501)")
    where = sp.add_mutually_exclusive_group()
    where.add_argument("--address", default=LOCAL_ADDRESS,
                       help=f"address to listen on (default: {LOCAL_ADDRESS}: only this machine)")
    where.add_argument("--share", dest="address", action="store_const", const=SHARED_ADDRESS,
                       help=f"listen on every network interface ({SHARED_ADDRESS}): other machines can "
                            "open the app; give it a password (README: Read-only mode and a password)")
    sp.add_argument("--headless", action="store_true", help="do not open a browser")
    sp.set_defaults(func=cmd_app)

    sp = add("demo", "create the synthetic demo data set",
             "Synthesise a small 5-class demo data set (siren, dial tone, rain, clock ticks, bird chirps) "
             "and print its folder. An existing folder is replaced only if it is empty or a demo "
             "this command made; a folder with anything else in it is refused, never deleted.")
    sp.add_argument("--dest", help="folder (default: <workspace>/datasets/demo, or "
                                   "audioclf-demo if your own data set is called demo)")
    sp.add_argument("--clips", type=int, default=24, help="clips per class (default: 24)")
    sp.add_argument("--seed", type=int, default=0, help="(default: 0)")
    sp.set_defaults(func=cmd_demo)

    sp = add("download-esc50", "download and unpack the ESC-50 data set",
             "Download ESC-50 (2,000 clips, 50 classes, about 600 MB), verify and unpack it safely, and "
             "print its folder. --url also takes a local zip.")
    sp.add_argument("--dest", help="folder (default: <workspace>/datasets/esc50)")
    sp.add_argument("--url", help="archive URL or local .zip (default: the official GitHub archive)")
    sp.set_defaults(func=cmd_download_esc50)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything may import TensorFlow
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `audioclf runs | head`
        sys.stderr.close()
        return EXIT_OK
    except (AudioclfError, OSError) as e:  # every library error has a message for people
        if os.environ.get(ENV_DEBUG):
            raise
        _err(f"audioclf {args.command}: error: {_one_line(e)}")
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001  # a bug: still one line, with how to see more
        if os.environ.get(ENV_DEBUG):
            raise
        _err(f"audioclf {args.command}: unexpected error: {type(e).__name__}: {_one_line(e)} "
             f"(set {ENV_DEBUG}=1 for the traceback)")
        return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
