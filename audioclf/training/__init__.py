"""Training: run configs and the per-feature defaults, the pre-flight checks, features for a run,
fitting, the training run itself (in this process or in the background) and run folders.

    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.training import RunConfig, train

    run_id = train(RunConfig(dataset="fsdd/", split=SplitConfig(), features=MFCCConfig()))
"""
from audioclf.training import runs
from audioclf.training.background import cancel_run, start_training
from audioclf.training.config import RunConfig, TrainConfig, TrainingError, resolve_settings
from audioclf.training.defaults import AutoFeatures, default_feature_kind, model_defaults, not_applicable, train_values
from audioclf.training.feature_choice import choose_features, config_for_kind
from audioclf.training.fit import class_weights, fit
from audioclf.training.crossval import cross_validate
from audioclf.training.prepare import check_features, gather_features, prepare_run, resolve_dataset
from audioclf.training.run import train
from audioclf.training.runs import RunError, active_runs, list_runs, load_run, read_status, run_status

__all__ = ["AutoFeatures", "RunConfig", "RunError", "TrainConfig", "TrainingError",
           "active_runs", "cancel_run", "check_features", "choose_features", "class_weights", "cross_validate",
           "default_feature_kind", "config_for_kind", "fit", "gather_features", "list_runs",
           "load_run", "model_defaults", "not_applicable", "prepare_run", "read_status",
           "resolve_dataset", "resolve_settings", "run_status", "runs", "start_training", "train", "train_values"]
