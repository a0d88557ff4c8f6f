"""``transferlab auto``: a thin shell over ``transferlab.auto.run_auto``.

Defined at module level; ``cli.main`` registers ``COMMANDS`` (this module never imports it).
"""

from __future__ import annotations

import json
import sys

import click

from ..auto.config import AutoConfig
from .common import config_from, config_options, stage_progress


@click.command()
@click.option("--data", "-d", required=True, help=AutoConfig.__dataclass_fields__["data"].metadata["help"])
@config_options(AutoConfig, exclude=("folds",))
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (trail included) as JSON.")
def auto(no_cache: bool, as_json: bool, **options) -> None:
    """Rank candidates by LogME, probe the best, fine-tune the best probed ones with successive halving
    (Optuna), all within --budget; writes OUTPUT/trail.json, report.md, report.html and the winner bundle
    OUTPUT/winner. Workers started with the same arguments and --store share one search."""
    from ..data.builtin import require_data_folder

    config = config_from(AutoConfig, options, cache=not no_cache)
    require_data_folder(config.data)
    from ..auto.run import require_optuna, run_auto

    require_optuna()  # missing: one line before any feature is extracted
    with stage_progress(sys.stderr.isatty()) as hook:
        result = run_auto(config, hook)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    w = result.winner
    click.echo(f"study {result.study}: {len(result.trials)} trial(s); this worker stopped after "
               f"{result.elapsed_seconds:.1f}s of {result.budget_seconds:.0f}s ({result.stop_reason})")
    for t in result.trials:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        click.echo(f"  trial {t['number']:>3} {t['state']:8} {t['backbone']} freeze {t['freeze']} lr {t['lr']:.2g}: "
                   f"val {value} after {t['epochs']} epoch(s){'; ' + t['reason'] if t['reason'] else ''}")
    click.echo(f"winner: trial {w['trial']} {w['backbone']} (freeze {w['freeze']}, lr {w['lr']:.2g}): validation "
               f"accuracy {w['val_accuracy']:.4f}, test accuracy {w['test_accuracy']:.4f}; bundle {w['bundle']}")
    click.echo(f"trail: {result.output}/trail.json, report: {result.output}/report.md")


COMMANDS = (auto,)
