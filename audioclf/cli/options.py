"""Options of the config dataclasses, derived from their fields, and the configs they describe.

    from audioclf.cli.options import add_model_arguments, model_config

Each option stands for one field of MFCCConfig / SpectralConfig, SplitConfig, ModelConfig or
TrainConfig: its flag is the field's name (``rnn_units`` -> ``--rnn-units``), its parser
follows the field's type (``int | None`` takes 'none', ``tuple[float, ...]`` takes '0.9,1.1',
``bool`` gives ``--x/--no-x``) and the default in its help is the dataclass's, or for model
and training fields the table of defaults per feature type. What a type cannot say (the
help text, choices, a flag spelt otherwise, a parser with a better message) is one
:class:`Option` in the tables below; a field that is no option is in ``HIDDEN``. A new field
with neither stops the parser from being built, so no CLI test passes until it is decided.

Feature, model and training options not given stay ``UNSET``: the feature type's defaults
apply and only what the user typed becomes an override, as on the Train page.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .common import CLIError, ProgressBar, err, fmt

UNSET = object()  # an option not given (None is a value: --sr native, --patience none)
# The feature types `--features` offers (with auto): those feature_config() can make. The networks'
# `model` fields have flags of their own (--yamnet-model, --efficientat-model): --model is the model kind.
FEATURE_TYPES = ("mfcc", "spectral", "yamnet", "efficientat")
TYPE_NAMES = {int: "a whole number", float: "a number", str: "a text"}  # in "expected ... or 'none'"
HIDDEN = {"features": {"warp"}}  # warp: set per training copy by train.warp_augment, not by hand


@dataclass(frozen=True)
class Option:
    """What a field's name, type and default do not say about its option."""

    help: str
    flags: tuple[str, ...] = ()  # default: ("--field-name",)
    dest: str = ""  # default: the field's name
    parse: Callable[[str], Any] | None = None  # default: from the field's type
    choices: Sequence[str] | None = None
    show_default: bool = True


# ---------------------------------------------------------------- parsers of option values

def _number_list(text: str, cast, example: str) -> tuple:
    """'64,32' (or '64 32') -> (64, 32) with `cast`; '', 'none', 'off' or '0' -> ()."""
    text = text.strip().lower()
    if text in ("", "none", "off", "0"):
        return ()
    try:
        return tuple(cast(u) for u in text.replace(" ", ",").split(",") if u)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {example} or 'none', got {text!r}") from None


def _or_none(cast, words: tuple[str, ...], expected: str) -> Callable[[str], Any]:
    """A parser of `cast` values where any of `words` means None."""
    def parse(text: str):
        if text.strip().lower() in words:
            return None
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse


def units(text: str) -> tuple[int, ...]:
    """'128,64' -> (128, 64); 'none' -> () (no layers)."""
    return _number_list(text, int, "layer sizes like 64 or 128,64")


def factors(text: str) -> tuple[float, ...]:
    """'0.9,1.1' -> (0.9, 1.1); 'none' -> ()."""
    return _number_list(text, float, "factors like 0.9,1.1")


def finetune_blocks(text: str) -> int:
    """'2' -> 2; 'all' -> every block (training.config.FINETUNE_ALL); 'none' or 'off' -> 0."""
    from ..training.config import FINETUNE_ALL

    word = text.strip().lower()
    if word in ("all", "whole"):
        return FINETUNE_ALL
    if word in ("none", "off", "frozen"):
        return 0
    try:
        return int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of blocks (0-{FINETUNE_ALL}) or 'all', "
                                         f"got {text!r}") from None


epochs_or_none = _or_none(int, ("none", "off", "0"), "a whole number of epochs or 'none'")
rate = _or_none(int, ("native", "none", "file"), "a sample rate in Hz or 'native'")


def _parser_of(tp) -> Callable[[str], Any] | None:
    """The parser a field's type implies; None for bool (a --x/--no-x switch)."""
    if tp is bool:
        return None
    if tp in (int, float, str):
        return tp
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args[1:] == (Ellipsis,):
        return lambda text: _number_list(text, args[0], f"a list like {args[0](1)},{args[0](2)}")
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1 and len(args) == 2:
        return _or_none(inner[0], ("none", "off"), f"{TYPE_NAMES.get(inner[0], inner[0].__name__)} or 'none'")
    raise TypeError(f"no command-line parser for a field of type {tp!r}")


