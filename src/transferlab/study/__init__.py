"""Studies: a YAML file of data, backbones, methods and sweep axes, run into a SQLite store.

``load_study`` reads and checks the file, ``plan_study`` expands it into runs,
``run_study`` runs what is not finished yet, ``RunStore`` holds every result.
"""

from .plan import PlannedRun, StudyPlan, plan_study
from .runner import RunEvent, RunOutcome, StudyOutcome, run_study
from .spec import StudySpec, load_study, parse_study
from .store import RunRow, RunStore, default_store_path

__all__ = [
    "PlannedRun",
    "RunEvent",
    "RunOutcome",
    "RunRow",
    "RunStore",
    "StudyOutcome",
    "StudyPlan",
    "StudySpec",
    "default_store_path",
    "load_study",
    "parse_study",
    "plan_study",
    "run_study",
]
