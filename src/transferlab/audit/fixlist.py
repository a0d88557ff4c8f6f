"""The ``--fix`` list file: the audited images with suspected label issues relabelled to the suggested class
and exact duplicates (the same file, or the same picture saved twice: equal pHashes, cosine >= 0.999) dropped, in the list-file format ``--data`` reads."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..storage import atomic_write_text
from .run import AuditResult


def fixed_rows(result: AuditResult) -> list[tuple[str, str, str]]:
    """(path, label, split) of every image to keep: a duplicate's second copy goes (the training copy stays
    when the pair spans splits), a suspected label issue takes its suggested class."""
    relabel = {issue.index: issue.suggested for issue in result.label_issues}
    dropped = set()
    for pair in result.duplicates:
        if pair.exact and pair.first not in dropped:
            first_train = result.splits[pair.first] == "train"
            dropped.add(pair.second if first_train or result.splits[pair.second] != "train" else pair.first)
    return [(path, result.classes[relabel.get(i, label)], split)
            for i, (path, label, split) in enumerate(zip(result.paths, result.labels, result.splits))
            if i not in dropped]


def write_fix_list(result: AuditResult, target: Path) -> int:
    """Write the fixed list to ``target`` (absolute paths); the number of rows written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if target.suffix.lower() == ".tsv" else ",", lineterminator="\n")
    writer.writerow(("path", "label", "split"))
    rows = fixed_rows(result)
    writer.writerows((str(Path(p).resolve()), label, split) for p, label, split in rows)
    atomic_write_text(target, buffer.getvalue())
    return len(rows)
