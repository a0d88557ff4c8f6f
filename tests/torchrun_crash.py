"""``python tests/torchrun_crash.py FOLDER ARGS...``: ``transferlab ARGS`` whose rank 1 dies once (SIGKILL-like
``os._exit``) before its third epoch, after rank 0 checkpointed the second: what a lost machine does to a
torchrun job. ``torchrun --max-restarts 1`` then starts every rank again (TORCHELASTIC_RESTART_COUNT 1),
and the run must resume from the checkpoint in FOLDER.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from transferlab.engine import loop

CRASH_BEFORE_EPOCH = 2  # 0-based: the checkpoint then holds epoch 1 (two completed epochs)


def main() -> None:
    folder = Path(sys.argv[1])
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    train_epoch = loop._train_epoch

    def crashing(state, *args, **kwargs):
        if first_attempt and int(os.environ["RANK"]) == 1 and state.epoch == CRASH_BEFORE_EPOCH - 1:
            wait_for_checkpoint(folder / "checkpoint.pt", CRASH_BEFORE_EPOCH - 1)
            (folder / "crashed").write_text("rank 1\n")
            os._exit(17)
        return train_epoch(state, *args, **kwargs)

    loop._train_epoch = crashing
    sys.argv = ["transferlab", *sys.argv[2:]]
    from transferlab.cli.main import run

    run()


def wait_for_checkpoint(path: Path, epoch: int) -> None:
    """Until rank 0 has written the checkpoint of ``epoch`` (a minute at most)."""
    for _ in range(1200):
        if path.exists() and torch.load(path, map_location="cpu", weights_only=True)["epoch"] >= epoch:
            return
        time.sleep(0.05)
    raise SystemExit("rank 0 wrote no checkpoint")


if __name__ == "__main__":
    main()
