"""The theory of Section 3, executable: closed forms for linear classifiers on the mixture-Gaussian setting.

numpy and scipy only (matplotlib lazily, for figures); never torch. See docs/theory.md for the derivations.

* :mod:`delusive.theory.gaussian` -- natural / l_inf-adversarial accuracy of a linear classifier, the
  Bayes-optimal and optimal robust linear classifiers, the five models of Figure 2 (Eqs. 5-7);
* :mod:`delusive.theory.checks` -- Theorems 1-3 as checks over a parameter grid (on z-scores);
* :mod:`delusive.theory.simulate` -- finite-sample standard and adversarial training beside the closed form;
* :mod:`delusive.theory.figure` -- Figure 2 and the simulation figure (PNG) and their CSV tables.
"""

from delusive.theory.checks import CheckReport, InequalityResult, check_theorems, default_grid, format_report
from delusive.theory.gaussian import (
    MODEL_NAMES,
    BlockVector,
    accuracy_from_z,
    adversarial_accuracy,
    adversarial_z,
    bayes_classifier,
    delusive_means,
    five_classifiers,
    five_model_accuracies,
    five_model_z,
    log_risk_from_z,
    natural_accuracy,
    natural_z,
    robust_classifier,
)
from delusive.theory.simulate import SimulationConfig, SimulationRow, fit_linear, run_simulation

__all__ = [
    "MODEL_NAMES",
    "BlockVector",
    "CheckReport",
    "InequalityResult",
    "SimulationConfig",
    "SimulationRow",
    "accuracy_from_z",
    "adversarial_accuracy",
    "adversarial_z",
    "bayes_classifier",
    "check_theorems",
    "default_grid",
    "delusive_means",
    "fit_linear",
    "five_classifiers",
    "five_model_accuracies",
    "five_model_z",
    "format_report",
    "log_risk_from_z",
    "natural_accuracy",
    "natural_z",
    "robust_classifier",
    "run_simulation",
]
