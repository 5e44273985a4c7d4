"""Hyperparameter search with Optuna: which settings vary (:mod:`~audioclf.tuning.space`), a search's
settings (:mod:`~audioclf.tuning.config`), study folders (:mod:`~audioclf.tuning.studies`), what a trial
does (:mod:`~audioclf.tuning.objective`) and running a search (:mod:`~audioclf.tuning.search`).

    from audioclf.tuning import TuneConfig, default_space, run_study
    cfg = TuneConfig(base=RunConfig(...), space=default_space("mfcc"), trials=30)
    result = run_study(cfg)            # in this process; start_tuning(cfg) runs it in the background
"""
from audioclf.tuning.config import OBJECTIVES, PRUNERS, SAMPLERS, STUDY_STATES, TuneConfig, TuneResult
from audioclf.tuning.objective import prepare, search_items
from audioclf.tuning.search import cancel_tuning, run_study, start_tuning
from audioclf.tuning.space import (Param, SearchSpace, TuningError, apply_params, check_space, default_space,
                                   parse_param, parse_vary, searchable)
from audioclf.tuning.studies import (create_study, delete_study, figures, leaderboard, list_studies, load_config,
                                     read_status, study_dir, summarize_study, update_status)

__all__ = ["OBJECTIVES", "PRUNERS", "SAMPLERS", "STUDY_STATES", "Param", "SearchSpace", "TuneConfig", "TuneResult", "TuningError", "apply_params", "cancel_tuning",
           "check_space", "create_study", "default_space", "delete_study", "figures", "leaderboard", "list_studies", "load_config",
           "parse_param", "parse_vary", "prepare", "read_status", "run_study", "search_items", "searchable",
           "start_tuning", "study_dir", "summarize_study", "update_status"]