# ---------------------------------------------------------------- the tables

def _feature_table() -> dict[str, Option]:
    return {
        "sr": Option("sample rate in Hz, or 'native' for mfcc", parse=rate),
        "n_mfcc": Option("MFCC coefficients"),
        "n_fft": Option("FFT window in samples"),
        "hop_length": Option("hop between frames in samples"),
        "n_mels": Option("mel bands"),
        "deltas": Option("append delta and delta-delta coefficients"),
        "trim_db": Option("cut leading/trailing audio this many dB below the clip's peak, 'none' to keep it"),
        "fmax": Option("top of the mel filter bank in Hz, 'none' for half the rate"),
    }


def _split_fields(method_flag: str = "--split") -> list[_Field]:
    from ..datasets import SplitConfig

    return _fields([SplitConfig], _split_table(method_flag), "split")


def _split_table(method_flag: str) -> dict[str, Option]:
    from ..datasets import METHODS

    return {
        "method": Option("stratified: per-class shares; group: no group (speaker...) in two splits; "
                         "fixed: the data set's own train/val/test", flags=(method_flag,), dest="split_method",
                         choices=METHODS),
        "val": Option("validation share"),
        "test": Option("test share"),
        "seed": Option("seed of the split", flags=("--split-seed",), dest="split_seed"),
        "group_pattern": Option(r"regex whose capture group names a clip's group from its file name, "
                                r"e.g. '^\d+_([a-z]+)_' for FSDD speakers (for --split group)",
                                parse=str, show_default=False),
    }


def _model_table() -> dict[str, Option]:
    from ..model.configs import ACTIVATIONS, KINDS, POOLINGS

    return {
        "kind": Option("recurrent network, or baseline: a dense network on clip mean/std", flags=("--model",),
                       dest="model", choices=KINDS),
        "rnn_units": Option("units per recurrent layer, 1-3 layers, e.g. 128,64", parse=units),
        "dense_units": Option("units per dense layer, 0-3 layers, 'none' for none", parse=units),
        "activation": Option("dense layer activation", choices=ACTIVATIONS),
        "dropout": Option("dropout rate"),
        "l2": Option("L2 weight penalty"),
        "clip_norm": Option("recurrent models: subtract each clip's mean frame first, which removes "
                            "speaker/microphone colouring"),
        "input_noise": Option("Gaussian noise on the standardised inputs while training, in standard deviations"),
        "clip_scale": Option("with --clip-norm: also divide by each clip's std per feature"),
        "pooling": Option("recurrent models: classify from the last hidden state, or the mean (and max) "
                          "of all outputs over the clip", choices=POOLINGS),
        "time_mask": Option("training only: zero a random run of up to this many frames per clip"),
        "feature_mask": Option("training only: zero a random run of up to this many feature dimensions per clip"),
        "members": Option("ensemble: train this many copies of the network side by side and average their "
                          "probabilities; steadier results, N times the training time"),
    }


def _train_table() -> dict[str, Option]:
    return {
        "learning_rate": Option("Adam learning rate", flags=("--learning-rate", "--lr")),
        "batch_size": Option(""),
        "epochs": Option("at most this many epochs"),
        "patience": Option("stop after this many epochs without a better validation loss and keep the best "
                           "weights; 'none' trains all epochs", parse=epochs_or_none),
        "min_epochs": Option("early stopping neither stops nor picks its best epoch before this one"),
        "class_weights": Option("weight rare classes up"),
        "seed": Option("training seed"),
        "reduce_lr": Option("halve the learning rate after this many epochs without a better validation loss; "
                            "'none' keeps it constant", parse=epochs_or_none),
        "warp_augment": Option("mfcc: extra training copies with the frequency axis scaled by each factor, "
                               "e.g. 0.9,1.1; 'none' for no copies", parse=factors),
        "finetune_blocks": Option("efficientat: also train the network's last N blocks with the model "
                                  "(16 or 'all': all of it; 0 keeps it frozen); slower per epoch, the run's "
                                  "model then holds the fine-tuned network", parse=finetune_blocks),
        "backbone_learning_rate": Option("with --finetune-blocks: Adam learning rate of the network's blocks",
                                         flags=("--backbone-learning-rate", "--backbone-lr")),
        "average_epochs": Option("keep the mean of this many epochs' weights centred on the best epoch, if it "
                                 "scores no worse on the validation clips (needs validation and early "
                                 "stopping; 0: the best epoch's weights)"),
        "mixup": Option("training only: blend each clip (and its label) with another of its batch, the share "
                        "drawn from Beta(alpha, alpha); 0 is off, 0.2-0.4 is usual"),
    }


