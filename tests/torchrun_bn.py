"""``python tests/torchrun_bn.py FOLDER ARGS...``: ``transferlab ARGS`` under torchrun, each rank saving the buffers
(BatchNorm running statistics) its model ends every fit with, as FOLDER/buffers-RANK-STAGE.pt: what each process
would evaluate and checkpoint with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from transferlab.finetune import run as finetune_run


def main() -> None:
    folder = Path(sys.argv[1])
    fit = finetune_run.fit

    def recording_fit(model, *args, **kwargs):
        state = fit(model, *args, **kwargs)
        buffers = {name: buffer.detach().cpu().clone() for name, buffer in model.named_buffers()}
        torch.save(buffers, folder / f"buffers-{os.environ['RANK']}-{state.stage}.pt")
        return state

    finetune_run.fit = recording_fit
    sys.argv = ["transferlab", *sys.argv[2:]]
    from transferlab.cli.main import run

    run()


if __name__ == "__main__":
    main()
