"""``python tests/torchrun_rank_error.py ARGS...``: ``transferlab ARGS`` where rank 1 alone meets bad input in its
first training epoch (rank 0 goes on into the epoch's collectives): what a rank-local fault (its own disk, its
own shard of images) does to a torchrun job. The job must still say why in one ``error:`` line.
"""

from __future__ import annotations

import os
import sys

from transferlab.engine import loop
from transferlab.errors import UserError

RANK_ONE_ERROR = "rank 1 met bad input in its shard"


def main() -> None:
    train_epoch = loop._train_epoch

    def failing(*args, **kwargs):
        if int(os.environ["RANK"]) == 1:
            raise UserError(RANK_ONE_ERROR)
        return train_epoch(*args, **kwargs)

    loop._train_epoch = failing
    sys.argv = ["transferlab", *sys.argv[1:]]
    from transferlab.cli.main import run

    run()


if __name__ == "__main__":
    main()
