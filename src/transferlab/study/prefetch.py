"""Features shared by a study's probe runs, extracted once by all ``--jobs`` workers together.

The probe runs of a study usually read the same images through the same frozen
backbone (per-class sizes and seeds are subsets of one dataset), so after the first
run every other one reads the feature cache. With N workers, each one would start by
extracting all of those features at once, N times over. Instead each worker first
extracts its share (every N-th image) of the features the unfinished probe runs need
into the one cache, then claims runs as usual: the extraction is done once, split
over the workers.
"""

from __future__ import annotations

from .plan import StudyPlan


def shared_extractions(plan: StudyPlan, pending: set[str]) -> dict[tuple, tuple]:
    """{extraction key: (a probe config with that key, every image the pending runs with that key read)}."""
    from ..probing.run import extraction_key, probe_parts

    found: dict[tuple, tuple] = {}
    for run in plan.runs:
        if run.runner != "probe" or run.run_id not in pending or not run.config.cache:
            continue
        first, paths = found.setdefault(extraction_key(run.config), (run.config, {}))
        _, parts = probe_parts(run.config)
        paths.update(dict.fromkeys(s.path for samples in parts.values() for s in samples))  # ordered, unique
    return {key: (config, sorted(paths, key=str)) for key, (config, paths) in found.items()}


def prefetch_share(plan: StudyPlan, pending: set[str], index: int, jobs: int) -> int:
    """Extract worker ``index``'s share (every ``jobs``-th image) of the pending probe runs' features into the
    cache; the number of images it went through."""
    from ..options import runtime_of
    from ..probing.run import feature_extractor

    done = 0
    for config, paths in shared_extractions(plan, pending).values():
        mine = paths[index::jobs]
        if mine:
            feature_extractor(config, runtime_of(config)).extract(mine)
            done += len(mine)
    return done
