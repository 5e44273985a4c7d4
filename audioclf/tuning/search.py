"""Hyperparameter search with Optuna: which settings vary, a budget, a study kept in the workspace.

    from audioclf.tuning import TuneConfig, default_space, run_study
    cfg = TuneConfig(base=RunConfig(...), space=default_space("mfcc"), trials=30)
    result = run_study(cfg)            # in this process; start_tuning(cfg) runs it in the background
    print(result.best_params, result.run_id)

A study lives in ``<workspace>/tuning/<study>/``: ``tune.json`` (the TuneConfig),
``status.json`` (state and progress, like a run's), ``optuna.sqlite`` (Optuna's
RDB storage: every trial, its parameters, per-epoch scores and state),
``log.txt`` and, while it is asked to stop, ``cancel``.

The search splits the data set once with the base run's SplitConfig and never
reads the test split: a trial trains on the training split and is scored on
the validation split (objective "val"), or on k folds of training plus
validation clips (objective "cv"). Features are extracted once per feature
config through the feature cache. Hopeless trials are pruned from their
per-epoch validation macro F1. When the search ends, the best trial's config is
trained once more as an ordinary run (training split, early stopping on
validation) and scored once on the test split.

Trials run in worker processes that only share the study's database: each is
``python -m audioclf.tuning --worker <study folder>``, i.e. ``optuna.load_study``
plus ``study.optimize``, so more workers (on other machines too, given a
shared database URL in ``TuneConfig.storage``) can join a study.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import runs, workspace
from .errors import AudioclfError
from .models import RECURRENT_KINDS, ModelConfig
from .prepare import SplitData
from .runconfig import RunConfig, TrainConfig

TUNING = "tuning"  # workspace sub-folder of studies
TUNE_CONFIG = "tune.json"
DB_NAME = "optuna.sqlite"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
OBJECTIVES = ("val", "cv")
STATES = ("queued", "extracting", "searching", "training", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
CANCEL_WAIT = 5.0  # seconds cancel_tuning waits for a graceful stop before killing
WORKER_STOP_WAIT = 2.0  # ... and the search waits for its workers, so it ends well within that
POLL = 0.2  # seconds between the coordinator's looks at its workers
SMALL_TRIAL_CLIPS = 3000  # up to this many training clips a trial is small: one core per trial
MIN_TRIALS_FOR_WORKERS = 4  # fewer trials run in the calling process
MIN_CV_PER_CLASS = 2  # clips per class in each fold's held-out part, at least
HEARTBEAT = 10  # seconds; a trial silent for GRACE is failed (its worker was killed)
GRACE = 30
VAL_BATCH = 64
MAX_GRID = 100000  # grid points a grid search may have
PRUNE_WARMUP_SHARE = 0.2  # the median pruner leaves the first fifth of the epochs alone
SEARCH_SECONDS_PER_TRIAL_MIN = 5.0  # a timeout below this per worker cannot finish a trial
# Synthetic settings: the form and the CLI speak of layers and units, ModelConfig of tuples.
LAYER_PARAMS = {"model.rnn_layers": "rnn_units", "model.rnn_units": "rnn_units",
                "model.dense_layers": "dense_units", "model.dense_units": "dense_units"}

Progress = Callable[[dict], None]


class TuningError(AudioclfError):
    """A search that cannot start or go on; message is for people."""


class _Cancelled(Exception):
    pass


class _OutOfTime(Exception):
    pass


# ---------------------------------------------------------------- search space

@dataclass(frozen=True)
class Param:
    """One setting that varies: a list of `choices`, or a range [`low`, `high`].

    `name` is dotted: ``model.kind``, ``train.learning_rate``, ``features.n_mfcc``,
    ``features.kind``; ``model.rnn_layers``/``model.rnn_units`` (and the dense
    pair) set ModelConfig's unit tuples. A range of two ints is searched over
    ints; `log` searches a log scale; `step` a grid of that spacing.
    """

    name: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_range(self) -> bool:
        return not self.choices

    @property
    def is_int(self) -> bool:
        """A range written with whole numbers (``1:3``, not ``1.0:3``) is searched over ints."""
        return self.is_range and all(isinstance(v, int) and not isinstance(v, bool)
                                     for v in (self.low, self.high, self.step or 1))

    @property
    def fixed(self) -> bool:
        """One value only: the setting is set, not searched."""
        return len(self.choices) == 1 or (self.is_range and self.low == self.high)

    def grid(self, points: int = 3) -> list:
        """Values a grid search tries: the choices, the steps of a range, else `points` spread values."""
        if self.choices:
            return list(self.choices)
        if self.step:
            n = int(round((self.high - self.low) / self.step))
            vals = [self.low + i * self.step for i in range(n + 1)]
            return [int(v) for v in vals] if self.is_int else [round(v, 10) for v in vals]
        if self.log:
            vals = np.geomspace(self.low, self.high, points)
        else:
            vals = np.linspace(self.low, self.high, points)
        return sorted({int(round(v)) for v in vals}) if self.is_int else [float(f"{v:.4g}") for v in vals]

    def describe(self) -> str:
        """The spec as the CLI and the page write it: ``gru,lstm`` or ``1e-4:1e-2:log``."""
        if self.choices:
            return ",".join(_show(c) for c in self.choices)
        tail = ":log" if self.log else (f":{_show(self.step)}" if self.step else "")
        return f"{_show(self.low)}:{_show(self.high)}{tail}"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _show(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass(frozen=True)
class SearchSpace:
    """The settings that vary (and those fixed to one value) on top of a base RunConfig."""

    params: tuple[Param, ...] = ()

    def varying(self) -> list[Param]:
        return [p for p in self.params if not p.fixed]

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def with_param(self, param: Param) -> "SearchSpace":
        """This space with `param` added, or replacing the one of the same name."""
        rest = tuple(p for p in self.params if p.name != param.name)
        return SearchSpace(rest + (param,))

    def without(self, name: str) -> "SearchSpace":
        return SearchSpace(tuple(p for p in self.params if p.name != name))

    def to_dict(self) -> list[dict]:
        return [p.to_dict() for p in self.params]

    @classmethod
    def from_dict(cls, d: list[dict]) -> "SearchSpace":
        return cls(tuple(Param(**{**p, "choices": tuple(p.get("choices") or ())}) for p in d))


def default_space(feature_kind: str = "mfcc") -> SearchSpace:
    """The space searched when the user does not say: per feature type.

    Model kind, recurrent layers and units, dense units, activation, dropout,
    L2, learning rate, batch size and early-stopping patience (what the study
    behind audioclf tuned by hand). YAMNet's clip-level embeddings also try the
    dense baseline; MFCC also tries appended deltas (one more feature config).
    """
    kinds = RECURRENT_KINDS + (("baseline",) if feature_kind in ("yamnet", "spectral") else ())
    params = [
        Param("model.kind", tuple(kinds)),
        Param("model.rnn_layers", (1, 2)),
        Param("model.rnn_units", (32, 64, 128)),
        Param("model.dense_units", (32, 64, 128)),
        Param("model.activation", ("relu", "tanh")),
        Param("model.dropout", low=0.0, high=0.5, step=0.05),
        Param("model.l2", low=1e-6, high=1e-2, log=True),
        Param("train.learning_rate", low=3e-4, high=1e-2, log=True),
        Param("train.batch_size", (16, 32, 64)),
        Param("train.patience", (5, 10, 20, None)),
    ]
    if feature_kind == "mfcc":
        params.append(Param("features.deltas", (False, True)))
    return SearchSpace(tuple(params))


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("none", "null", "off"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def parse_param(name: str, spec: str) -> Param:
    """A Param from text: ``a,b,c`` (choices), ``low:high``, ``low:high:log`` or ``low:high:step``.

    Examples: ``model.kind=gru,bilstm``, ``train.learning_rate=1e-4:1e-2:log``,
    ``model.dropout=0:0.5:0.1``, ``train.patience=5,10,none``.
    """
    name, spec = name.strip(), spec.strip()
    if not name:
        raise TuningError(f"A search setting needs a name, e.g. model.kind=gru,lstm; got {name}={spec}.")
    if not spec:
        raise TuningError(f"{name}: no values given; write e.g. {name}=a,b or {name}=low:high.")
    if ":" in spec:
        parts = [s.strip() for s in spec.split(":")]
        if len(parts) not in (2, 3):
            raise TuningError(f"{name}={spec}: a range is low:high, low:high:log or low:high:step.")
        low, high = _parse_value(parts[0]), _parse_value(parts[1])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise TuningError(f"{name}={spec}: a range needs two numbers.")
        log, step = False, None
        if len(parts) == 3:
            if parts[2].lower() == "log":
                log = True
            else:
                step = _parse_value(parts[2])
                if not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0:
                    raise TuningError(f"{name}={spec}: the third part is 'log' or a positive step.")
        return Param(name, low=low, high=high, log=log, step=step)
    values = tuple(_parse_value(v) for v in spec.split(",") if v.strip())
    if not values:
        raise TuningError(f"{name}={spec}: no values given.")
    return Param(name, tuple(dict.fromkeys(values)))


def parse_vary(text: str) -> Param:
    """``name=spec`` (the CLI's --vary) -> Param."""
    if "=" not in text:
        raise TuningError(f"--vary takes NAME=VALUES, e.g. model.kind=gru,lstm or "
                          f"train.learning_rate=1e-4:1e-2:log; got {text!r}.")
    name, spec = text.split("=", 1)
    return parse_param(name, spec)


def searchable() -> dict[str, str]:
    """Every setting a search can vary, with what it is."""
    from .features import CONFIG_TYPES

    out = {"features.kind": f"feature type ({', '.join(CONFIG_TYPES)})"}
    for kind, cls in CONFIG_TYPES.items():
        for f in fields(cls):
            if f.name not in ("model",):
                out.setdefault(f"features.{f.name}", f"feature setting ({kind})")
    for f in fields(ModelConfig):
        if f.name not in ("rnn_units", "dense_units"):
            out[f"model.{f.name}"] = "model setting"
    out.update({"model.rnn_layers": "recurrent layers", "model.rnn_units": "units per recurrent layer",
                "model.dense_layers": "dense layers", "model.dense_units": "units per dense layer"})
    for f in fields(TrainConfig):
        if f.name not in ("warp_augment",):
            out[f"train.{f.name}"] = "training setting"
    return out


# ---------------------------------------------------------------- applying parameters

def _feature_fields(kind: str) -> set[str]:
    from .features import CONFIG_TYPES

    return {f.name for f in fields(CONFIG_TYPES[kind])}


def _applies(name: str, values: dict, base: RunConfig) -> bool:
    """Whether setting `name` means anything given the values chosen so far (conditional spaces)."""
    section, key = name.split(".", 1)
    if section == "features" and key != "kind":
        kind = values.get("features.kind", base.features.kind)
        return key in _feature_fields(kind)
    if name in ("model.rnn_layers", "model.rnn_units", "model.pooling", "model.clip_norm",
                "model.clip_scale", "model.time_mask", "model.feature_mask", "model.input_noise"):
        return values.get("model.kind", base.model.kind) != "baseline"
    return True


def apply_params(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`base` with the dotted settings in `values` changed (settings that do not apply are ignored)."""
    from .features import CONFIG_TYPES

    feats = base.features
    kind = values.get("features.kind", feats.kind)
    if kind not in CONFIG_TYPES:
        raise TuningError(f"Unknown feature type {kind!r}; choose one of {', '.join(CONFIG_TYPES)}.")
    if kind != feats.kind:
        feats = CONFIG_TYPES[kind]()
    fchanges = {k.split(".", 1)[1]: v for k, v in values.items()
                if k.startswith("features.") and k != "features.kind" and k.split(".", 1)[1] in _feature_fields(kind)}
    feats = replace(feats, **fchanges) if fchanges else feats
    m = base.model.to_dict()
    mkind = values.get("model.kind", m["kind"])
    for key, v in values.items():
        if key.startswith("model.") and key not in LAYER_PARAMS:
            m[key.split(".", 1)[1]] = v
    for prefix in ("rnn", "dense"):
        cur = list(m[f"{prefix}_units"])
        layers = values.get(f"model.{prefix}_layers", len(cur))
        units = values.get(f"model.{prefix}_units", cur[0] if cur else 64)
        if f"model.{prefix}_layers" in values or f"model.{prefix}_units" in values:
            m[f"{prefix}_units"] = [int(units)] * int(layers)
    if mkind in RECURRENT_KINDS and not m["rnn_units"]:
        m["rnn_units"] = [int(values.get("model.rnn_units", 64))]
    if mkind == "baseline" and not m["dense_units"]:
        m["dense_units"] = [int(values.get("model.dense_units", 64))]
    t = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("train.")}
    train = replace(base.train, **t) if t else base.train
    return replace(base, features=feats, model=ModelConfig.from_dict(m), train=train)


def check_space(space: SearchSpace, base: RunConfig, sampler: str = "tpe") -> None:
    """Raise TuningError, saying what to fix, for an empty or contradictory space."""
    _check_names(space)
    for p in space.params:
        if p.is_range:
            _check_range(p)
    if not space.varying():
        raise TuningError("The search space is empty: nothing varies. Choose at least one setting "
                          "with two or more values, e.g. model.kind=gru,lstm.")
    _check_conditions(space, base)
    if sampler == "grid":
        total = math.prod(len(p.grid()) for p in space.params)
        if total > MAX_GRID:
            raise TuningError(f"The grid has {total} points; give fewer values, or use the tpe or random sampler.")
    for p in space.params:  # every value must make a valid config on its own
        for v in (p.grid() if p.choices else [p.low, p.high]):
            try:
                apply_params(base, {**_context(p.name, space, base), p.name: v})
            except (ValueError, TypeError) as e:
                raise TuningError(f"{p.name}={_show(v)} cannot be used: {e}") from None


def _check_names(space: SearchSpace) -> None:
    known = searchable()
    names = [p.name for p in space.params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TuningError(f"{dupes[0]} is given twice in the search space.")
    for name in names:
        if name not in known:
            close = [k for k in known if k.split(".")[-1] == name.split(".")[-1]]
            hint = f" Did you mean {close[0]}?" if close else ""
            raise TuningError(f"Unknown search setting {name!r}.{hint} Settings that can vary: "
                              f"{', '.join(sorted(known))}.")


def _check_range(p: Param) -> None:
    if p.low is None or p.high is None:
        raise TuningError(f"{p.name}: a range needs a low and a high value.")
    if p.low > p.high:
        raise TuningError(f"{p.name}: the range {p.describe()} is empty (low above high).")
    if p.log and p.low <= 0:
        raise TuningError(f"{p.name}: a log range must be above 0, got {p.describe()}.")
    if p.step and p.step > (p.high - p.low) and p.low != p.high:
        raise TuningError(f"{p.name}: the step {p.step:g} is larger than the range {p.describe()}.")


def _check_conditions(space: SearchSpace, base: RunConfig) -> None:
    """Settings that no searched feature type or model kind has."""
    kinds = _values_of(space, "features.kind", base.features.kind)
    mkinds = _values_of(space, "model.kind", base.model.kind)
    for p in space.params:
        section, key = p.name.split(".", 1)
        if section == "features" and key != "kind" and not any(key in _feature_fields(k) for k in kinds):
            raise TuningError(f"{p.name} does not apply to {' or '.join(kinds)} features, the only ones "
                              "this search uses: vary features.kind too, or drop it.")
        if p.name in ("model.rnn_layers", "model.rnn_units") and mkinds == ["baseline"]:
            raise TuningError(f"{p.name} varies, but the only model kind searched is the dense baseline, "
                              "which has no recurrent layers.")


def _context(name: str, space: SearchSpace, base: RunConfig) -> dict:
    """Kinds under which setting `name` applies (a feature type that has it, a recurrent model)."""
    section, key = name.split(".", 1)
    if section == "features" and key != "kind" and key not in _feature_fields(base.features.kind):
        kinds = _values_of(space, "features.kind", base.features.kind)
        return {"features.kind": next(k for k in kinds if key in _feature_fields(k))}
    if name in ("model.rnn_layers", "model.rnn_units") and base.model.kind == "baseline":
        mkinds = _values_of(space, "model.kind", base.model.kind)
        return {"model.kind": next(k for k in mkinds if k != "baseline")}
    return {}


def _values_of(space: SearchSpace, name: str, default: Any) -> list:
    p = space.get(name)
    if p is None:
        return [default]
    if p.is_range:
        raise TuningError(f"{name} takes a list of values, not a range.")
    return list(p.choices)


def suggest(trial, space: SearchSpace, base: RunConfig) -> dict[str, Any]:
    """Ask `trial` for a value of each setting that applies (define-by-run: conditional settings)."""
    values: dict[str, Any] = {}
    # Kinds first: which other settings apply depends on them.
    order = sorted(space.params, key=lambda p: (p.name not in ("features.kind", "model.kind"), p.name))
    for p in order:
        if not _applies(p.name, values, base):
            continue
        if p.fixed:
            values[p.name] = p.choices[0] if p.choices else p.low
        elif p.choices:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.is_int:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


# ---------------------------------------------------------------- configs

@dataclass(frozen=True)
class TuneConfig:
    """A search: the base run (data set, split, defaults), what varies, objective, budget, method.

    `trials` and/or `timeout` (seconds) bound the search; `folds` is k for the "cv"
    objective; `workers` is how many trials run at once (None: 2 on a multi-core
    machine when trials are small, else 1); `storage` an Optuna database URL
    (default: SQLite in the study folder).
    """

    base: RunConfig
    space: SearchSpace = field(default_factory=default_space)
    objective: str = "val"
    folds: int = 3
    trials: int | None = 30
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int | None = None
    seed: int = 0
    storage: str = ""
    final_run: bool = True

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TuningError(f"Unknown objective {self.objective!r}; use 'val' (validation macro F1) "
                              "or 'cv' (mean macro F1 of a k-fold cross-validation).")
        if self.sampler not in SAMPLERS:
            raise TuningError(f"Unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}.")
        if self.pruner not in PRUNERS:
            raise TuningError(f"Unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}.")
        if self.trials is None and self.timeout is None:
            raise TuningError("Give a budget: a number of trials, a timeout in seconds, or both.")
        if self.trials is not None and int(self.trials) < 1:
            raise TuningError(f"The number of trials must be at least 1, got {self.trials}.")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise TuningError(f"The timeout must be a positive number of seconds, got {self.timeout}.")
        if self.objective == "cv" and not 2 <= int(self.folds) <= 10:
            raise TuningError(f"Cross-validation takes 2 to 10 folds, got {self.folds}.")
        if self.workers is not None and not 1 <= int(self.workers) <= 64:
            raise TuningError(f"Workers must be between 1 and 64, got {self.workers}.")

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "space": self.space.to_dict(), "objective": self.objective,
                "folds": self.folds, "trials": self.trials, "timeout": self.timeout, "sampler": self.sampler,
                "pruner": self.pruner, "workers": self.workers, "seed": self.seed, "storage": self.storage,
                "final_run": self.final_run}

    @classmethod
    def from_dict(cls, d: dict) -> "TuneConfig":
        try:
            return cls(base=RunConfig.from_dict(d["base"]), space=SearchSpace.from_dict(d.get("space", [])),
                       **{k: d[k] for k in ("objective", "folds", "trials", "timeout", "sampler", "pruner",
                                            "workers", "seed", "storage", "final_run") if k in d})
        except KeyError as e:
            raise TuningError(f"Study config is missing {e.args[0]!r}.") from None


@dataclass
class TuneResult:
    """What a finished (or stopped) search found."""

    study: str
    state: str
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    best_params: dict
    best_trial: int | None
    best_config: dict | None
    run_id: str | None
    seconds: float
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- study folders

def tuning_dir() -> Path:
    path = workspace.home() / TUNING
    path.mkdir(parents=True, exist_ok=True)
    return path


def study_dir(study: str) -> Path:
    """The folder of an existing study; TuningError if there is none."""
    if not study or "/" in study or "\\" in study or study.startswith("."):
        raise TuningError(f"{study!r} is not a study name.")
    path = tuning_dir() / study
    if not (path / TUNE_CONFIG).is_file():
        raise TuningError(f"No study {study!r} in {tuning_dir()}.")
    return path


def list_studies() -> list[dict]:
    """Every study in the workspace, newest first: name, state, trials, best value, data set."""
    out = []
    for path in tuning_dir().iterdir():
        if (path / TUNE_CONFIG).is_file():
            st = read_status(path.name)
            cfg = runs.read_json(path / TUNE_CONFIG, {}) or {}
            out.append({"study": path.name, "state": st.get("state", "failed"),
                        "created": st.get("created", path.stat().st_mtime),
                        "dataset": (cfg.get("base") or {}).get("dataset", ""),
                        "trials": st.get("n_trials", 0), "best_value": st.get("best_value"),
                        "run_id": st.get("run_id")})
    return sorted(out, key=lambda s: (s["created"], s["study"]), reverse=True)


def create_study(cfg: TuneConfig, name: str = "") -> str:
    """A new study folder holding `cfg`; returns its name (state "queued")."""
    from .datasets import safe_name

    workspace.require_writable("start a hyperparameter search")
    base = safe_name(name) if name else "study-" + runs.new_run_id()
    if not base:
        raise TuningError(f"{name!r} is not usable as a study name.")
    path = tuning_dir() / base
    try:
        path.mkdir()
    except FileExistsError:
        raise TuningError(f"A study named {base!r} exists already; resume it or choose another name.") from None
    runs.write_json(path / TUNE_CONFIG, cfg.to_dict())
    runs.write_json(path / runs.STATUS, {"state": "queued", "created": time.time(), "updated": time.time()})
    return base


def load_config(study: str) -> TuneConfig:
    return TuneConfig.from_dict(runs.read_json(study_dir(study) / TUNE_CONFIG, {}) or {})


def update_status(study: str, **values: Any) -> dict:
    path = study_dir(study) / runs.STATUS
    status = runs.read_json(path, {}) or {}
    status.update(values, updated=time.time())
    runs.write_json(path, status)
    return status


def read_status(study: str) -> dict:
    """status.json; a not-final study whose process is gone reads as failed (interrupted)."""
    path = study_dir(study) / runs.STATUS
    status = runs.read_json(path, {}) or {}
    if status.get("state") not in FINAL_STATES and status.get("pid") \
            and not runs.pid_alive(status["pid"], status.get("pid_started")):
        status = runs.read_json(path, {}) or status
        if status.get("state") not in FINAL_STATES:
            status = {**status, "state": "failed", "interrupted": True,
                      "message": "Interrupted: the search process ended without finishing (killed or crashed)."}
    return status


def _check_idle(study: str) -> None:
    """Refuse to run a study that another process is running (a queued one is ours to start)."""
    st = read_status(study)
    if st.get("state") not in (*FINAL_STATES, "queued", None) and st.get("pid") != os.getpid():
        raise TuningError(f"Study {study} is still {st.get('state')} in another process; wait for it, or "
                          f"cancel it (`audioclf studies cancel {study}`) first.")


def storage_url(study: str, cfg: TuneConfig | None = None) -> str:
    cfg = cfg or load_config(study)
    return cfg.storage or f"sqlite:///{study_dir(study) / DB_NAME}"


def _storage(url: str):
    import optuna

    import warnings

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT,
                                          grace_period=GRACE)


def _sampler(cfg: TuneConfig, worker: int = 0):
    import optuna

    seed = cfg.seed * 1000 + worker  # workers must not draw the same random points
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in cfg.space.params if not p.fixed},
                                           seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, (cfg.trials or 30) // 3)))


def _pruner(cfg: TuneConfig):
    import optuna

    steps = _max_steps(cfg)
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, int(steps * PRUNE_WARMUP_SHARE)))


def _max_steps(cfg: TuneConfig) -> int:
    if cfg.objective == "cv":
        return int(cfg.folds)
    epochs = [int(cfg.base.train.epochs)]
    p = cfg.space.get("train.epochs")
    if p is not None:
        epochs += [int(v) for v in (p.choices or [p.high])]
    return max(epochs)


def open_study(study: str, cfg: TuneConfig | None = None, worker: int = 0):
    """The Optuna study (created on first use), for optimising or reading."""
    import optuna

    cfg = cfg or load_config(study)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed and pruned trials are in the leaderboard
    return optuna.create_study(study_name=study, storage=_storage(storage_url(study, cfg)),
                               sampler=_sampler(cfg, worker), pruner=_pruner(cfg),
                               direction="maximize", load_if_exists=True)


# ---------------------------------------------------------------- data for trials

def search_items(cfg: TuneConfig):
    """(labels, train items, val items) of the base split; the test split is dropped here."""
    from .prepare import check_features, prepare_run

    for kind in _values_of(cfg.space, "features.kind", cfg.base.features.kind):
        check_features(cfg.base.features if kind == cfg.base.features.kind else apply_params(
            cfg.base, {"features.kind": kind}).features)  # YAMNet without a model: say so now
    prepared = prepare_run(cfg.base)
    labels, train, val = prepared.labels, list(prepared.split.train), list(prepared.split.val)
    del prepared  # nothing below may see the test clips
    _check_objective(cfg, labels, train, val)
    return labels, train, val


def _check_objective(cfg: TuneConfig, labels, train, val) -> None:
    from collections import Counter

    if cfg.objective == "val":
        if not val:
            raise TuningError("The validation objective needs validation clips, but the split has none: "
                              "set a validation share above 0, or use the cv objective.")
        missing = sorted(set(labels) - {it.label for it in val})
        if missing:
            raise TuningError(f"The validation split has no clip of class {missing[0]!r}, so its macro F1 "
                              "cannot judge a trial; raise the validation share or use the cv objective.")
        return
    counts = Counter(it.label for it in train + val)
    need = int(cfg.folds) * MIN_CV_PER_CLASS
    few = [f"{lab} ({counts.get(lab, 0)})" for lab in labels if counts.get(lab, 0) < need]
    if few:
        raise TuningError(f"The data set is too small for {cfg.folds}-fold cross-validation: each class needs "
                          f"at least {need} clips outside the test split ({MIN_CV_PER_CLASS} per fold); "
                          f"{', '.join(few[:5])} have fewer. Use fewer folds or the val objective.")


def feature_configs(cfg: TuneConfig) -> list:
    """Every feature config the search can ask for (None if a feature setting is a continuous range)."""
    import itertools

    kinds = _values_of(cfg.space, "features.kind", cfg.base.features.kind)
    fparams = [p for p in cfg.space.params if p.name.startswith("features.") and p.name != "features.kind"]
    if any(p.is_range and not p.step and not p.fixed for p in fparams):
        return None
    out = []
    for kind in kinds:
        own = [p for p in fparams if p.name.split(".", 1)[1] in _feature_fields(kind)]
        for combo in itertools.product(*[p.grid() for p in own]):
            values = {"features.kind": kind, **{p.name: v for p, v in zip(own, combo)}}
            try:
                out.append(apply_params(cfg.base, values).features)
            except ValueError:
                continue
    return list(dict.fromkeys(out))


def _warped(features, train_cfg: TrainConfig) -> list:
    """Feature configs of the extra warped training copies (MFCC vocal tract warping), as training makes."""
    from .prepare import warp_factors

    factors = warp_factors(RunConfig(dataset="", split=None, features=features, train=train_cfg))
    return [replace(features, warp=w) for w in factors]


def extract_sequences(items, features, labels, progress: Callable[[int, int], None] | None = None) -> SplitData:
    """Features of `items` from the cache (computed once on a miss); unreadable clips are skipped."""
    from .prepare import extract_parts

    return extract_parts(list(items), features, labels, progress)[0]


class _DataCache:
    """Per worker process: sequences of the search's clips for each feature config, built once."""

    def __init__(self, labels, train, val):
        self.labels, self.train, self.val = labels, train, val
        self._memo: dict = {}

    def get(self, items_key: str, items, features) -> SplitData:
        key = (items_key, features)
        if key not in self._memo:
            self._memo[key] = extract_sequences(items, features, self.labels)
        return self._memo[key]

    def train_val(self, run_cfg: RunConfig) -> tuple[SplitData, SplitData]:
        tr = self.get("train", self.train, run_cfg.features)
        extra = [self.get("train", self.train, w) for w in _warped(run_cfg.features, run_cfg.train)]
        return SplitData.concat([tr, *extra]), self.get("val", self.val, run_cfg.features)


def prepare(cfg: TuneConfig, progress: Callable[[int, int], None] | None = None):
    """Split once, check the objective and extract every feature config's features (cached).

    Returns (labels, train items, val items). Only training and validation clips are read.
    """
    labels, train, val = search_items(cfg)
    configs = feature_configs(cfg)
    if configs:
        jobs = []
        for fc in configs:
            jobs.append((train + val, fc))
            for w in _warped(fc, cfg.base.train):  # cv folds train on validation clips too
                jobs.append((train if cfg.objective == "val" else train + val, w))
        total = sum(len(items) for items, _ in jobs)
        done = 0
        for items, fc in jobs:
            base_done = done
            extract_sequences(items, fc, labels,
                              progress=(lambda d, t, b=base_done: progress(b + d, total)) if progress else None)
            done += len(items)
    return labels, train, val


# ---------------------------------------------------------------- objective

def _f1_callback(trial, val: SplitData, n_classes: int, stop: Callable[[], bool], deadline: float | None,
                 step_offset: int = 0, report: bool = True):
    """Keras callback: validation macro F1 after each epoch, reported to Optuna; stops pruned trials."""
    import keras
    from sklearn.metrics import f1_score

    from .models import pad_sequences
    from .sequences import padded_length

    order = np.argsort([len(s) for s in val.x], kind="stable")
    batches = []
    for i in range(0, len(order), VAL_BATCH):
        idx = order[i:i + VAL_BATCH]
        batches.append((idx, pad_sequences([val.x[j] for j in idx], padded_length([len(val.x[j]) for j in idx]))))

    class F1Callback(keras.callbacks.Callback):
        pruned = False
        out_of_time = False
        cancelled = False
        scores: list = []

        def on_train_batch_end(self, batch, logs=None):
            if stop():
                self.cancelled = True
                self.model.stop_training = True
            elif deadline is not None and time.time() > deadline:
                self.out_of_time = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            probs = np.zeros((len(val.x), n_classes), np.float32)
            for idx, xb in batches:
                out = np.asarray(self.model.predict_on_batch(xb))
                probs[idx] = out.mean(axis=1) if out.ndim == 3 else out  # ensemble: members' mean
            f1 = float(f1_score(val.y, probs.argmax(1), labels=list(range(n_classes)),
                                average="macro", zero_division=0))
            self.scores = [*self.scores, f1]
            if report:
                trial.report(f1, step_offset + epoch + 1)
                if trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True

    return F1Callback()


def _score(model, data: SplitData, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    from .models import predict_proba

    probs = predict_proba(model, data.x)
    return float(f1_score(data.y, probs.argmax(1), labels=list(range(n_classes)), average="macro",
                          zero_division=0))


def make_objective(cfg: TuneConfig, data: _DataCache, stop: Callable[[], bool],
                   deadline: float | None = None) -> Callable:
    """The function Optuna maximises: validation macro F1 (or the k-fold mean) of one config."""
    import optuna

    def objective(trial) -> float:
        values = suggest(trial, cfg.space, cfg.base)
        try:
            run_cfg = apply_params(cfg.base, values)
        except ValueError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("config", run_cfg.to_dict())
        t0 = time.time()
        try:
            if cfg.objective == "cv":
                value, epochs, status = _cv_value(cfg, run_cfg, data, trial, stop, deadline)
            else:
                value, epochs, status = _val_value(run_cfg, data, trial, stop, deadline)
        finally:
            trial.set_user_attr("seconds", round(time.time() - t0, 2))
        trial.set_user_attr("epochs", epochs)
        if status == "cancelled":
            raise _Cancelled()
        if status == "out_of_time":
            trial.set_user_attr("error", "stopped: the time budget ran out")
            raise _OutOfTime("the time budget ran out during this trial")
        if status == "pruned":
            raise optuna.TrialPruned()
        return value

    return objective


def _val_value(run_cfg, data: _DataCache, trial, stop, deadline):
    from .fitting import fit

    tr, va = data.train_val(run_cfg)
    if not tr.x or not va.x:
        raise TuningError("No training or validation clip could be read.")
    n = len(data.labels)
    cb = _f1_callback(trial, va, n, stop, deadline)
    model, info = fit(run_cfg.model, run_cfg.train, tr, va, n, callbacks=[cb])
    status = "cancelled" if cb.cancelled else "out_of_time" if cb.out_of_time else "pruned" if cb.pruned else ""
    if status:
        return 0.0, info["epochs_trained"], status
    return _score(model, va, n), info["epochs_trained"], ""


def _cv_value(cfg: TuneConfig, run_cfg, data: _DataCache, trial, stop, deadline):
    """Mean macro F1 over k folds of training + validation clips; reported after each fold."""
    from .datasets import Dataset
    from .fitting import fit
    from .prepare import cv_folds

    items = data.train + data.val
    # Items carry their groups already (the split applied the pattern): no pattern needed again.
    folds = cv_folds(Dataset("search", Path("."), items), replace(cfg.base.split, group_pattern=None),
                     int(cfg.folds))
    allseq = data.get("all", items, run_cfg.features)
    warps = [data.get("all", items, w) for w in _warped(run_cfg.features, run_cfg.train)]
    n = len(data.labels)
    scores, epochs = [], 0
    for k, fold in enumerate(folds):
        tr_paths = [str(it.path) for it in fold.train]
        tr = SplitData.concat([allseq.select(tr_paths), *(w.select(tr_paths) for w in warps)])
        te = allseq.select([str(it.path) for it in fold.test])
        cb = _f1_callback(trial, te, n, stop, deadline, report=False)
        model, info = fit(run_cfg.model, run_cfg.train, tr, te, n, callbacks=[cb])
        epochs += info["epochs_trained"]
        if cb.cancelled:
            return 0.0, epochs, "cancelled"
        if cb.out_of_time:
            return 0.0, epochs, "out_of_time"
        scores.append(_score(model, te, n))
        trial.report(float(np.mean(scores)), k + 1)
        if k + 1 < len(folds) and trial.should_prune():
            return 0.0, epochs, "pruned"
    trial.set_user_attr("fold_scores", scores)
    return float(np.mean(scores)), epochs, ""


# ---------------------------------------------------------------- running a search

def auto_workers(n_train: int, n_trials: int | None) -> int:
    """Trials at once: two single-threaded trials use two cores better than one two-threaded
    trial while models are small; big data sets get one trial with every core, and a search
    of a few trials runs in this process (a worker process costs a TensorFlow start)."""
    from .features.cache import default_jobs

    cores = default_jobs()
    few = n_trials is not None and n_trials < MIN_TRIALS_FOR_WORKERS
    return 2 if cores >= 2 and n_train <= SMALL_TRIAL_CLIPS and not few else 1


def optimize(study: str, *, worker: int = 0, stop: Callable[[], bool] | None = None,
             target: int | None = None, deadline: float | None = None) -> None:
    """One worker: load the study from its database and run trials until the budget is used.

    `target` is the total number of trials the study should reach (all workers together);
    `deadline` a time.time() after which no trial starts and a running one stops.
    """
    import optuna

    cfg = load_config(study)
    stop = stop or (lambda: False)
    study_obj = open_study(study, cfg, worker)
    labels, train, val = search_items(cfg)
    data = _DataCache(labels, train, val)
    callbacks = []
    if target is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(target, states=None))

    def halt(study_, trial_) -> None:
        if stop() or (deadline is not None and time.time() >= deadline):
            study_.stop()
    callbacks.append(halt)
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    remaining = None if target is None else max(0, target - len(study_obj.trials))
    if remaining == 0 or stop() or (timeout is not None and timeout <= 0):
        return
    study_obj.optimize(make_objective(cfg, data, stop, deadline), n_trials=remaining, timeout=timeout,
                       callbacks=callbacks, catch=(ValueError, _OutOfTime), gc_after_trial=True)


def summarize(study: str, seconds: float = 0.0) -> TuneResult:
    """Counts and the best trial so far, read from the study's database."""
    import optuna
    from optuna.trial import TrialState

    try:
        s = optuna.load_study(study_name=study, storage=_storage(storage_url(study)))
        trials = s.get_trials(deepcopy=False)
    except KeyError:
        trials = []
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    st = read_status(study)
    return TuneResult(study=study, state=st.get("state", "failed"), n_trials=len(trials), n_complete=len(complete),
                      n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
                      n_failed=sum(t.state == TrialState.FAIL for t in trials),
                      best_value=best.value if best else None, best_params=dict(best.params) if best else {},
                      best_trial=best.number if best else None,
                      best_config=best.user_attrs.get("config") if best else None,
                      run_id=st.get("run_id"), seconds=round(seconds or float(st.get("search_seconds", 0)), 1),
                      message=st.get("message", ""))


def leaderboard(study: str) -> list[dict]:
    """One row per trial, best first (then running, pruned and failed ones, newest first)."""
    import optuna
    from optuna.trial import TrialState

    try:
        s = optuna.load_study(study_name=study, storage=_storage(storage_url(study)))
    except KeyError:
        return []
    rows = []
    rank = {TrialState.COMPLETE: 0, TrialState.RUNNING: 1, TrialState.PRUNED: 2, TrialState.FAIL: 3,
            TrialState.WAITING: 4}
    for t in s.get_trials(deepcopy=False):
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start is not None:
            end = t.datetime_complete or datetime.now()
            seconds = round((end - t.datetime_start).total_seconds(), 1)
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "macro_f1": t.value if t.state == TrialState.COMPLETE else None,
                     "last_reported": last, "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                     "seconds": seconds, **{k: v for k, v in sorted(t.params.items())},
                     "note": t.user_attrs.get("error", ""), "_rank": rank.get(t.state, 5)})
    rows.sort(key=lambda r: (r["_rank"], -(r["macro_f1"] or 0), -r["trial"]))
    for r in rows:
        r.pop("_rank")
    return rows


