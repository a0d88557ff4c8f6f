"""Studies: a YAML file of data, backbones, methods and sweep axes, run into a store (SQLite or PostgreSQL).

``load_study`` reads and checks the file, ``plan_study`` expands it into runs,
``run_study`` runs what is not finished yet, ``RunStore`` holds every result.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "PlannedRun": "plan",
    "StudyPlan": "plan",
    "plan_study": "plan",
    "RunEvent": "runner",
    "RunOutcome": "runner",
    "StudyOutcome": "runner",
    "run_study": "runner",
    "run_study_file": "runner",
    "StudySpec": "spec",
    "load_study": "spec",
    "parse_study": "spec",
    "RESULT_SCHEMA": "store",
    "RunRow": "store",
    "RunStore": "store",
    "default_store_path": "store",
    "data_fingerprint": "identity",
    "run_id": "identity",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
