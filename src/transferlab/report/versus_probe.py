"""Whether fine-tuning earned its cost: each fine-tune against the best probe of its backbone, image by image.

Fine-tuning costs many times a probe's time; its point is accuracy. A fine-tune a point or
two above the probe on a few hundred images may be no better at all, and one below it is
worse. So when a study has probe and fine-tune runs of the same backbone on the same test
set (same images, same classes: the rows of one test-set group of ``noise``), one sentence
per fine-tune says whether it beats the best probe of its backbone beyond noise (exact
McNemar, p < 0.05), is within noise of it, or is worse beyond noise.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..stats import NOISE_LEVEL, p_text
from .noise import compare, competing_groups, paired_correctness, same_test_set, tested_on
from .records import RunRecord


def finetune_vs_probe(rows: list[dict[str, Any]], records: list[RunRecord]) -> list[str]:
    """One sentence per fine-tune row that has a probe of its backbone on its test set."""
    competing, groups = competing_groups(rows, records)
    sets = [tested_on(g) for g in groups]
    sentences = []
    for test_set in competing:
        by_backbone: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"probe": [], "finetune": []})
        for i in test_set.members:
            kind = groups[i][0].kind
            if kind in ("probe", "finetune"):
                by_backbone[rows[i]["backbone"]][kind].append(i)
        for kinds in by_backbone.values():
            if not kinds["probe"]:
                continue
            probe = max(kinds["probe"], key=lambda i: rows[i]["accuracy_mean"])
            for i in kinds["finetune"]:
                comparison = compare(paired_correctness(groups[i]), paired_correctness(groups[probe]),
                                     same_test_set(sets[i], sets[probe]))
                sentences.append(_sentence(test_set.where, test_set.names[i], rows[i]["accuracy_mean"],
                                           test_set.names[probe], rows[probe]["accuracy_mean"], comparison))
    return sentences


def _sentence(where: str, finetune: str, finetune_accuracy: float, probe: str, probe_accuracy: float,
              comparison) -> str:
    lead = (f"{where}: the" if where else "The") + f" fine-tune {finetune} ({finetune_accuracy:.3f})"
    against = f"the probe {probe} ({probe_accuracy:.3f})"
    test = comparison.test
    if test is None:
        return f"{lead} was not compared with {against}: {comparison.reason}."
    how = f"McNemar exact, {p_text(test.p_value)} on {comparison.shared_text()}"
    if test.p_value >= NOISE_LEVEL:
        return f"{lead} is not better than {against}: the difference is within noise ({how})."
    if test.only_a > test.only_b:
        return f"{lead} beats {against} beyond noise ({how})."
    return f"{lead} is worse than {against} beyond noise ({how}): fine-tuning did not pay here."
