"""``transferlab study run|report`` and ``transferlab runs``: thin shells over the study API.

Defined at module level; ``cli.main`` registers ``COMMANDS`` (this module never imports it).
"""

from __future__ import annotations

import json
import sys

import click

from ..options import LogOptions
from .common import config_from, config_options, parse_list, stage_progress, stderr

store_option = click.option("--store", metavar="PATH|URL",
                            help="Run store: a SQLite file, sqlite:///PATH or postgresql://user@host:port/db. "
                                 "Default: $TRANSFERLAB_STORE, else the study's 'store:', else "
                                 "./transferlab-runs.sqlite.")
data_option = click.option("--data", "-d", help="Image folder to use instead of the study's 'data:'.")


def open_store(store: str | None, spec=None, reading: bool = False, maintaining: bool = False):
    """The run store named by ``--store``, the environment or the study. Only ``study run`` creates one: a
    reading command opens it read-only, a maintenance one (``runs --release-stale``) writable, and neither
    makes a store that is not there."""
    from ..study.store import RunStore, study_store_location

    return RunStore(study_store_location(store, spec), create=not (reading or maintaining), read_only=reading)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@click.group()
def study() -> None:
    """Run a study file (methods x backbones x sweep axes) and report on it."""


@study.command("run")
@click.argument("study_file", type=click.Path(dir_okay=False))
@data_option
@store_option
@click.option("--dry-run", is_flag=True, help="List the runs and whether they are done; run nothing.")
@click.option("--jobs", "-j", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Runs at once on this machine: worker processes sharing the cores (threads = cores // N) "
                   "or, with GPUs, one GPU each, round-robin.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="At the end, wait for runs that other workers hold (and take over those whose worker died).")
@config_options(LogOptions)
def study_run(study_file, data, store, dry_run, jobs, wait, **log_options):
    """Run every combination in STUDY_FILE that is not finished yet (failed runs are retried).

    Several `study run`s on one store (here, or on other machines with a postgresql:// store) share the work:
    each claims a run before starting it and keeps the claim alive with a heartbeat.
    """
    from ..study.plan import plan_study
    from ..study.runner import Terminated, stop_on_sigterm
    from ..study.spec import load_study

    spec = load_study(study_file)
    plan = logged_plan(plan_study(spec, data), config_from(LogOptions, log_options))
    for note in plan.notes:
        stderr.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    try:
        with stop_on_sigterm():
            _run_plan(spec, plan, store, dry_run, jobs, wait)
    except Terminated as exc:
        run = getattr(exc, "run", None)
        what = (f": run {run.run_id} ({run.label()}) marked failed, a rerun redoes it" if run is not None
                else ": the runs in hand are marked failed, a rerun redoes them" if jobs > 1 else "")
        stderr.print(f"error: terminated (SIGTERM){what}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(143)


def logged_plan(plan, logging):
    """The plan whose every run logs as ``--log`` asks (the store still records them all); a missing
    package or a log folder that cannot be written stops here, before any run."""
    from dataclasses import replace

    from ..tracking import check_backends, check_log_dir, require_backends

    backends = check_backends(logging.log)
    if not backends:
        return plan
    require_backends(backends)
    check_log_dir(backends, logging.log_dir)
    fields = {"log": backends, "log_dir": logging.log_dir, "log_experiment": logging.log_experiment}
    return replace(plan, runs=[replace(run, config=replace(run.config, **fields)) if hasattr(run.config, "log")
                               else run for run in plan.runs])  # a rank method's runs log nothing


def _list_plan(plan, store, spec) -> None:
    """``--dry-run``: every planned run with its stored status, read-only (no store is created for it)."""
    from ..study.store_backends import MissingStore

    try:
        runs_store = open_store(store, spec, reading=True)
    except MissingStore:
        runs_store = None  # nothing has run yet: every run is new
    try:
        for run in plan.runs:
            status = runs_store.status(run.run_id) if runs_store is not None else None
            click.echo(f"{run.run_id}  {status or 'new':8}  {run.label()}")
    finally:
        if runs_store is not None:
            runs_store.close()


def _run_plan(spec, plan, store, dry_run, jobs, wait):
    from ..study.runner import RunEvent, run_study

    if dry_run:
        _list_plan(plan, store, spec)
        return
    with open_store(store, spec) as runs_store:
        done_before = sum(1 for r in plan.runs if runs_store.status(r.run_id) == "done")
        workers = f", {jobs} workers" if jobs > 1 else ""
        stderr.print(f"study {spec.name}: {len(plan.runs)} runs, {done_before} already done, "
                     f"store {runs_store.shown}{workers}", markup=False, highlight=False, soft_wrap=True)

        def report(event: RunEvent, worker: int | None = None) -> None:
            o = event.outcome
            what = f"accuracy {o.accuracy:.4f}" if o.status == "done" and o.accuracy is not None else o.status
            if o.status == "failed":
                what = f"FAILED: {o.error}"
            if o.status == "elsewhere":
                what = "finished by another worker"
            left = f", about {_duration(event.seconds_left)} left" if event.seconds_left is not None and event.index < event.total else ""
            by = f" [worker {worker + 1}]" if worker is not None else ""
            stderr.print(f"[{event.index}/{event.total}] {o.run.label()}: {what} ({o.seconds:.1f} s{left}){by}",
                         markup=False, highlight=False, soft_wrap=True)

        if jobs > 1:
            from ..study.runner import RunOutcome
            from ..study.workers import run_workers

            outcome = run_workers(plan, runs_store.location, jobs, report, len(plan.runs) - done_before, wait)
            done_ids = {o.run.run_id for o in outcome.outcomes}
            outcome.outcomes += [RunOutcome(r, "skipped") for r in plan.runs
                                 if r.run_id not in done_ids and runs_store.status(r.run_id) == "done"]
        else:
            with stage_progress(sys.stderr.isatty()) as hook:
                outcome = run_study(plan, runs_store, hook, report, wait=wait)
    done, skipped, failed = outcome.count("done"), outcome.count("skipped"), outcome.count("failed")
    elsewhere = outcome.count("elsewhere") + outcome.count("lost")
    click.echo(f"study {spec.name}: {done} run, {skipped} already done, {failed} failed, "
               f"{outcome.count('busy')} busy in another process"
               + (f", {elsewhere} finished by another worker" if elsewhere else ""))
    if failed:
        for o in outcome.failed:
            click.echo(f"failed {o.run.run_id} {o.run.label()}: {o.error}")
        sys.exit(1)


@study.command("report")
@click.argument("study_file", required=False, type=click.Path(dir_okay=False))
@click.option("--runs", "run_ids", help="Report these stored runs (comma-separated ids or id prefixes) instead of a study.")
@data_option
@store_option
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Report folder (default: the study's 'report:', else reports/<study name>).")
@click.option("--images/--no-images", default=True, show_default=True, help="Filter/activation and misclassified-image figures (they read images and a backbone).")
@click.option("--new-images", type=click.Path(), help="A folder of outside images that every saved model classifies (default: the study's 'new_images:').")
@click.option("--audit", "audit_backbone", metavar="BACKBONE", is_flag=False, flag_value="efficientnet_lite0",
              help="Add a 'data audit' section: `transferlab audit` of the study's data (its runs' splits) with "
                   "BACKBONE's features (--audit alone: efficientnet_lite0): label issues, near-duplicate pairs, and "
                   "a warning when test images have near-duplicates in training.")
def study_report(study_file, run_ids, data, store, out, images, new_images, audit_backbone):
    """Write an HTML report (plus Markdown and CSV tables) of a study's stored runs."""
    from pathlib import Path

    from ..errors import UserError
    from ..pathkinds import wrong_kind
    from ..report import write_report
    from ..report.records import records_for_ids, records_for_plan

    if not study_file and not run_ids:
        raise UserError("give a study file or --runs ID[,ID...]")
    spec, notes = None, []
    if study_file:
        from ..study.plan import plan_study
        from ..study.spec import load_study

        spec = load_study(study_file)
    with open_store(store, spec, reading=True) as runs_store:
        if run_ids:
            records = records_for_ids(runs_store, parse_list(run_ids) or [])
            title = spec.name if spec else "selected runs"
        else:
            plan = plan_study(spec, data)
            records = records_for_plan(runs_store, plan)
            title = spec.name
            notes = plan.notes
    if out is None:
        out = str(spec.relative(spec.report)) if spec is not None and spec.report else str(Path("reports") / title.replace("/", "_").replace(" ", "_"))
    if new_images is None and spec is not None and spec.new_images:
        new_images = str(spec.relative(spec.new_images))
    if new_images is not None and not Path(new_images).is_dir():
        raise wrong_kind(new_images, "new-images folder", "a folder")
    audit = _audit_of(records, audit_backbone) if audit_backbone else None
    rank_scores = {m.name: m.scores for m in spec.methods if m.scores} if spec is not None else None
    files = write_report(records, Path(out), title=title, description=spec.description if spec else "",
                         images=images, notes=notes, new_images=Path(new_images) if new_images else None, audit=audit,
                         rank_scores=rank_scores)
    for path in files.values():
        click.echo(path)


def _audit_of(records, backbone: str) -> dict:
    """The audit summary of the data the study's first run used, split as its runs split it."""
    from ..audit.run import run_audit
    from ..errors import UserError
    from ..rank.config import AuditConfig
    from ..report.audit_section import audit_summary

    configs = [r.config for r in records if r.config.get("data")]
    if not configs:
        raise UserError("--audit: the report has no run whose data could be audited")
    fields = ("data", "seed", "per_class", "classes", "num_classes", "ratios", "val_per_class", "test_per_class")
    config = AuditConfig(backbone=backbone, **{k: configs[0][k] for k in fields if k in configs[0]})
    return audit_summary(run_audit(config), backbone)


@click.command("runs")
@store_option
@click.option("--study", help="Only runs of this study name.")
@click.option("--method", help="Only runs of this method name.")
@click.option("--backbone", "-b", help="Only runs on this backbone.")
@click.option("--status", type=click.Choice(["done", "failed", "running", "stale"]),
              help="Only runs with this status (stale: running, but its worker died or stopped its heartbeat).")
@click.option("--id", "id_prefix", help="Only runs whose id starts with this.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs (config, result, environment) as JSON.")
@click.option("--release-stale", is_flag=True,
              help="Mark the stale claims (among the runs selected) failed, so the next `study run` redoes them.")
def runs(store, study, method, backbone, status, id_prefix, as_json, release_stale):
    """List the runs recorded in the store (a running run whose worker is gone shows as stale)."""
    from rich.console import Console
    from rich.table import Table

    from ..study.axes import setting_text

    with open_store(store, reading=not release_stale, maintaining=release_stale) as runs_store:
        rows = runs_store.runs(study=study, method=method, backbone=backbone, status=status, id_prefix=id_prefix)
        path = runs_store.shown
        if release_stale:
            released = runs_store.release_stale([r.id for r in rows if r.stale])
            for r in released:
                click.echo(f"released {r.id} ({r.method} / {r.backbone}): stale claim by {r.host} pid {r.pid}")
            click.echo(f"released {len(released)} stale claim(s) in {path}")
            return
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps([asdict(r) for r in rows], indent=2, default=str))
        return
    table = Table("id", "study", "method", "backbone", "axes", "status", "accuracy", "seconds", "finished", "worker",
                  title=f"{len(rows)} run(s) in {path}", title_justify="left")
    for r in rows:
        axes = setting_text(r.axes)
        accuracy = f"{r.accuracy:.4f}" if r.accuracy is not None else (r.error or "")[:60]
        worker = f"{r.host} pid {r.pid}" if r.status == "running" else ""
        table.add_row(r.id, r.study or "", r.method or "", r.backbone or "", axes, "stale" if r.stale else r.status,
                      accuracy, f"{r.seconds:.1f}" if r.seconds is not None else "", r.finished_at or "", worker)
    if any(r.stale for r in rows):
        table.caption = "stale: its worker died or stopped its heartbeat; `transferlab runs --release-stale` frees it"
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


COMMANDS = (study, runs)
