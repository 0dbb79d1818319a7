"""The one PGD engine every attack, defense and evaluation uses."""

from delusive.perturb.apgd import APGD_LOSSES, APGDIterate, APGDResult, apgd, checkpoint_fractions, checkpoints
from delusive.perturb.losses import LOSSES, cross_entropy, resolve_loss
from delusive.perturb.pgd import PGDResult, pgd

__all__ = ["LOSSES", "PGDResult", "cross_entropy", "pgd", "resolve_loss"]
__all__ += ["APGD_LOSSES", "APGDIterate", "APGDResult", "apgd", "checkpoint_fractions", "checkpoints"]