# ---------------------------------------------------------------- fields -> options

@dataclass(frozen=True)
class _Field:
    name: str
    option: Option
    type: Any

    @property
    def dest(self) -> str:
        return self.option.dest or self.name

    @property
    def flag(self) -> str:
        return (self.option.flags or (f"--{self.name.replace('_', '-')}",))[0]


def _fields(classes: Sequence[type], table: dict[str, Option], part: str) -> list[_Field]:
    """The options of the fields of `classes` (in field order, each name once)."""
    out: dict[str, _Field] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in out or f.name in HIDDEN.get(part, ()):
                continue
            if f.name not in table:
                raise TypeError(f"{cls.__name__}.{f.name} has no command-line option: give it one in "
                                f"cli/options.py or list it in HIDDEN[{part!r}]")
            out[f.name] = _Field(f.name, table[f.name], hints[f.name])
    return list(out.values())


def _shown(value: Any) -> str:
    """A default as a user would type it: 0.15, 1e-04, 0.9,1.1, none."""
    if value is None or value == ():
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return fmt(value)


def _default_text(values: dict[str, Any]) -> str:
    """{"mfcc": 15, "yamnet": 5} -> "mfcc 15, yamnet 5"; one value when they agree."""
    shown = {k: _shown(v) for k, v in values.items()}
    distinct = dict.fromkeys(shown.values())
    return next(iter(distinct)) if len(distinct) == 1 else ", ".join(f"{k} {v}" for k, v in shown.items())


def _add(group, field: _Field, default: Any, default_text: str | None, prefix: str = "") -> None:
    opt = field.option
    text = prefix + opt.help
    if opt.show_default and default_text is not None:
        text = f"{text} (default: {default_text})" if text else f"(default: {default_text})"
    kwargs: dict[str, Any] = dict(dest=field.dest, default=default, help=text.replace("%", "%%"))
    if opt.choices:
        kwargs["choices"] = tuple(opt.choices)
    parse = opt.parse or _parser_of(field.type)
    if parse is None:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = parse
    group.add_argument(*(opt.flags or (field.flag,)), **kwargs)


# ---------------------------------------------------------------- features

def _frame_configs() -> dict[str, type]:
    """The feature types whose front end the options set (YAMNet's is fixed)."""
    from ..features.configs import MFCCConfig, SpectralConfig

    return {"mfcc": MFCCConfig, "spectral": SpectralConfig}


def _feature_fields() -> list[_Field]:
    return _fields(list(_frame_configs().values()), _feature_table(), "features")


