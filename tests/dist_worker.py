"""Worker for tests/test_distributed.py, launched with torchrun (2 processes, gloo).

Trains a tiny DW-4 sampler, checks after every inner step that all ranks hold identical
weights, and writes each rank's final state summary to OUT/rank{r}.json.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from idem_md import IDEMSampler
from idem_md.distributed import init_distributed_from_env

TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=3, samples_per_outer=10, sde_steps=8, buffer_size=64,
            outer_iterations=2, sample_batch_size=8, checkpoint_every=1,
            network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8,
                                 time_embedding_dim=8))


def flat_params(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def main(out: Path) -> None:
    assert init_distributed_from_env()
    rank, world = dist.get_rank(), dist.get_world_size()
    sampler = IDEMSampler("dw4", config=TINY, device="cpu")
    mismatches = []
    real_step = sampler._train_step

    def checked_step():
        result = real_step()
        p = flat_params(sampler.network)
        gathered = [torch.zeros_like(p) for _ in range(world)]
        dist.all_gather(gathered, p)
        mismatches.append(max(float((g - gathered[0]).abs().max()) for g in gathered))
        return result

    sampler._train_step = checked_step
    sampler.fit(progress=False, checkpoint_path=out / "ckpt.pt")
    summary = {
        "rank": rank, "world": world, "counters": sampler.counters, "outer_iteration": sampler.outer_iteration,
        "buffer_len": len(sampler.buffer), "buffer_sum": float(sampler.buffer.contents().double().sum()),
        "max_weight_mismatch": max(mismatches), "n_steps_checked": len(mismatches),
        "param_sum": float(flat_params(sampler.network).double().sum()),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
