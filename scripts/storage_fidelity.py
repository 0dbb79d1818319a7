"""How much of a poison's perturbation each storage mode keeps (docs/results.md §11): P5 on 2,000 random 3×32×32
images under l2 0.5 and linf 8/255, stored as each mode; prints the manifest's norm_stats.

Usage: python scripts/storage_fidelity.py
"""
import numpy as np

from delusive.attacks import build_artifact, create_attack
from delusive.data import ArrayDataset
from delusive.threat import L2Ball, LinfBall

rng = np.random.default_rng(0)
clean = ArrayDataset(rng.integers(0, 256, (2000, 3, 32, 32), dtype=np.uint8),
                     (np.arange(2000) % 10).astype(np.int64), 10)
for threat, storages in ((L2Ball(0.5), ("auto", "uint8")), (LinfBall(8 / 255), ("auto", "float32"))):
    res = create_attack("P5").craft(clean, threat, None, seed=0)
    for st in storages:
        art = build_artifact(clean, res.x, threat, attack="P5", attack_params={}, dataset="synthetic-cifar", seed=0,
                             storage=st, class_deltas=res.class_deltas)
        ns = art.manifest["norm_stats"]
        print(f"{threat!r} storage={st}->{art.manifest['storage']}: retained {ns['retained_fraction']:.4f}, "
              f"min {ns['min']:.4f}, max {ns['max']:.4f}")
