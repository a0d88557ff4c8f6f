"""Per-epoch checkpoints, so a killed run continues from its last completed epoch.

Written atomically (a kill mid-write leaves the previous checkpoint intact) and
read with ``torch.load(weights_only=True)``: no arbitrary unpickling.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..storage import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(folder: Path, state: dict) -> None:
    with atomic_path(folder / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)


def load_checkpoint(folder: Path, config_id: str) -> dict | None:
    path = folder / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(f"cannot read checkpoint {path}: delete it to start again") from None
    if state.get("config_id") != config_id:
        raise UserError(f"checkpoint {path} belongs to a run with other settings: use another --output or drop --resume")
    return state


def remove_checkpoint(folder: Path) -> None:
    (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
