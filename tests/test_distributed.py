"""One run on several processes: real ``torchrun --nproc-per-node 2`` jobs on the CPU (gloo) against one process.

The GPU path (NCCL, one device per local rank) is the same code with another backend and device; it needs
GPUs and is not tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import transferlab
from helpers import make_class_folders, run_cli
from transferlab.engine import distributed
from transferlab.engine.runtime import Runtime

HERE = Path(__file__).parent
# 20 images a class: 42 training images (an even number: no sample repeated to even out the ranks),
# 9 validation and 9 test images (odd: the evaluation shards differ in size).
FINETUNE = ("finetune", "--backbone", "test_efficientnet", "--random-init", "--batch-size", "8", "--workers", "0",
            "--precision", "fp32", "--early-stopping", "none", "--augment", "none", "--head-init", "sgd", "--json")
PROBE = ("probe", "--backbone", "test_efficientnet", "--random-init", "--head", "logreg", "--batch-size", "8",
         "--workers", "0", "--precision", "fp32", "--json")


# The workers' own TCPStore per attempt: with the agent's shared store a restarted gloo group may read the
# previous attempt's addresses (pytorch/pytorch#135712; seen here as "connectFullMesh failed ... refused").
RESTARTABLE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("dist") / "data", {"a": 20, "b": 20, "c": 20})


def torchrun(*args: str, nproc: int = 2, extra: tuple[str, ...] = (), env: dict | None = None,
             script: tuple[str, ...] = ("-m", "transferlab")) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m transferlab ARGS`` with this checkout's transferlab."""
    source = str(Path(transferlab.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "PYTHONPATH": path,
                "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), *extra, *script, *args],
                          capture_output=True, text=True, env=full_env, timeout=300)


def result_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "[rank0]" not in line)[-6000:]
    return json.loads(done.stdout)  # one JSON document: only rank 0 printed


