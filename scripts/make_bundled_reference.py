"""Write idem_md/data/dw4_md_reference.npz (used by `idem-md demo`) from data/md_dw4.npz.

    python scripts/make_bundled_reference.py
"""

from pathlib import Path

import numpy as np
import torch

from idem_md.io import Samples

ROOT = Path(__file__).resolve().parents[1]
N = 5000

d = np.load(ROOT / "data" / "md_dw4.npz", allow_pickle=False)
samples = Samples(torch.as_tensor(d["positions"][:N]).reshape(N, 4, 2).float(), torch.as_tensor(d["energies"][:N]).float(),
                  {"system": "dw4", "kT": 1.0, "source": "md",
                   "description": f"first {N} samples of data/md_dw4.npz (scripts/generate_md_reference.py)"})
out = samples.save(ROOT / "idem_md" / "data" / "dw4_md_reference.npz", overwrite=True)
print(f"wrote {out[0]}: mean energy {float(samples.energies.mean()):.3f}")
