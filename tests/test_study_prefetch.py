"""``study run --jobs N``: the workers extract the probe runs' shared features together before claiming runs."""

from __future__ import annotations

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.study import RunStore, load_study, plan_study, run_study
from transferlab.study.prefetch import prefetch_share, shared_extractions


def study(tmp_path):
    make_image_folder(tmp_path / "data", per_class=10)
    path = write_study(tmp_path, f"""
        name: prefetch
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8}}
        methods:
          - {{name: logreg, kind: probe, head: logreg}}
          - {{name: linear, kind: probe, head: linear, head_epochs: 3}}
        sweep:
          per_class: [3, 6]
        """)
    return plan_study(load_study(path))


def test_the_workers_shares_cover_every_image_of_the_pending_runs_once(tmp_path):
    plan = study(tmp_path)
    pending = {run.run_id for run in plan.runs}
    (config, paths), = shared_extractions(plan, pending).values()  # one backbone and layer: one extraction
    assert len(paths) == len(set(paths))
    assert prefetch_share(plan, pending, 0, 2) + prefetch_share(plan, pending, 1, 2) == len(paths)


def test_after_the_shares_no_run_computes_a_feature(tmp_path):
    plan = study(tmp_path)
    pending = {run.run_id for run in plan.runs}
    for index in range(2):
        prefetch_share(plan, pending, index, 2)
    with RunStore(tmp_path / "runs.sqlite") as store:
        assert run_study(plan, store).count("done") == len(plan.runs)
        results = [store.get(run.run_id).result for run in plan.runs]
    assert all(r.features_computed == 0 and r.features_from_cache > 0 for r in results)


def test_finished_runs_need_nothing_extracted(tmp_path):
    plan = study(tmp_path)
    assert shared_extractions(plan, set()) == {}
