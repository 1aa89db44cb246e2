"""Two CPU processes with gloo under torchrun: same counts as one process, identical weights on every rank."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from idem_md import IDEMSampler

sys.path.insert(0, str(Path(__file__).parent))
from dist_worker import TINY  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")


def test_two_gloo_processes_match_single_process_counts(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(Path(__file__).parent / "dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # A rank aborting in C++ teardown (seen once in ~14 runs of this test, session 6; not reproduced alone):
        # run the launch once more from scratch. A failure that repeats still fails the test.
        for f in tmp_path.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    single = IDEMSampler("dw4", config=TINY, device="cpu")
    single.fit(progress=False)

    for r in ranks:
        assert r["world"] == 2
        assert r["counters"] == single.counters  # global batch 8 = 2 x 4, same K: same evaluations
        assert r["outer_iteration"] == single.outer_iteration
        assert r["buffer_len"] == len(single.buffer)  # 10 prior + 2 x 10 new, shared by all-gather
        assert r["n_steps_checked"] == TINY["inner_steps"] * TINY["outer_iterations"]
        assert r["max_weight_mismatch"] == 0.0  # DDP: identical weights on both ranks after every step
    assert ranks[0]["buffer_sum"] == ranks[1]["buffer_sum"]  # replicated buffer
    assert ranks[0]["param_sum"] == ranks[1]["param_sum"]

    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # written by rank 0 only
    assert ckpt["outer_iteration"] == 2 and ckpt["counters"] == single.counters
    assert len(ckpt["rank_generators"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    resumed = IDEMSampler.load(tmp_path / "ckpt.pt")  # a single process can pick the run up
    assert resumed.outer_iteration == 2 and len(resumed.buffer) == len(single.buffer)
