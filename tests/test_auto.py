"""``transferlab auto``: a budgeted search (LogME, probes, successive halving of fine-tuning trials) through the
real command, on tiny data with timm's test models."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import make_class_folders
from wiring import wires

pytest.importorskip("optuna")

TINY = ("--backbones", "test_efficientnet,test_vit", "--random-init", "--max-epochs", "3", "--workers", "0",
        "--batch-size", "8", "--precision", "fp32")


@pytest.fixture
def data(tmp_path):
    return make_class_folders(tmp_path / "data", {"a": 12, "b": 12, "c": 12})


def auto(cli, data, tmp_path, *args, output="out"):
    result = cli("auto", "--data", str(data), *TINY, "--store", str(tmp_path / "runs.sqlite"), "--output",
                 str(tmp_path / output), *args)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / output / "trail.json").read_text())


def test_auto_prunes_by_successive_halving_and_saves_the_winner_as_a_bundle(data, tmp_path, cli):
    from transferlab.finetune import load_bundle

    trail = auto(cli, data, tmp_path, "--budget", "3h", "--max-trials", "6", "--reduction-factor", "2")
    steps = [e["step"] for e in next(iter(trail["workers"].values()))]
    assert steps.index("score") < steps.index("probe") < steps.index("shortlist") < steps.index("trial")
    assert len(trail["trials"]) == 6 and trail["stop_reason"].startswith("max_trials")
    pruned = [t for t in trail["trials"] if t["state"] == "pruned"]
    assert pruned and all("successive halving" in t["reason"] for t in pruned)
    assert all(t["epochs"] < 3 for t in pruned)  # cut before their last epoch
    complete = [t for t in trail["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: (t["value"], -t["number"]))
    winner = trail["winner"]
    assert winner["trial"] == best["number"] and winner["val_accuracy"] == best["value"]
    bundle = load_bundle(tmp_path / "out" / "winner")
    assert bundle.meta["backbone"]["name"] == winner["backbone"]
    assert bundle.meta["training"]["config"]["lr"] == pytest.approx(winner["lr"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Decision trail" in report and "| pruned |" in report and "successive halving" in report
    assert "<h2>Decision trail" in (tmp_path / "out" / "report.html").read_text()
    assert not (tmp_path / "out" / "trials" / f"{pruned[0]['number']:04d}").exists()  # no half-trained model kept


def test_auto_starts_a_trial_only_when_its_estimated_cost_fits_the_budget(data, tmp_path, cli):
    """A worker joining a study whose costs are known stops on its budget: each trial it started fitted the time
    left by its estimate, and it stopped because the next would not (or cut a running one before an epoch)."""
    one = ("--backbones", "test_efficientnet", "--max-epochs", "2")
    auto(cli, data, tmp_path, "--budget", "3h", *one, "--max-trials", "1", output="first")
    trail = auto(cli, data, tmp_path, "--budget", "20s", *one, "--trial-patience", "0")
    events = trail["workers"][trail["worker"]]
    started = [e for e in events if e["step"] == "trial"]
    assert all(e["left"] >= e["estimate"] > 0 for e in started)
    assert trail["stop_reason"].startswith("budget")
    assert events[-2]["step"] == "stop" and events[-2]["what"] == trail["stop_reason"]
    assert trail["budget_seconds"] == 20 and trail["winner"] is not None
    import optuna

    study = optuna.load_study(study_name=trail["study"], storage=f"sqlite:///{tmp_path / 'runs.sqlite'}")
    first = study.trials[0].user_attrs["costs"]  # the finished trial the estimates start from
    finished = first["setup"] + sum(first["epochs"]) + first["tail"]
    assert started and all(e["estimate"] >= finished for e in started)  # a whole trial, not its first epoch


def test_each_shortlisted_backbone_is_tried_first_with_each_freeze_policy_at_lr_1e_3(data, tmp_path, cli):
    trail = auto(cli, data, tmp_path, "--budget", "3h", "--finetune-top", "2", "--freezes", "all,top:1",
                 "--max-epochs", "1", "--max-trials", "5")
    first, second = trail["shortlist"]
    assert [(t["backbone"], t["freeze"], t["lr"]) for t in trail["trials"][:4]] == [
        (first, "all", 1e-3), (first, "top:1", 1e-3), (second, "all", 1e-3), (second, "top:1", 1e-3)]
    assert trail["trials"][4]["lr"] != 1e-3  # then the sampler's own draws


@wires("AutoConfig.trial_patience")
def test_the_search_stops_after_trial_patience_trials_without_a_better_one(data, tmp_path, cli):
    trail = auto(cli, data, tmp_path, "--budget", "3h", "--backbones", "test_efficientnet", "--max-epochs", "1",
                 "--trial-patience", "2", "--max-trials", "12")
    assert trail["stop_reason"].startswith("trial patience: 2 trials in a row"), trail["stop_reason"]
    best = trail["winner"]["trial"]
    assert [t["number"] for t in trail["trials"]][best + 1:] == [best + 1, best + 2]
    assert all(t["value"] is None or t["value"] <= trail["winner"]["val_accuracy"] for t in trail["trials"])


def test_a_budget_spent_while_ranking_leaves_out_the_rest_and_says_so(data, tmp_path, cli):
    """The first backbone is always scored and probed; the next is left out when the budget is gone, no trial
    starts, and the command ends with one error line after writing the trail."""
    result = cli("auto", "--data", str(data), *TINY, "--budget", "0.01s", "--store", str(tmp_path / "runs.sqlite"),
                 "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.startswith("error: no fine-tuning trial finished within the "
                                                               "budget (0.01s)")
    trail = json.loads((tmp_path / "out" / "trail.json").read_text())
    events = trail["workers"][trail["worker"]]
    assert [e["what"] for e in events if e["step"] == "drop"] == ["test_vit not scored"]
    assert "budget" in next(e["why"] for e in events if e["step"] == "drop")
    assert not any(e["step"] == "trial" for e in events) and trail["stop_reason"].startswith("budget")
    assert trail["winner"] is None and {c["backbone"] for c in trail["candidates"]} == {"test_efficientnet"}


def test_a_second_worker_on_the_same_store_continues_the_same_study(data, tmp_path, cli):
    import optuna

    one = ("--budget", "3h", "--backbones", "test_efficientnet", "--max-epochs", "1")
    first = auto(cli, data, tmp_path, *one, "--max-trials", "2", output="one")
    second = auto(cli, data, tmp_path, *one, "--max-trials", "4", output="two")
    assert second["study"] == first["study"]
    assert [e["step"] for e in next(iter(t for w, t in second["workers"].items() if w == second["worker"]))][0] == \
        "resume"
    assert len(second["workers"]) == 2  # both workers' steps are in the second report
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert {t["worker"] for t in second["trials"][:2]} != {t["worker"] for t in second["trials"][2:]}
    study = optuna.load_study(study_name=first["study"], storage=f"sqlite:///{tmp_path / 'runs.sqlite'}")
    assert len(study.trials) == 4
    from transferlab.study.store import RunStore

    with RunStore(tmp_path / "runs.sqlite", create=False, read_only=True):
        pass  # the same file is a run store too


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "budget must be a positive duration"),
    (["--budget", "soon"], "budget must be a duration"),
    (["--budget", "-5m"], "budget must be a duration"),
    (["--budget", "5x"], "budget must be a duration"),
    (["--min-epochs", "4"], "min_epochs (4) must be at most max_epochs (3)"),
    (["--lr-min", "0.01", "--lr-max", "0.001"], "lr_min"),
    (["--freezes", "nonsense"], "nonsense"),
    (["--pruner", "random"], "random"),
])
def test_auto_bad_input_is_one_error_line(data, tmp_path, cli, args, message):
    result = cli("auto", "--data", str(data), *TINY, "--store", str(tmp_path / "runs.sqlite"), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs.sqlite").exists()


def test_auto_without_optuna_says_which_extra_to_install(data, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = cli("auto", "--data", str(data), *TINY, "--store", str(tmp_path / "runs.sqlite"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: transferlab auto needs optuna: pip install 'transferlab[auto]'"


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("20m", 1200), ("1.5h", 5400),
                                           ("1h30m", 5400), (" 2m 30s ", 150)])
def test_budget_durations(text, seconds):
    from transferlab.auto.budget import parse_budget

    assert parse_budget(text) == seconds