def _kinds_of(name: str) -> list[str]:
    return [kind for kind, cls in _frame_configs().items() if name in {f.name for f in dataclasses.fields(cls)}]


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.defaults import AUTO

    configs = _frame_configs()
    g = p.add_argument_group("features (defaults are those of MFCCConfig / SpectralConfig)")
    g.add_argument("--features", choices=(AUTO, *FEATURE_TYPES), default=None,
                   help="auto: try EfficientAT, YAMNet and MFCC (those available) on the training clips and "
                        "keep the best; mfcc: MFCC sequence; spectral: MFCC + centroid, roll-off, ZCR, chroma, "
                        "RMS; yamnet: pretrained YAMNet embeddings; efficientat: pretrained EfficientAT "
                        "(AudioSet) embeddings. Model and training options you do not give take the chosen "
                        "type's defaults (default: auto when YAMNet or EfficientAT is available, else mfcc)")
    for field in _feature_fields():
        kinds = _kinds_of(field.name)
        defaults = {k: getattr(configs[k](), field.name) for k in kinds}
        _add(g, field, UNSET, _default_text(defaults), "" if len(kinds) == len(configs) else f"{'/'.join(kinds)}: ")
    g.add_argument("--yamnet-model", default="",
                   help="yamnet: a .tflite file, SavedModel folder or TF Hub URL "
                        "(default: $AUDIOCLF_YAMNET, then <workspace>/models/yamnet/yamnet.tflite)")
    from ..features.efficientat import CHECKPOINTS

    g.add_argument("--efficientat-model", default="",
                   help=f"efficientat: an official checkpoint ({', '.join(CHECKPOINTS)}) or a .pt file "
                        "(default: mn04_as, or the file $AUDIOCLF_EFFICIENTAT names; an official one missing "
                        "here is downloaded once from the EfficientAT release)")
    g.add_argument("--efficientat-sequence", choices=("frames", "windows"), default=None,
                   help="efficientat: the last feature map every 0.32 s (frames), or a clip embedding of "
                        "each 0.96 s window every 0.32 s (windows) (default: frames)")
    g.add_argument("--with-yamnet", action="store_true",
                   help="efficientat: also hear through YAMNet (its embedding beside each step; the model "
                        "--yamnet-model names, else the default); the model gets a network for each")


def feature_kind(args: argparse.Namespace, auto_ok: bool = True) -> str:
    """--features, or what a new user gets: auto with YAMNet or EfficientAT available, else mfcc.
    Where a command extracts one feature type (`auto_ok=False`), that is EfficientAT when
    available, else YAMNet when available, else MFCC; "auto" itself is refused there."""
    from ..training.defaults import AUTO, AutoFeatures, default_feature_kind
    from ..training.feature_choice import feature_availability, pretrained_available

    if args.features == AUTO and not auto_ok:
        raise CLIError("--features auto chooses a feature type for training; here choose mfcc, spectral, yamnet "
                       "or efficientat.")
    if args.features:
        return args.features
    auto = AutoFeatures(yamnet_model=args.yamnet_model, efficientat_model=args.efficientat_model)
    kind = default_feature_kind(pretrained_available(auto))
    if auto_ok or kind != AUTO:
        return kind
    return "efficientat" if feature_availability("efficientat", auto) is None else "yamnet"


def feature_config(args: argparse.Namespace, auto_ok: bool = True):
    """The FeatureConfig the options describe (only options given override the defaults)."""
    from ..features.configs import EfficientATConfig, YAMNetConfig
    from ..training.defaults import AUTO, AutoFeatures

    kind = feature_kind(args, auto_ok)
    if args.efficientat_sequence is not None and kind != "efficientat":
        raise CLIError(f"--efficientat-sequence applies to efficientat features, not {kind}.")
    if getattr(args, "with_yamnet", False) and kind != "efficientat":
        raise CLIError(f"--with-yamnet adds YAMNet to efficientat features, not to {kind}.")
    fields = {f.name: f for f in _feature_fields()}
    given = {name: getattr(args, f.dest) for name, f in fields.items() if getattr(args, f.dest) is not UNSET}
    first = fields[next(iter(given))].flag if given else ""
    if kind == AUTO:
        if given:
            raise CLIError(f"{first} needs a feature type: with --features auto each candidate uses its own defaults.")
        return AutoFeatures(yamnet_model=args.yamnet_model, efficientat_model=args.efficientat_model)
    if kind == "yamnet":
        if given:
            raise CLIError(f"{first} does not apply to yamnet features (YAMNet has its own fixed front end).")
        return YAMNetConfig(model=args.yamnet_model)
    if kind == "efficientat":
        if given:
            raise CLIError(f"{first} does not apply to efficientat features (EfficientAT has its own fixed "
                           "front end).")
        return EfficientATConfig(model=args.efficientat_model, sequence=args.efficientat_sequence or "frames",
                                 yamnet=args.yamnet_model if getattr(args, "with_yamnet", False) else None)
    foreign = [name for name in given if kind not in _kinds_of(name)]
    if foreign:
        raise CLIError(f"{fields[foreign[0]].flag} applies to {' and '.join(_kinds_of(foreign[0]))} features only.")
    if kind == "spectral" and "sr" in given and given["sr"] is None:
        raise CLIError("spectral features need a fixed --sr (e.g. 22050).")
    return _frame_configs()[kind](**given)