# -- units: how the work is split ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 7, 9, 10])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_evaluation_shards_cover_every_sample_once_in_order(n, world_size):
    shards = [distributed.shard(n, rank, world_size) for rank in range(world_size)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_evaluation_on_two_ranks_of_seven_samples_neither_drops_nor_repeats_one():
    from transferlab.engine.inputs import TensorInputs

    inputs = TensorInputs(torch.arange(7.0)[:, None], torch.zeros(7, dtype=torch.long))
    seen = [int(i) for rank in (0, 1) for _, _, index in
            inputs.batches(2, Runtime(rank=rank, world_size=2).shard(len(inputs))) for i in index]
    assert seen == list(range(7))


def test_training_epochs_split_one_permutation_over_the_ranks_and_reshuffle_each_epoch():
    n, world, batch = 9, 2, 4  # global batch 4: 2 a rank
    for epoch in (0, 1):
        alone = Runtime().train_order(n, seed=5, epoch=epoch)
        assert alone == torch.randperm(n, generator=torch.Generator().manual_seed(5 + epoch)).tolist()
        ranks = [Runtime(rank=r, world_size=world).train_order(n, seed=5, epoch=epoch) for r in range(world)]
        assert len(ranks[0]) == len(ranks[1]) == 5  # padded by one repeat: as many batches on each rank
        for k in range(0, n, batch):  # local batch j of each rank together = global batch j of one process
            j = k // world
            together = ranks[0][j : j + batch // world] + ranks[1][j : j + batch // world]
            assert set(alone[k : k + batch]) <= set(together)
        assert {i for r in ranks for i in r} == set(range(n))
    assert Runtime().train_order(n, 5, 0) != Runtime().train_order(n, 5, 1)


@pytest.mark.parametrize("n", [9, 10])
def test_the_samples_digest_of_an_epoch_is_the_same_on_one_and_two_ranks(n):
    from transferlab.engine.loop import steps_digest

    def steps(order, batch):
        return [order[i : i + batch] for i in range(0, len(order), batch)]

    alone = steps(Runtime().train_order(n, 3, 1), 4)
    ranks = [steps(Runtime(rank=r, world_size=2).train_order(n, 3, 1), 2) for r in (0, 1)]
    assert steps_digest(ranks) == steps_digest([alone])
    assert steps_digest([alone]) != steps_digest([steps(Runtime().train_order(n, 3, 2), 4)])


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    from transferlab.engine.loop import process_batch_size
    from transferlab.errors import UserError

    assert process_batch_size(8, 2) == 4
    with pytest.raises(UserError, match="--batch-size 9 is the global batch"):
        process_batch_size(9, 2)


# -- rank 1 alone: what it writes and prints ----------------------------------------------------------------------

@pytest.fixture
def as_rank_one(monkeypatch):
    """This process as rank 1 of 2, without the process group: its collectives return its own share."""
    monkeypatch.setattr(distributed, "setup", lambda device: None)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")


def test_bad_input_is_reported_once_by_rank_zero(as_rank_one, cli, data, tmp_path):
    done = cli(*FINETUNE, "--data", str(data), "--batch-size", "7", "--epochs", "1", "--output", str(tmp_path / "m"))
    assert done.returncode == 2 and done.stderr == ""


def test_rank_one_of_a_finetune_job_writes_and_prints_nothing(as_rank_one, cli, data, tmp_path):
    done = cli(*FINETUNE, "--data", str(data), "--freeze", "all", "--epochs", "1", "--output", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "epoch" not in done.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_rank_one_of_a_probe_job_prints_nothing_and_caches_only_its_own_images(as_rank_one, cli, data, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    done = cli(*PROBE, "--data", str(data))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    cached = list((tmp_path / "cache").rglob("*.npz"))
    assert len(cached) == 21 + 4  # rank 1's halves: train 21 of 42 (no validation: logreg), test 4 of 9


# -- real torchrun jobs against one process ------------------------------------------------------------------------

def test_finetune_on_two_processes_sees_the_same_samples_and_ends_where_one_process_does(data, tmp_path):
    """Frozen backbone, prefix cache: each process computes half the prefix outputs, gets all of them, trains
    the head on half of each global batch; the gradients averaged by DDP are one process's."""
    args = (*FINETUNE, "--data", str(data), "--freeze", "all", "--lr", "0.01", "--epochs", "3")
    one = result_of(run_cli(*args, "--output", str(tmp_path / "one")))
    done = torchrun(*args, "--output", str(tmp_path / "two"))
    two = result_of(done)
    assert two["runtime"]["world_size"] == 2 and one["runtime"]["world_size"] == 1
    assert [h["samples"] for h in two["history"]] == [h["samples"] for h in one["history"]]
    assert len({h["samples"] for h in one["history"]}) == 3, "each epoch reshuffles"
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
    assert (two["test_images"], two["val_images"]) == (one["test_images"], one["val_images"]) == (9, 9)
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.01
    assert done.stderr.count("epoch   1 ") == 1, "one process prints the epochs"
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_finetune_of_the_whole_network_on_two_processes_matches_one_within_a_point(data, tmp_path):
    """Images decoded every epoch, BatchNorm statistics per process batch: the same samples, close results."""
    args = (*FINETUNE, "--data", str(data), "--freeze", "none", "--no-prefix-cache", "--lr", "0.003",
            "--epochs", "2")
    one = result_of(run_cli(*args, "--output", str(tmp_path / "one")))
    two = result_of(torchrun(*args, "--output", str(tmp_path / "two")))
    assert [h["samples"] for h in two["history"]] == [h["samples"] for h in one["history"]]
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.01
    assert abs(two["history"][-1]["val_accuracy"] - one["history"][-1]["val_accuracy"]) <= 0.01


def test_probe_on_two_processes_extracts_each_image_once_into_one_cache_with_the_same_features(data, tmp_path):
    args = (*PROBE, "--predictions", "--data", str(data))
    one = result_of(run_cli(*args, env={"TRANSFERLAB_CACHE_DIR": str(tmp_path / "c1")}))
    done = torchrun(*args, env={"TRANSFERLAB_CACHE_DIR": str(tmp_path / "c2")})
    two = result_of(done)
    assert two["features_computed"] == one["features_computed"] == 42 + 9
    assert (two["train_images"], two["test_images"]) == (one["train_images"], one["test_images"])
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.01
    assert two["predictions"] == one["predictions"]
    cached = {p.name: np.load(p)["features"] for p in (tmp_path / "c2").rglob("*.npz")}
    reference = {p.name: np.load(p)["features"] for p in (tmp_path / "c1").rglob("*.npz")}
    assert cached.keys() == reference.keys() and len(cached) == 51
    for name, features in reference.items():
        np.testing.assert_allclose(cached[name], features, rtol=1e-4, atol=1e-5)


def test_a_restarted_job_resumes_from_the_last_completed_epoch(data, tmp_path):
    """Rank 1 dies before epoch 3; torchrun starts both ranks again; they read rank 0's checkpoint."""
    args = (*FINETUNE, "--data", str(data), "--freeze", "all", "--lr", "0.01", "--epochs", "4")
    one = result_of(run_cli(*args, "--output", str(tmp_path / "one")))
    folder = tmp_path / "two"
    folder.mkdir()
    done = torchrun(*args, "--output", str(folder), "--resume", extra=("--max-restarts", "1"),
                    script=(str(HERE / "torchrun_crash.py"), str(folder)), env=RESTARTABLE)
    two = result_of(done)
    assert (folder / "crashed").exists(), "rank 1 was to die once"
    assert done.stderr.count("epoch   2 ") == 1 and done.stderr.count("epoch   3 ") == 1, \
        "the second attempt starts at epoch 3"
    assert [h["samples"] for h in two["history"]] == [h["samples"] for h in one["history"]]
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
    assert not (folder / "checkpoint.pt").exists()


def test_every_rank_ends_a_fit_with_the_same_batchnorm_statistics(data, tmp_path):
    """Each rank's BatchNorm layers see only its half of every batch; after each epoch rank 0's statistics go to
    every rank, so evaluation and checkpoints use one set."""
    args = (*FINETUNE, "--data", str(data), "--freeze", "none", "--no-prefix-cache", "--epochs", "1",
            "--image-size", "64")
    result_of(torchrun(*args, "--output", str(tmp_path / "m"), script=(str(HERE / "torchrun_bn.py"), str(tmp_path))))
    zero, one = (torch.load(tmp_path / f"buffers-{rank}-train.pt") for rank in (0, 1))
    means = [name for name in zero if name.endswith("running_mean")]
    assert means and zero.keys() == one.keys()
    assert all(float(zero[name].abs().sum()) > 0 for name in means), "the statistics were trained"
    for name in zero:
        assert torch.equal(zero[name], one[name]), name
