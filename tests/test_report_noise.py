"""The report says which differences are within noise: intervals on every accuracy, McNemar against the best."""

from __future__ import annotations

import csv

import pytest

from study_fixtures import CLASSES, probe_result
from transferlab.report import write_report
from transferlab.report.noise import add_uncertainty
from transferlab.report.records import RunRecord
from transferlab.report.tables import comparison_rows
from transferlab.stats import mean_interval, wilson_interval

IMAGES = 60


def _record(method: str, wrong: set[int], seed: int = 0, per_class: int = 8, images: str = "img",
            **axes) -> RunRecord:
    """A finished probe run on ``IMAGES`` test images, wrong on the images numbered in ``wrong``."""
    predictions = [{"path": f"/{images}/{i}.png", "true": CLASSES[i % 3],
                    "predicted": CLASSES[(i + 1) % 3] if i in wrong else CLASSES[i % 3]} for i in range(IMAGES)]
    accuracy = 1 - len(wrong) / IMAGES
    result = probe_result(accuracy, seed, per_class, test_images=IMAGES, predictions=predictions)
    return RunRecord(f"{method}-{per_class}-{seed}-{axes}", method, "probe", "efficientnet_lite0",
                     {"per_class": per_class, "seed": seed, **axes}, "done", result, {"seed": seed})


def _rows(records):
    rows = comparison_rows(records)
    return {r["method"]: r for r in rows}, add_uncertainty(rows, records)


def test_one_image_apart_is_indistinguishable_from_the_best():
    records = [_record("best", set(range(10))), _record("close", set(range(11)))]
    rows, sentences = _rows(records)
    assert rows["best"]["vs_best"] == "best"
    assert rows["close"]["within_noise"] is True and rows["close"]["p_vs_best"] == pytest.approx(1.0)
    assert sentences == ["At per_class=8: close / efficientnet_lite0 is indistinguishable from the best, "
                         "best / efficientnet_lite0 (McNemar exact, p >= 0.05 on 60 shared test images)."]


def test_many_images_apart_is_not_within_noise():
    records = [_record("best", set(range(5))), _record("far", set(range(25))), _record("close", set(range(6)))]
    rows, sentences = _rows(records)
    assert rows["far"]["within_noise"] is False and rows["far"]["p_vs_best"] < 0.001
    assert rows["far"]["vs_best"] == "p < 0.001, different"
    assert rows["close"]["within_noise"] is True
    assert sentences[0].startswith("At per_class=8: close / efficientnet_lite0 is indistinguishable from the best")
    assert "far" not in sentences[0]


def test_the_test_pairs_images_rather_than_comparing_accuracies():
    """55 vs 47 of 60 right: within noise for two unpaired samples (Fisher's exact p = 0.07), but when the
    worse method's mistakes include all of the best's, the 8 discordant images all favour the best (p = 0.008)."""
    nested = [_record("best", set(range(5))), _record("worse", set(range(13)))]
    assert _rows(nested)[0]["worse"]["within_noise"] is False
    assert _rows(nested)[0]["worse"]["p_vs_best"] == pytest.approx(2 / 2 ** 8)
    swapped = [_record("best", set(range(10))), _record("other", set(range(10, 20)))]  # 10 / 10 discordant
    assert _rows(swapped)[0]["other"]["within_noise"] is True


def test_runs_on_other_test_images_are_not_compared():
    records = [_record("best", set(range(5))), _record("elsewhere", set(range(6)), images="other")]
    rows, sentences = _rows(records)
    assert rows["elsewhere"]["within_noise"] is None and rows["best"]["within_noise"] is None
    assert rows["elsewhere"]["vs_best"] == rows["best"]["vs_best"] == "not compared: no other row has its test set"
    assert sentences == [f"At per_class=8: {name} / efficientnet_lite0 was not compared with any other row: no other "
                         "row has its test set." for name in ("best", "elsewhere")]


def test_only_runs_of_the_same_seed_pair_up():
    """Seeds draw other test splits: images pair only within a seed (here the same paths, other seeds)."""
    records = [_record("best", set(), seed=0), _record("best", set(), seed=1),
               _record("other", set(range(3)), seed=0), _record("other", set(range(3, 9)), seed=2)]
    rows, _ = _rows(records)
    assert rows["other"]["p_vs_best"] == pytest.approx(0.25)  # seed 0 only: 3 discordant images, 2 · 1/8


def test_pairs_over_several_seeds_are_counted_as_predictions():
    records = [_record("best", set(), seed=0), _record("best", set(), seed=1),
               _record("other", {1}, seed=0), _record("other", {2}, seed=1)]
    _, sentences = _rows(records)
    assert sentences[0].endswith("(McNemar exact, p >= 0.05 on 120 paired test predictions over 2 seeds).")


def test_each_setting_is_compared_with_its_own_best():
    records = [_record("a", set(range(2)), per_class=2), _record("b", set(range(30)), per_class=2),
               _record("a", set(range(30)), per_class=8), _record("b", set(range(2)), per_class=8)]
    rows = comparison_rows(records)
    sentences = add_uncertainty(rows, records)
    best = {r["setting"]: r["method"] for r in rows if r["vs_best"] == "best"}
    assert best == {"per_class=2": "a", "per_class=8": "b"}
    assert len(sentences) == 2


def test_a_methods_own_axis_competes_within_the_shared_setting():
    """A temperature method sweeps its own axis: its rows compete with the other methods at each per_class."""
    records = [_record("logreg", set(range(5))), _record("temp", set(range(6)), temperature=0.5),
               _record("temp", set(range(30)), temperature=4)]
    rows = comparison_rows(records)
    sentences = add_uncertainty(rows, records)
    assert [r["vs_best"].split(",")[-1].strip() for r in rows] == ["best", "within noise", "different"]
    assert sentences == ["At per_class=8: temp / efficientnet_lite0 [temperature=0.5] is indistinguishable from "
                         "the best, logreg / efficientnet_lite0 (McNemar exact, p >= 0.05 on 60 shared test images)."]