# ---------------------------------------------------------------- split

def add_split_arguments(p: argparse.ArgumentParser, method_flag: str = "--split") -> None:
    from ..datasets import SplitConfig

    g = p.add_argument_group("split (SplitConfig)")
    for field in _split_fields(method_flag):
        default = getattr(SplitConfig(), field.name)
        _add(g, field, default, _shown(default))


def split_config(args: argparse.Namespace):
    from ..datasets import SplitConfig

    values = {f.name: getattr(args, f.dest) for f in _split_fields()}
    return SplitConfig(**{**values, "group_pattern": values["group_pattern"] or None})


# ---------------------------------------------------------------- model and training

def _settings_fields(part: str) -> list[_Field]:
    from ..model.configs import ModelConfig
    from ..training.config import TrainConfig

    cls, table = (ModelConfig, _model_table()) if part == "model" else (TrainConfig, _train_table())
    return _fields([cls], table, part)


def _add_settings(p: argparse.ArgumentParser, part: str, title: str) -> None:
    from ..training.config import resolve_settings
    from ..training.defaults import FEATURE_KINDS

    per_kind = {k: resolve_settings(k)[0 if part == "model" else 1] for k in FEATURE_KINDS}
    g = p.add_argument_group(title)
    for field in _settings_fields(part):
        _add(g, field, UNSET, _default_text({k: getattr(c, field.name) for k, c in per_kind.items()}))


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    _add_settings(p, "model", "model (ModelConfig; defaults depend on the feature type)")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    _add_settings(p, "train", "training (TrainConfig; defaults depend on the feature type)")


def add_run_arguments(p: argparse.ArgumentParser, method_flag: str = "--split") -> None:
    """Everything a RunConfig is made of: split, features, model and training options."""
    add_split_arguments(p, method_flag)
    add_feature_arguments(p)
    add_model_arguments(p)
    add_train_arguments(p)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{"model.dropout": 0.3, ...}: the model and training options given on the command line."""
    return {f"{part}.{f.name}": getattr(args, f.dest) for part in ("model", "train")
            for f in _settings_fields(part) if getattr(args, f.dest, UNSET) is not UNSET}


def _settings(args: argparse.Namespace):
    """(ModelConfig, TrainConfig) of the options: the feature type's defaults, given options on top."""
    from ..training.config import resolve_settings

    kind = feature_kind(args)
    return resolve_settings("mfcc" if kind == "auto" else kind, overrides(args))


def model_config(args: argparse.Namespace):
    return _settings(args)[0]


def train_config(args: argparse.Namespace):
    return _settings(args)[1]


def option_flags(part: str) -> dict[str, str]:
    """{field: flag} of the options of one config: "features" (MFCCConfig / SpectralConfig),
    "split", "model" or "train" (as `train` spells them)."""
    if part == "features":
        found = _feature_fields()
    elif part == "split":
        found = _split_fields()
    else:
        found = _settings_fields(part)
    return {f.name: f.flag for f in found}


# ---------------------------------------------------------------- run configs

def run_config(args: argparse.Namespace):
    from ..training.config import RunConfig

    return RunConfig(dataset=args.data, split=split_config(args), features=feature_config(args),
                     name=args.name or "", overrides=overrides(args))


def stored_run_config(run_id: str):
    """The RunConfig a saved run was trained with."""
    from ..training import runs
    from ..training.config import RunConfig

    return RunConfig.from_dict(runs.load_run(run_id).config)


def chosen(cfg):
    """A run config whose feature type is chosen: Auto decides now, on the training and
    validation clips of the split (never the test clips), as a training run would."""
    if not cfg.is_auto:
        return cfg
    from ..training.feature_choice import choose_features, config_for_kind
    from ..training.prepare import prepare_run

    prepared = prepare_run(cfg)
    choice = choose_features([*prepared.split.train, *prepared.split.val], prepared.labels, cfg.features,
                             progress=ProgressBar("choosing the feature type", False), seed=int(cfg.split.seed))
    err(f"auto: {choice.reason}")
    return cfg.resolved(config_for_kind(choice.winner, cfg.features))
