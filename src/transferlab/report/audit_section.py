"""The report's "data audit" section: what ``transferlab audit`` found in the study's data (label issues,
near-duplicate pairs, test images with a copy in training), so accuracies are read knowing whether the data can
be trusted."""

from __future__ import annotations

from typing import Any

from .html import Page
from .tables import markdown, markdown_text

ISSUE_COLUMNS = [("path", "image"), ("split", "split"), ("given", "given label"), ("suggested", "suggested"),
                 ("self_confidence", "self-confidence")]
PAIR_COLUMNS = [("test", "test image"), ("training", "training copy"), ("cosine", "feature cosine"),
                ("hash_distance", "hash bits")]
SHOWN = 10


def audit_summary(result, backbone: str) -> dict[str, Any]:
    """The counts and the first rows the section shows, from an ``AuditResult``."""
    pairs = result.duplicate_rows()
    leaks = []
    for row in pairs:
        if sorted(row["splits"]) == ["test", "train"]:
            test, training = (row["first"], row["second"]) if row["splits"][0] == "test" else (row["second"], row["first"])
            leaks.append({"test": test, "training": training, "cosine": row["cosine"],
                          "hash_distance": row["hash_distance"]})
    issues = result.issue_rows()
    return {"data": result.data, "backbone": backbone, "images": len(result.paths),
            "out_of_fold_accuracy": result.out_of_fold_accuracy, "label_issues": len(issues),
            "issue_rows": issues[:SHOWN], "duplicate_pairs": len(pairs),
            "cross_split_pairs": sum(1 for row in pairs if row["cross_split"]), "train_test_pairs": len(leaks),
            "test_images_with_training_copy": len({row["test"] for row in leaks}), "leak_rows": leaks[:SHOWN],
            "overlap": result.overlap}


def leak_warning(summary: dict[str, Any]) -> str | None:
    n = summary["test_images_with_training_copy"]
    if not n:
        return None
    return (f"Warning: {n} test image{'s have' if n != 1 else ' has'} a near-duplicate in training: the test "
            "accuracies of this report are "
            "inflated (remove or move the copies, e.g. with `transferlab audit --fix`).")


def _sentences(summary: dict[str, Any]) -> list[str]:
    return [f"`transferlab audit` of {summary['data']} ({summary['images']} images, {summary['backbone']} features, "
            f"out-of-fold logreg accuracy {summary['out_of_fold_accuracy']:.3f}): {summary['label_issues']} suspected "
            f"label issue(s) (confident learning), {summary['duplicate_pairs']} near-duplicate pair(s), "
            f"{summary['cross_split_pairs']} of them across splits and {summary['train_test_pairs']} between training "
            "and test."]


def audit_markdown(summary: dict[str, Any]) -> str:
    parts = ["## Data audit\n"]
    warning = leak_warning(summary)
    if warning:
        parts.append(f"**{markdown_text(warning)}**\n")
    parts.append(markdown_text(_sentences(summary)[0]) + "\n")
    if summary["leak_rows"]:
        parts += ["Test images with a copy in training:\n", markdown(_formatted(summary["leak_rows"]), PAIR_COLUMNS)]
    if summary["issue_rows"]:
        parts += ["\nSuspected label issues (lowest self-confidence first):\n",
                  markdown(_formatted(summary["issue_rows"]), ISSUE_COLUMNS)]
    return "\n".join(parts) + "\n"


def audit_html(page: Page, summary: dict[str, Any]) -> None:
    page.heading("Data audit", "data-audit")
    warning = leak_warning(summary)
    if warning:
        page.paragraph(warning, "warning")
    page.paragraph(_sentences(summary)[0], "note")
    if summary["leak_rows"]:
        page.table(_formatted(summary["leak_rows"]), PAIR_COLUMNS, "audit-leaks")
    if summary["issue_rows"]:
        page.table(_formatted(summary["issue_rows"]), ISSUE_COLUMNS, "audit-label-issues")


def _formatted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
