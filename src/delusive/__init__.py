"""delusive: delusive (clean-label availability) poisoning attacks and the adversarial-training defense.

Implements and extends Tao et al., "Better Safe Than Sorry: Preventing Delusive Adversaries with
Adversarial Training" (NeurIPS 2021). See README.md and docs/ for the layers and commands.
"""

__version__ = "0.1.0"
