"""Progress bars for the Python calls (``probe``, ``finetune``, a study): tqdm's, which draw as widgets in a
notebook and as text on stderr elsewhere (``tqdm.auto``).

The calls take the same ``(stage, done, total)`` hook the command line draws with rich; ``progress=True``
gives them one tqdm bar per stage, ``False`` (or None) none, and a function of your own is used as it is.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)


@contextlib.contextmanager
def stage_bars(progress: bool | StageProgress | None) -> Iterator[StageProgress | None]:
    """The hook ``progress`` asks for: tqdm bars (True), none (False/None), or the caller's own function."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}

    def hook(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for earlier in bars.values():  # a new stage: the earlier ones are over
                earlier.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, leave=False, dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield hook
    finally:
        for bar in bars.values():
            bar.close()
