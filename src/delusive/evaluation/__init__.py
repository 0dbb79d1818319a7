"""Evaluation: natural, robust and per-class accuracy on clean test data, plus model sanity checks."""

from delusive.evaluation.metrics import (
    evaluate,
    natural_accuracy,
    per_class_accuracy,
    pgd_rel_step,
    predict,
    robust_predictions,
    sanity_warnings,
    stratified_subset,
)
from delusive.evaluation.selfcheck import self_check_warnings
from delusive.evaluation.spec import build_eval_spec, describe_eval_spec, wilson_interval

__all__ = ["build_eval_spec", "describe_eval_spec", "evaluate", "natural_accuracy", "per_class_accuracy",
           "pgd_rel_step", "predict", "robust_predictions", "sanity_warnings", "self_check_warnings",
           "stratified_subset", "wilson_interval"]
