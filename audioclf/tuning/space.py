"""What a search varies: parameters, search spaces, parsing their text form, applying values to a run config.

    >>> from audioclf.tuning.space import default_space, parse_vary
    >>> space = default_space("mfcc").with_param(parse_vary("model.kind=gru,lstm"))
    >>> [p.name for p in space.varying()][:2]
    ['model.rnn_layers', 'model.rnn_units']
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..errors import AudioclfError
from ..model.configs import ModelConfig, RECURRENT_KINDS
from ..training.config import RunConfig, TrainConfig

MAX_GRID = 100000  # grid points a grid search may have
# Synthetic settings: the form and the CLI speak of layers and units, ModelConfig of tuples.
LAYER_PARAMS = {"model.rnn_layers": "rnn_units", "model.rnn_units": "rnn_units",
                "model.dense_layers": "dense_units", "model.dense_units": "dense_units"}


class TuningError(AudioclfError):
    """A search that cannot start or go on; message is for people."""


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
    behind audioclf tuned by hand). YAMNet's and EfficientAT's embeddings also try the
    dense baseline; MFCC also tries appended deltas (one more feature config).
    """
    kinds = RECURRENT_KINDS + (("baseline",) if feature_kind in ("yamnet", "spectral", "efficientat") else ())
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
    from ..features import CONFIG_TYPES

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


def feature_fields(kind: str) -> set[str]:
    from ..features import CONFIG_TYPES

    return {f.name for f in fields(CONFIG_TYPES[kind])}


def _applies(name: str, values: dict, base: RunConfig) -> bool:
    """Whether setting `name` means anything given the values chosen so far (conditional spaces)."""
    section, key = name.split(".", 1)
    if section == "features" and key != "kind":
        kind = values.get("features.kind", base.features.kind)
        return key in feature_fields(kind)
    if name in ("train.finetune_blocks", "train.backbone_learning_rate"):  # EfficientAT's blocks only
        return values.get("features.kind", base.features.kind) == "efficientat"
    if name in ("model.rnn_layers", "model.rnn_units", "model.pooling", "model.clip_norm",
                "model.clip_scale", "model.time_mask", "model.feature_mask", "model.input_noise"):
        return values.get("model.kind", base.model.kind) != "baseline"
    return True


def apply_params(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`base` with the dotted settings in `values` changed (settings that do not apply are ignored)."""
    from ..features import CONFIG_TYPES

    feats = base.features
    kind = values.get("features.kind", feats.kind)
    if kind not in CONFIG_TYPES:
        raise TuningError(f"Unknown feature type {kind!r}; choose one of {', '.join(CONFIG_TYPES)}.")
    if kind != feats.kind:
        feats = CONFIG_TYPES[kind]()
    fchanges = {k.split(".", 1)[1]: v for k, v in values.items()
                if k.startswith("features.") and k != "features.kind" and k.split(".", 1)[1] in feature_fields(kind)}
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
    if kind != "efficientat" and train.finetune_blocks:  # only EfficientAT has blocks to fine-tune
        train = replace(train, finetune_blocks=0)
    if kind == "efficientat" and not train.finetune_blocks and base.finetunes and "features.sequence" not in values:
        feats = replace(feats, sequence="frames")  # a frozen trial of a fine-tuning base: the network's sequence
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
    kinds = values_of(space, "features.kind", base.features.kind)
    mkinds = values_of(space, "model.kind", base.model.kind)
    for p in space.params:
        section, key = p.name.split(".", 1)
        if section == "features" and key != "kind" and not any(key in feature_fields(k) for k in kinds):
            raise TuningError(f"{p.name} does not apply to {' or '.join(kinds)} features, the only ones "
                              "this search uses: vary features.kind too, or drop it.")
        if p.name in ("model.rnn_layers", "model.rnn_units") and mkinds == ["baseline"]:
            raise TuningError(f"{p.name} varies, but the only model kind searched is the dense baseline, "
                              "which has no recurrent layers.")


def _context(name: str, space: SearchSpace, base: RunConfig) -> dict:
    """Kinds under which setting `name` applies (a feature type that has it, a recurrent model)."""
    section, key = name.split(".", 1)
    if section == "features" and key != "kind" and key not in feature_fields(base.features.kind):
        kinds = values_of(space, "features.kind", base.features.kind)
        return {"features.kind": next(k for k in kinds if key in feature_fields(k))}
    if name in ("model.rnn_layers", "model.rnn_units") and base.model.kind == "baseline":
        mkinds = values_of(space, "model.kind", base.model.kind)
        return {"model.kind": next(k for k in mkinds if k != "baseline")}
    return {}


def values_of(space: SearchSpace, name: str, default: Any) -> list:
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
