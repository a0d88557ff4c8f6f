"""The comparison table's cost and fit columns: whole training time with its frozen part, whole-test-set
inference, test loss and final train / validation accuracy, read from the result records."""

from __future__ import annotations

from study_fixtures import finetune_result, probe_result
from transferlab.finetune.result import FinetuneResult
from transferlab.report.records import RunRecord
from transferlab.report.tables import COMPARISON_COLUMNS, comparison_rows, markdown, markdown_text


def record(result, run_id: str, method: str) -> RunRecord:
    return RunRecord(run_id, method, "finetune", "efficientnet_lite0", {"seed": result.config["seed"]}, "done",
                     result, result.config)


def test_comparison_rows_show_total_training_with_the_cached_part_and_test_set_inference():
    runs = [record(finetune_result(seed=s, training_seconds=4.0 + s, prefix_cache_seconds=3.0, test_seconds=0.5 + s,
                                   test_loss=0.4, train_accuracy_final=0.9, val_accuracy_final=0.7), f"f{s}", "ft")
            for s in (0, 1)]
    runs.append(record(probe_result(training_seconds=2.5, train_features_seconds=2.0, test_seconds=0.25,
                                    test_loss=None, train_accuracy_final=1.0), "p0", "logreg"))
    rows = {r["method"]: r for r in comparison_rows(runs)}

    assert rows["ft"]["training_total"] == "4.50 s (frozen part 3.00 s)"  # the mean of 4 and 5 s
    assert rows["ft"]["test_seconds"] == "1.00" and rows["ft"]["test_loss"] == "0.400"
    assert rows["ft"]["final_accuracy"] == "0.900 / 0.700"
    assert rows["logreg"]["training_total"] == "2.50 s (frozen part 2.00 s)"
    assert rows["logreg"]["test_loss"] == "" and rows["logreg"]["final_accuracy"] == "1.000 / -"
    table = markdown(list(rows.values()), COMPARISON_COLUMNS)
    assert markdown_text("training total s (frozen part)") in table and "test set inference s" in table


def test_results_stored_before_these_fields_still_read():
    old = {k: v for k, v in finetune_result().__dict__.items()
           if k not in ("prefix_cache_seconds", "test_loss", "test_seconds", "train_accuracy_final",
                        "val_accuracy_final")}
    result = FinetuneResult.from_dict(old)
    assert result.test_seconds is None and result.prefix_cache_seconds == 0.0
    assert comparison_rows([record(result, "old", "ft")])[0]["test_seconds"] == ""


def test_the_comparison_csv_carries_the_training_and_test_costs_as_numbers(tmp_path):
    import csv

    from transferlab.report import write_report

    runs = [record(finetune_result(seed=s, training_seconds=4.0 + s, prefix_cache_seconds=3.0, test_seconds=1.0,
                                   test_loss=0.4), f"f{s}", "ft") for s in (0, 1)]
    files = write_report(runs, tmp_path / "report", images=False)
    with open(files["comparison_csv"], newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["training_seconds"]) == 4.5 and float(row["frozen_seconds"]) == 3.0
    assert float(row["test_seconds_mean"]) == 1.0 and row["test_loss"] == "0.400"