def figures(study: str, importances: bool = True) -> dict[str, Any]:
    """Optuna's plotly figures of a study: history, parallel coordinates, importances, slices.

    A figure that needs more finished trials than there are is left out.
    `importances=False` skips the one that fits a model (fANOVA): for views that
    redraw every few seconds while trials still run.
    """
    import optuna
    from optuna.trial import TrialState

    try:
        s = optuna.load_study(study_name=study, storage=_storage(storage_url(study)))
    except KeyError:
        return {}
    complete = [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return {}
    vis = optuna.visualization
    makers = {"Optimisation history": vis.plot_optimization_history,
              "Parallel coordinates": vis.plot_parallel_coordinate,
              "Slices": vis.plot_slice}
    if importances and len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        makers["Parameter importances"] = vis.plot_param_importances
    out = {}
    import warnings

    for title, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make(s)
            fig.update_layout(title=title, template="plotly_white")
            out[title] = fig
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return out


def run_study(cfg: TuneConfig | None = None, study: str | None = None, *, trials: int | None = None,
              timeout: float | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None, workers: int | None = None,
              final_run: bool | None = None) -> TuneResult:
    """Run a search in this process (its trials in worker processes when more than one) and
    train the best config as a run. Either a new `cfg` or an existing `study` to resume.

    Resuming adds `trials` more trials (default: the study's own count) within `timeout`.
    `progress(event)` gets {"phase": "extracting", "done", "total"}, then {"phase":
    "searching", "trials", "target", "best_value"}, then {"phase": "training"} for the
    final run. `should_stop()` is polled; when True the search ends as "cancelled".
    `final_run` overrides the config's choice of training the best config as a run.
    """
    workspace.require_writable("run a hyperparameter search")
    if study is None:
        if cfg is None:
            raise TuningError("Give a search config or the name of a study to resume.")
        study = create_study(cfg)
    else:
        _check_idle(study)
    cfg = load_config(study) if cfg is None else cfg
    if final_run is not None:
        cfg = replace(cfg, final_run=bool(final_run))
    check_space(cfg.space, cfg.base, cfg.sampler)
    emit = progress or (lambda e: None)
    stop = should_stop or (lambda: False)
    path = study_dir(study)
    update_status(study, pid=os.getpid(), pid_started=runs.process_start_time(os.getpid()),
                  started=time.time(), state="extracting", message="Extracting features", finished=None)
    t0 = time.time()
    try:
        result = _run(cfg, study, trials, timeout, emit, stop, workers, t0)
    except _Cancelled:
        update_status(study, state="cancelled", message="Cancelled.", finished=time.time(),
                      search_seconds=round(time.time() - t0, 1))
        return summarize(study, time.time() - t0)
    except BaseException as e:
        msg = str(e) if isinstance(e, ValueError) else f"Unexpected error: {type(e).__name__}: {e}"
        update_status(study, state="failed", message=msg, finished=time.time())
        raise
    finally:
        (path / runs.CANCEL).unlink(missing_ok=True)
    return result


def _run(cfg: TuneConfig, study: str, trials, timeout, emit, stop, workers, t0) -> TuneResult:
    import optuna

    timeout = timeout if timeout is not None else cfg.timeout
    if timeout is not None and timeout < SEARCH_SECONDS_PER_TRIAL_MIN:
        raise TuningError(f"A timeout of {timeout:g} s is too short to finish one trial; give at least "
                          f"{SEARCH_SECONDS_PER_TRIAL_MIN:g} s (most trials take tens of seconds).")

    def on_extract(done: int, total: int) -> None:
        if stop():
            raise _Cancelled()
        emit({"phase": "extracting", "done": done, "total": total})
        update_status(study, done=done, total=total)

    labels, train, val = prepare(cfg, on_extract)
    if stop():
        raise _Cancelled()
    study_obj = open_study(study, cfg)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study_obj)  # trials of a killed worker, when resuming
    before = len(study_obj.trials)
    add = trials if trials is not None else cfg.trials
    target = before + int(add) if add is not None else None
    n_workers = int(workers or cfg.workers or auto_workers(len(train), None if target is None else target - before))
    if n_workers <= 1:
        from .models import configure_tensorflow

        configure_tensorflow()  # TensorFlow's start is not part of the first trial's budget
    # The budget is for trials: extracting features (once, cached) comes before it.
    deadline = time.time() + float(timeout) if timeout is not None else None
    update_status(study, state="searching", message="Searching", n_before=before, target=target,
                  workers=n_workers, deadline=deadline, done=0, total=(target or 0) - before)
    t_search = time.time()
    if n_workers <= 1:
        _search_here(study, cfg, emit, stop, target, deadline, before)
    else:
        _search_workers(study, emit, stop, target, deadline, before, n_workers)
    search_seconds = time.time() - t_search
    result = summarize(study, search_seconds)
    new = result.n_trials - before
    update_status(study, search_seconds=round(search_seconds, 1), n_trials=result.n_trials,
                  best_value=result.best_value)
    if stop():
        raise _Cancelled()
    if result.best_config is None:
        if deadline is not None and time.time() >= deadline:
            raise TuningError(f"The budget of {timeout:g} s was too small to finish one trial "
                              f"({new} started, none finished). Give a longer timeout or fewer epochs.")
        raise TuningError(f"No trial finished ({result.n_pruned} pruned, {result.n_failed} failed): "
                          + _first_error(study))
    run_id = None
    if cfg.final_run:
        run_id = _final_run(study, result, emit, stop)
    update_status(study, state="done", message="Done", finished=time.time(), run_id=run_id)
    result = summarize(study, search_seconds)
    return result


