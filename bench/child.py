"""One measurement in its own process: ``child.py MODULE:FUNCTION JSON_KWARGS`` (used by ``bench/common.py``)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import child_main  # noqa: E402

if __name__ == "__main__":
    child_main(sys.argv[1:])
