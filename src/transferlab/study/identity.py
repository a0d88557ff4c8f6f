"""A run's identity: a stable hash of everything that decides its result.

Two runs with the same identity are the same experiment, so a finished one is
skipped on a rerun and a failed one retried. Fields that only change speed or
where files go (workers, cache use, output folder, resume) are left out.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ..storage import text_digest

NOT_IDENTITY = ("num_workers", "cache", "output", "resume")


def identity_fields(config: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in NOT_IDENTITY}


def run_id(runner: str, config: Any) -> str:
    """16 hex digits of SHA-256 over the runner kind and the config's identity fields."""
    payload = json.dumps({"runner": runner, "config": identity_fields(config)}, sort_keys=True, default=str)
    return text_digest(payload)[:16]
