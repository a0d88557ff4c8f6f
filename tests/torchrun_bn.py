"""``python tests/torchrun_bn.py FOLDER ARGS...``: ``transferlab ARGS`` under torchrun, each rank saving the buffers
(BatchNorm running statistics) its model ends every fit with, as FOLDER/buffers-RANK-STAGE.pt: what each process
would evaluate and checkpoint with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from transferlab.engine.learner import Learner


def main() -> None:
    folder = Path(sys.argv[1])
    fit = Learner.fit

    def recording_fit(learner, *args, **kwargs):
        state = fit(learner, *args, **kwargs)
        buffers = {name: buffer.detach().cpu().clone() for name, buffer in learner.model.named_buffers()}
        torch.save(buffers, folder / f"buffers-{os.environ['RANK']}-{state.stage}.pt")
        return state

    Learner.fit = recording_fit
    sys.argv = ["transferlab", *sys.argv[2:]]
    from transferlab.cli.main import run

    run()


if __name__ == "__main__":
    main()