def _first_error(study: str) -> str:
    notes = [r["note"] for r in leaderboard(study) if r.get("note")]
    return notes[0] if notes else "see the log."


def _search_here(study, cfg, emit, stop, target, deadline, before) -> None:
    last = [0.0]

    def watched_stop() -> bool:
        if time.time() - last[0] > 1.0:
            last[0] = time.time()
            _report(study, emit, target, before)
        return stop()

    optimize(study, stop=watched_stop, target=target, deadline=deadline)
    _report(study, emit, target, before)


def _report(study: str, emit, target, before) -> None:
    r = summarize(study)
    update_status(study, done=r.n_trials - before, n_trials=r.n_trials, best_value=r.best_value,
                  n_pruned=r.n_pruned, n_complete=r.n_complete)
    emit({"phase": "searching", "trials": r.n_trials - before, "target": None if target is None else target - before,
          "best_value": r.best_value, "pruned": r.n_pruned, "complete": r.n_complete})


def _child_env(**extra: str) -> dict:
    """Environment of a search or worker process: this workspace, and this copy of audioclf."""
    here = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, workspace.ENV_HOME: str(workspace.home()), "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": here + (os.pathsep + path if path else ""), **extra}


def _search_workers(study, emit, stop, target, deadline, before, n: int) -> None:
    path = study_dir(study)
    env = _child_env(AUDIOCLF_TF_THREADS="1", OMP_NUM_THREADS="1")
    procs = []
    with open(path / runs.LOG, "ab") as log:
        for w in range(n):
            cmd = [sys.executable, "-m", "audioclf.tuning", "--worker", str(path), "--index", str(w)]
            if target is not None:
                cmd += ["--target", str(target)]
            if deadline is not None:
                cmd += ["--deadline", repr(deadline)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
    update_status(study, worker_pids=[p.pid for p in procs])
    last = 0.0
    try:
        while any(p.poll() is None for p in procs):
            if stop():
                (path / runs.CANCEL).touch()
                _stop_procs(procs, WORKER_STOP_WAIT)
                fail_running(study)
                raise _Cancelled()
            if time.time() - last > 1.0:
                last = time.time()
                _report(study, emit, target, before)
            time.sleep(POLL)
    finally:
        _stop_procs(procs, grace=0.0 if all(p.poll() is not None for p in procs) else CANCEL_WAIT)
    _report(study, emit, target, before)
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad and summarize(study).n_complete == 0:
        tail = (path / runs.LOG).read_text(errors="replace").strip().splitlines()[-3:]
        raise TuningError("The search's worker processes failed: " + " | ".join(tail))


def fail_running(study: str) -> int:
    """Mark the study's running trials failed (their workers were stopped); returns how many."""
    import optuna
    from optuna.trial import TrialState

    storage = _storage(storage_url(study))
    try:
        s = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return 0
    n = 0
    for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            storage.set_trial_user_attr(t._trial_id, "error", "stopped: the search was cancelled")
            n += 1
        except RuntimeError:  # finished meanwhile
            continue
    return n


def _stop_procs(procs, grace: float = CANCEL_WAIT) -> None:
    end = time.time() + grace
    while time.time() < end and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    from .background import kill_group

    for p in procs:
        if p.poll() is None:
            kill_group(p.pid)  # SIGTERM, then SIGKILL: its feature workers go too
        p.poll()


def _final_run(study: str, result: TuneResult, emit, stop) -> str:
    """Train the best trial's config as an ordinary run: scored once on the test split."""
    from .training import train

    cfg = RunConfig.from_dict({**result.best_config, "name": f"{study} best (trial {result.best_trial})"})
    update_status(study, state="training", message=f"Training the best config (trial {result.best_trial})")
    emit({"phase": "training", "trial": result.best_trial})

    def on_progress(event: dict) -> None:
        emit({**event, "phase": "final-" + event.get("phase", "")})

    run_id = train(cfg, progress=on_progress, should_stop=stop)
    update_status(study, run_id=run_id)
    state = runs.read_status(run_id).get("state")
    if state == "cancelled":
        raise _Cancelled()
    return run_id


# ---------------------------------------------------------------- background searches

_children: dict[str, subprocess.Popen] = {}


def start_tuning(cfg: TuneConfig | None = None, study: str | None = None, *, trials: int | None = None,
                 timeout: float | None = None, name: str = "") -> str:
    """Start `run_study` in a new process (a new study from `cfg`, or resume `study`); returns its name."""
    workspace.require_writable("start a hyperparameter search")
    if study is None:
        if cfg is None:
            raise TuningError("Give a search config or the name of a study to resume.")
        check_space(cfg.space, cfg.base, cfg.sampler)
        search_items(cfg)  # fail now on a bad split or objective, not in the background
        study = create_study(cfg, name)
    else:
        _check_idle(study)
        update_status(study, state="queued", message="Queued", finished=None, run_id=None)
    path = study_dir(study)
    (path / runs.CANCEL).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "audioclf.tuning", str(path)]
    if trials is not None:
        cmd += ["--trials", str(int(trials))]
    if timeout is not None:
        cmd += ["--timeout", repr(float(timeout))]
    env = _child_env()
    with open(path / runs.LOG, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _children[study] = proc
    # Reap the search the moment it exits, as training runs are: a search that ends on its own
    # would otherwise stay a <defunct> child of the app's server.
    threading.Thread(target=proc.wait, name=f"reap-{study}", daemon=True).start()
    update_status(study, pid=proc.pid, pid_started=runs.process_start_time(proc.pid), created=time.time())
    return study


def cancel_tuning(study: str, wait: float = CANCEL_WAIT) -> str:
    """Ask a search to stop; kill it (and its workers) if it has not after `wait` s. Returns its state."""
    workspace.require_writable("cancel a hyperparameter search")
    path = study_dir(study)
    status = read_status(study)
    if status.get("state") in FINAL_STATES:
        return status["state"]
    (path / runs.CANCEL).touch()
    deadline = time.time() + wait
    while time.time() < deadline:
        _reap(study)
        state = read_status(study).get("state")
        if state in FINAL_STATES and not read_status(study).get("interrupted"):
            return state
        time.sleep(0.1)
    from .background import kill_group

    status = read_status(study)  # worker pids are written once the search has started them
    for pid in [status.get("pid"), *(status.get("worker_pids") or [])]:
        if pid and pid != os.getpid() and runs.pid_alive(pid):
            kill_group(pid)
    _reap(study)
    fail_running(study)
    if (runs.read_json(path / runs.STATUS, {}) or {}).get("state") not in FINAL_STATES:
        update_status(study, state="cancelled", message="Cancelled.", finished=time.time())
    (path / runs.CANCEL).unlink(missing_ok=True)
    return read_status(study).get("state", "cancelled")


def _reap(study: str) -> None:
    proc = _children.get(study)
    if proc is not None and proc.poll() is not None:
        _children.pop(study, None)


def delete_study(study: str) -> None:
    """Remove a study folder (refused while it runs); its best run stays."""
    import shutil

    workspace.require_writable("delete a study")
    st = read_status(study)
    if st.get("state") not in FINAL_STATES:
        raise TuningError(f"Study {study} is still {st.get('state')}; cancel it first.")
    shutil.rmtree(study_dir(study))


def _main(argv: list[str]) -> int:
    """`python -m audioclf.tuning <study folder> [--trials N] [--timeout S]` (a whole search), or
    `python -m audioclf.tuning --worker <study folder> [--target N] [--deadline T]` (trials only)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m audioclf.tuning")
    p.add_argument("folder")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--target", type=int)
    p.add_argument("--deadline", type=float)
    p.add_argument("--trials", type=int)
    p.add_argument("--timeout", type=float)
    args = p.parse_args(argv)
    path = Path(args.folder).resolve()
    os.environ[workspace.ENV_HOME] = str(path.parent.parent)
    cancel = path / runs.CANCEL
    if args.worker:
        from .models import configure_tensorflow

        configure_tensorflow()
        try:
            optimize(path.name, worker=args.index, stop=cancel.exists, target=args.target,
                     deadline=args.deadline)
        except _Cancelled:
            return 0
        return 0
    try:
        run_study(study=path.name, trials=args.trials, timeout=args.timeout, should_stop=cancel.exists)
    except Exception as e:  # recorded in status.json; one line for the log
        print(f"search failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