def test_intervals_wilson_for_one_run_t_for_several():
    one, _ = _rows([_record("one", set(range(6)))])
    assert (one["one"]["accuracy_low"], one["one"]["accuracy_high"]) == pytest.approx(wilson_interval(54, 60))
    seeds = [_record("many", set(range(n)), seed=n) for n in (3, 6, 9)]
    many, _ = _rows(seeds)
    summary = mean_interval([r.accuracy for r in seeds], bounds=(0.0, 1.0))
    assert (many["many"]["accuracy_low"], many["many"]["accuracy_high"]) == pytest.approx((summary.low, summary.high))
    assert many["many"]["interval"].endswith("(t, 3 runs)")
    agreeing = [_record("same", set(range(6)), seed=s) for s in (0, 1)]  # std 0: no zero-width interval
    same, _ = _rows(agreeing)
    assert (same["same"]["accuracy_low"], same["same"]["accuracy_high"]) == pytest.approx(wilson_interval(108, 120))
    assert same["same"]["interval"].endswith("(Wilson pooled, 2 runs)")


def test_report_shows_intervals_and_marks_noise(tmp_path):
    records = [_record("best", set(range(10))), _record("close", set(range(11))), _record("far", set(range(40)))]
    files = write_report(records, tmp_path / "out", images=False)
    html = files["html"].read_text()
    assert 'class="noise"' in html and "close / efficientnet_lite0 is indistinguishable from the best" in html
    low, high = wilson_interval(50, 60)
    assert html.count(f'<td class="col-interval">[{low:.3f}, {high:.3f}]</td>') == 2  # comparison and run rows
    with open(files["comparison_csv"]) as f:
        noise = {r["method"]: r["within_noise"] for r in csv.DictReader(f)}
    assert noise == {"best": "", "close": "True", "far": "False"}
    with open(files["runs_csv"]) as f:
        assert all(r["interval"].startswith("[") for r in csv.DictReader(f))
    assert "indistinguishable from the best" in files["markdown"].read_text()


def test_stored_results_without_intervals_get_them_from_their_predictions():
    record = _record("old", set(range(6)))
    record.result.accuracy_interval = []  # as results stored before intervals were
    assert record.result.interval() == pytest.approx(wilson_interval(54, 60))


def test_accuracy_plot_bars_are_the_intervals():
    from transferlab.report.curves import accuracy_vs_axis

    records = [_record("m", set(range(20)), per_class=2), _record("m", set(range(5)), per_class=8)]
    figure = accuracy_vs_axis(records, "per_class")
    bars = [segment for collection in figure.axes[0].collections for segment in collection.get_segments()]
    spans = sorted((float(s[0][1]), float(s[1][1])) for s in bars)
    assert spans == [pytest.approx(wilson_interval(40, 60)), pytest.approx(wilson_interval(55, 60))]


def _finetune(method: str, wrong: set[int], seed: int = 0, classes: list[str] = CLASSES) -> RunRecord:
    """A finished fine-tune run on the same ``IMAGES`` test images as ``_record``'s probes."""
    from study_fixtures import finetune_result

    predictions = [{"path": f"/img/{i}.png", "true": classes[i % 3],
                    "predicted": classes[(i + 1) % 3] if i in wrong else classes[i % 3]} for i in range(IMAGES)]
    result = finetune_result(1 - len(wrong) / IMAGES, seed, 8, test_images=IMAGES, predictions=predictions,
                             classes=classes)
    return RunRecord(f"{method}-{seed}", method, "finetune", "efficientnet_lite0", {"per_class": 8, "seed": seed},
                     "done", result, {"seed": seed})


def _versus(records):
    from transferlab.report.versus_probe import finetune_vs_probe

    rows = comparison_rows(records)
    add_uncertainty(rows, records)
    return finetune_vs_probe(rows, records)


def test_a_fine_tune_that_beats_the_probe_beyond_noise_is_said_to():
    sentences = _versus([_record("logreg", set(range(20))), _finetune("two-stage", set(range(5)))])
    assert sentences == ["At per_class=8: the fine-tune two-stage / efficientnet_lite0 (0.917) beats the probe "
                         "logreg / efficientnet_lite0 (0.667) beyond noise (McNemar exact, p < 0.001 on 60 shared "
                         "test images)."]


def test_a_fine_tune_a_little_above_the_probe_is_not_better():
    """Two images more right of 60 is no evidence: the sentence must not let a reader conclude fine-tuning won."""
    sentences = _versus([_record("logreg", set(range(12))), _finetune("two-stage", set(range(10)))])
    assert sentences == ["At per_class=8: the fine-tune two-stage / efficientnet_lite0 (0.833) is not better than the "
                         "probe logreg / efficientnet_lite0 (0.800): the difference is within noise (McNemar exact, "
                         "p = 0.500 on 60 shared test images)."]


def test_a_fine_tune_below_the_probe_beyond_noise_is_worse():
    sentences = _versus([_record("logreg", set(range(4))), _record("knn", set(range(30))),
                         _finetune("two-stage", set(range(20)))])
    assert len(sentences) == 1 and "is worse than the probe logreg / efficientnet_lite0 (0.933) beyond noise" \
        in sentences[0], sentences  # against the best probe of the backbone, not the worst


def test_a_fine_tune_on_other_classes_is_not_set_against_the_probe():
    other = ["ant", "bee", "moth"]
    assert _versus([_record("logreg", set(range(20))), _finetune("two-stage", set(range(5)), classes=other)]) == []
