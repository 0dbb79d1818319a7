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

__all__ = ["evaluate", "natural_accuracy", "per_class_accuracy", "pgd_rel_step", "predict", "robust_predictions",
           "sanity_warnings", "stratified_subset"]
