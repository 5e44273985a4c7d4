"""A search's settings (:class:`TuneConfig`) and what it found (:class:`TuneResult`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..datasets.splitting import MAX_FOLDS, MIN_FOLDS
from ..training.config import RunConfig
from .space import SearchSpace, TuningError, default_space

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
OBJECTIVES = ("val", "cv")
STUDY_STATES = ("queued", "extracting", "searching", "training", "done", "failed", "cancelled")


@dataclass(frozen=True)
class TuneConfig:
    """A search: the base run (data set, split, defaults), what varies, objective, budget, method.

    `trials` and/or `timeout` (seconds) bound the search; `folds` is k for the "cv"
    objective; `workers` is how many trials run at once (None: 2 on a multi-core
    machine when trials are small, else 1); `storage` an Optuna database URL,
    "journal" (a journal file in the study folder, for shared disk) or "journal:PATH"
    (default: SQLite in the study folder). `engine` "ray" runs the trials as tasks on the
    Ray cluster at `address` ("" = $AUDIOCLF_RAY_ADDRESS, else a local Ray instance); its
    nodes must reach the workspace and `storage` (shared disk, or a database URL).
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
    engine: str = "local"
    address: str = ""

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
        if self.objective == "cv" and not MIN_FOLDS <= int(self.folds) <= MAX_FOLDS:
            raise TuningError(f"Cross-validation takes {MIN_FOLDS} to {MAX_FOLDS} folds, got {self.folds}.")
        if self.workers is not None and not 1 <= int(self.workers) <= 64:
            raise TuningError(f"Workers must be between 1 and 64, got {self.workers}.")
        if self.engine not in ("local", "ray"):
            raise TuningError(f"Unknown engine {self.engine!r}; use 'local' or 'ray'.")

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "space": self.space.to_dict(), "objective": self.objective,
                "folds": self.folds, "trials": self.trials, "timeout": self.timeout, "sampler": self.sampler,
                "pruner": self.pruner, "workers": self.workers, "seed": self.seed, "storage": self.storage,
                "final_run": self.final_run, "engine": self.engine, "address": self.address}

    @classmethod
    def from_dict(cls, d: dict) -> "TuneConfig":
        try:
            return cls(base=RunConfig.from_dict(d["base"]), space=SearchSpace.from_dict(d.get("space", [])),
                       **{k: d[k] for k in ("objective", "folds", "trials", "timeout", "sampler", "pruner",
                                            "workers", "seed", "storage", "final_run", "engine", "address")
                                  if k in d})
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
    n_failed: int  # failed trials; those the search's cancel stopped are n_cancelled
    best_value: float | None
    best_params: dict
    best_trial: int | None
    best_config: dict | None
    run_id: str | None
    seconds: float
    message: str = ""
    n_cancelled: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
