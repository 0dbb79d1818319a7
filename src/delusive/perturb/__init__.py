"""The one PGD engine every attack, defense and evaluation uses, and the attacks of AutoAttack (APGD, FAB-T,
Square)."""

from delusive.perturb.apgd import APGD_LOSSES, APGDIterate, APGDResult, apgd, checkpoint_fractions, checkpoints
from delusive.perturb.fab import FABResult, fab_targeted, project_hyperplane_box
from delusive.perturb.losses import LOSSES, cross_entropy, resolve_loss
from delusive.perturb.pgd import PGDResult, pgd
from delusive.perturb.square import SquareResult, square

__all__ = ["LOSSES", "PGDResult", "cross_entropy", "pgd", "resolve_loss"]
__all__ += ["APGD_LOSSES", "APGDIterate", "APGDResult", "apgd", "checkpoint_fractions", "checkpoints"]
__all__ += ["FABResult", "SquareResult", "fab_targeted", "project_hyperplane_box", "square"]
