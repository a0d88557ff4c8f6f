"""CLI commands that answer before training: rank (which candidate will transfer) and audit (is the data clean).

Defined at module level; ``cli.main`` registers ``COMMANDS`` (this module never imports it).
"""

from __future__ import annotations

import json
import sys

import click

from ..rank.config import AuditConfig, RankConfig
from .common import config_from, config_options, stage_progress


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.command()
@click.option("--data", "-d", required=True, help=RankConfig.__dataclass_fields__["data"].metadata["help"])
@config_options(RankConfig, exclude=("folds",))
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def rank(no_cache: bool, as_json: bool, **options) -> None:
    """Score candidates (backbone x feature layer x pooling) by LogME, LEEP/NCE, kNN and logreg accuracy."""
    from ..data.builtin import require_data_folder

    config = config_from(RankConfig, options, cache=not no_cache)
    require_data_folder(config.data)
    from ..rank.run import SCORES, run_rank

    with stage_progress(sys.stderr.isatty()) as hook:
        result = run_rank(config, hook)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("backbone", "layer", "pool", "dim", "LogME", "LEEP", "NCE", "kNN acc", "logreg acc", "s LogME",
                  "s kNN", "s logreg", "s total",
                  title=f"rank: {len(result.candidates)} candidates, {result.train_images} training and "
                        f"{result.val_images} validation images, sorted by LogME", title_justify="left")
    for c in result.candidates:
        s = c.seconds
        table.add_row(c.backbone, c.layer, c.pooling, str(c.dim), _fmt(c.logme), _fmt(c.leep), _fmt(c.nce),
                      _fmt(c.knn_accuracy), _fmt(c.logreg_accuracy), _fmt(s.get("logme"), 3),
                      _fmt(s.get("knn_accuracy"), 3), _fmt(s.get("logreg_accuracy"), 3), _fmt(c.total_seconds, 3))
    Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
    click.echo(f"feature extraction {result.extraction_seconds:.1f}s; LogME over all candidates "
               f"{result.seconds_of('logme'):.3f}s, logreg probes {result.seconds_of('logreg_accuracy'):.3f}s")
    for score in SCORES[:-1]:
        tau = result.kendall_tau(score)
        if tau is not None:
            click.echo(f"Kendall tau ({score} vs logreg accuracy): {tau:.3f}")
    for note in result.notes:
        click.echo(f"note: {note}")


@click.command()
@click.option("--data", "-d", required=True, help=AuditConfig.__dataclass_fields__["data"].metadata["help"])
@config_options(AuditConfig, short={"backbone": "-b"}, types={"html": click.Path(dir_okay=False),
                                                               "fix": click.Path(dir_okay=False)})
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit(no_cache: bool, as_json: bool, **options) -> None:
    """Label issues (confident learning), near-duplicates within and across splits, and class overlap."""
    from pathlib import Path

    from ..data.builtin import require_data_folder

    config = config_from(AuditConfig, options, cache=not no_cache)
    require_data_folder(config.data)
    from ..audit.duplicates import perceptual_hashes

    perceptual_hashes([])  # imagehash missing: say so before the features are extracted
    from ..audit.fixlist import write_fix_list
    from ..audit.page import write_audit_page
    from ..audit.run import run_audit

    with stage_progress(sys.stderr.isatty()) as hook:
        result = run_audit(config, hook)
    if config.html:
        write_audit_page(result, Path(config.html))
    written = write_fix_list(result, Path(config.fix)) if config.fix else None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 160)
    click.echo(f"audit of {result.data}: {len(result.paths)} images, out-of-fold probe accuracy "
               f"{result.out_of_fold_accuracy:.4f}")
    issues = Table("path", "split", "given", "suggested", "self-confidence",
                   title=f"{len(result.label_issues)} suspected label issue(s)", title_justify="left")
    for row in result.issue_rows():
        issues.add_row(row["path"], row["split"], row["given"], row["suggested"], f"{row['self_confidence']:.3f}")
    console.print(issues)
    pairs = Table("first", "second", "splits", "cosine", "hash bits", title=f"{len(result.duplicates)} "
                  "near-duplicate pair(s)", title_justify="left")
    for row in result.duplicate_rows():
        pairs.add_row(row["first"], row["second"], " / ".join(row["splits"]), f"{row['cosine']:.3f}",
                      str(row["hash_distance"]) + (" (same file)" if row["exact"] else ""))
    console.print(pairs)
    leaks = sum(1 for row in result.duplicate_rows() if row["cross_split"])
    if leaks:
        click.echo(f"warning: {leaks} near-duplicate pair(s) span splits (e.g. a test image with a copy in "
                   "training): test accuracy is inflated")
    for pair in result.overlap:
        click.echo(f"class overlap: {' / '.join(pair['classes'])}: {pair['confused']} confused "
                   f"({pair['share']:.1%} of their images)")
    if config.html:
        click.echo(f"suspects page: {config.html}")
    if written is not None:
        click.echo(f"fixed list ({written} images): {config.fix}")
    for note in result.notes:
        click.echo(f"note: {note}")


COMMANDS = (rank, audit)
