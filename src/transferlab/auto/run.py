"""``run_auto``: LogME over every candidate, a logreg probe of the best few, then fine-tuning trials chosen by an
Optuna sampler and cut by successive halving. A trial starts only when a finished trial's estimated cost fits the
budget (a cut trial cannot be the winner), and the search ends early once ``trial_patience`` trials in a row bring
no better validation accuracy.

The Optuna study lives in the same database as the run store (a SQLite file or PostgreSQL), named by a digest
of the data and the search settings: a second worker with the same arguments joins the search (the ranking and
the shortlist are kept on the study, so it goes straight to trials) and its trials see the first one's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..storage import atomic_write_text, text_digest
from .budget import Budget
from .costs import Costs
from .config import AutoConfig
from .trail import Trail, trail_html, trail_markdown

log = logging.getLogger(__name__)
DATA_FIELDS = ("seed", "per_class", "classes", "num_classes", "ratios", "val_per_class", "test_per_class")
SEARCH_FIELDS = ("backbones", "random_init", "probe_top", "finetune_top", "freezes", "lr_min", "lr_max",
                 "max_epochs", "min_epochs", "reduction_factor", "pruner")  # not the budget nor when to stop


class BudgetStop(Exception):
    """Raised from a trial's epoch hook when its next epoch would not fit the budget."""


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("transferlab auto needs optuna: pip install 'transferlab[auto]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def study_name(config: AutoConfig) -> str:
    """``auto-`` and 12 hex digits of the data and search settings (not the budget, the store or the device)."""
    data = config.data if config.data == "digits" else str(Path(config.data).resolve())
    settings = {"data": data, **{k: getattr(config, k) for k in DATA_FIELDS + SEARCH_FIELDS}}
    return "auto-" + text_digest(json.dumps(settings, sort_keys=True, default=str))[:12]


def optuna_storage(store: str | None):
    """Optuna's RDB storage on the run store's database (the store is created if it is new)."""
    import optuna

    from ..study.store import RunStore

    with RunStore(store) as runs:  # the runs table exists: `transferlab runs` reads the same file
        address = runs.address
    if address.kind == "sqlite":
        url = f"sqlite:///{Path(address.path).resolve()}"
        engine = {"connect_args": {"timeout": 60}}
    else:
        url = "postgresql+psycopg://" + (address.url or "").split("://", 1)[1]
        engine = {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def make_pruner(config: AutoConfig):
    import optuna

    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=config.min_epochs, max_resource=config.max_epochs,
                                              reduction_factor=config.reduction_factor)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_epochs,
                                                  reduction_factor=config.reduction_factor)


@dataclass
class AutoResult:
    study: str
    output: str
    worker: str
    budget_seconds: float
    elapsed_seconds: float
    stop_reason: str
    candidates: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    shortlist: list[str]
    trials: list[dict[str, Any]]
    winner: dict[str, Any] | None
    workers: dict[str, list[dict[str, Any]]]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_auto(config: AutoConfig, progress=None) -> AutoResult:
    optuna = require_optuna()
    budget = Budget(config.budget_seconds)
    worker = f"{socket.gethostname()}:{os.getpid()}:{datetime.now(timezone.utc).strftime('%H%M%S.%f')}"
    trail = Trail(budget, worker)
    name = config.study or study_name(config)
    output = Path(config.output) if config.output else Path("runs") / name
    study = optuna.create_study(study_name=name, storage=optuna_storage(config.store), direction="maximize",
                                load_if_exists=True, pruner=make_pruner(config),
                                sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.trials))  # a joining worker draws anew
    costs = Costs()
    stored = study.user_attrs
    if stored.get("shortlist"):
        candidates, probes, shortlist = stored["candidates"], stored["probes"], stored["shortlist"]
        costs.first_guess = float(stored.get("first_guess", 0.0))
        trail.add("resume", f"joined study {name}: its ranking, probes and {len(study.trials)} trial(s) are in the "
                  "store", "another worker ranked and probed with the same data and settings")
    else:
        candidates, probes, shortlist = _rank_and_probe(config, budget, trail, costs, progress)
        for key, value in (("candidates", candidates), ("probes", probes), ("shortlist", shortlist),
                           ("first_guess", costs.first_guess)):
            study.set_user_attr(key, value)
    _enqueue_defaults(study, config, shortlist)
    for done in study.get_trials(deepcopy=False):  # every worker's measured costs so far
        if "costs" in done.user_attrs:
            costs.add(done.user_attrs["costs"])
    stop_reason = _search(study, config, shortlist, budget, trail, costs, output, optuna)
    trail.add("stop", stop_reason, f"{budget.left:.1f}s of the budget left")
    study.set_user_attr(f"trail:{worker}", trail.events)
    winner = _winner(study, output, trail, optuna)
    study.set_user_attr(f"trail:{worker}", trail.events)
    workers = {k.split(":", 1)[1]: v for k, v in study.user_attrs.items() if k.startswith("trail:")}
    result = AutoResult(study=name, output=str(output), worker=worker, budget_seconds=budget.seconds,
                        elapsed_seconds=budget.elapsed, stop_reason=stop_reason, candidates=candidates, probes=probes,
                        shortlist=shortlist, trials=_trial_rows(study, optuna), winner=winner, workers=workers,
                        config=asdict(config))
    _write(result, output)
    if winner is None:
        raise UserError(f"no fine-tuning trial finished within the budget ({config.budget}); the trail is in "
                        f"{output / 'trail.json'}")
    return result


def _rank_and_probe(config: AutoConfig, budget: Budget, trail: Trail, costs: Costs,
                    progress) -> tuple[list, list, list]:
    """LogME of every candidate (backbone x feature layer), a logreg probe of the best ``probe_top`` backbones at
    their best layer, and the ``finetune_top`` best probed ones; a backbone whose scoring or probe would not fit
    the time left (estimated from the ones done) is left out, the first of each never."""
    from ..rank.config import RankConfig
    from ..rank.run import run_rank

    shared = {k: getattr(config, k) for k in DATA_FIELDS}
    runtime = {k: getattr(config, k) for k in ("device", "precision", "compile", "batch_size", "num_workers")}
    candidates: list[dict] = []
    scored_seconds: list[float] = []
    train_images = 0
    for name in config.backbones:  # one at a time: a backbone whose scoring would overrun the budget is left out
        estimate = max(scored_seconds, default=0.0)
        if scored_seconds and not budget.fits(estimate):
            trail.add("drop", f"{name} not scored", f"budget: {budget.left:.1f}s left, scoring a backbone took "
                      f"{estimate:.1f}s")
            continue
        started = time.perf_counter()
        ranked = run_rank(RankConfig(data=config.data, backbones=[name], random_init=config.random_init,
                                     probes=False, cache=config.cache, **shared, **runtime), progress)
        scored_seconds.append(time.perf_counter() - started)
        train_images = ranked.train_images
        candidates += [{"backbone": c.backbone, "layer": c.layer, "pooling": c.pooling, "logme": c.logme,
                        "seconds": c.total_seconds} for c in ranked.candidates]
        trail.add("extract", f"{name}: features of {ranked.train_images} training images, every feature layer",
                  "LogME reads them", seconds=ranked.extraction_seconds)
    candidates.sort(key=lambda c: c["logme"], reverse=True)
    for c in candidates:
        trail.add("score", f"{c['backbone']} {c['layer']} ({c['pooling']}): LogME {c['logme']:.4f}",
                  f"LogME on {train_images} training images", seconds=c["seconds"])
    best: dict[str, dict] = {}
    for c in candidates:  # sorted by LogME: the first seen is each backbone's best layer
        best.setdefault(c["backbone"], c)
    order = list(best)
    top = order[:config.probe_top]
    for name in order[config.probe_top:]:
        trail.add("drop", f"{name} not probed", f"its best LogME {best[name]['logme']:.4f} is below the top "
                  f"{config.probe_top} ({best[top[-1]]['logme']:.4f})")
    probes = []
    for name in top:
        estimate = max((p["seconds"] for p in probes), default=0.0)
        if probes and not budget.fits(estimate):
            trail.add("drop", f"{name} not probed", f"budget: {budget.left:.1f}s left, a probe took {estimate:.1f}s")
            continue
        started = time.perf_counter()
        # every layer, as scored: the training images' features come from the cache, only validation's are new
        probed = run_rank(RankConfig(data=config.data, backbones=[name], random_init=config.random_init,
                                     probes=True, cache=config.cache, **shared, **runtime), progress)
        c = next(c for c in probed.candidates if c.layer == best[name]["layer"])
        seconds = time.perf_counter() - started
        probes.append({"backbone": name, "layer": c.layer, "logme": best[name]["logme"],
                       "logreg_accuracy": c.logreg_accuracy, "knn_accuracy": c.knn_accuracy, "seconds": seconds})
        costs.first_guess = max(costs.first_guess, seconds)
        trail.add("probe", f"{name} {c.layer}: logreg validation accuracy {c.logreg_accuracy:.4f}",
                  f"top {config.probe_top} by LogME", seconds=seconds)
    costs.first_guess = max(costs.first_guess, max(scored_seconds, default=0.0))
    probes.sort(key=lambda p: p["logreg_accuracy"], reverse=True)
    shortlist = [p["backbone"] for p in probes[:config.finetune_top]]
    for p in probes[config.finetune_top:]:
        trail.add("drop", f"{p['backbone']} not fine-tuned", f"probe accuracy {p['logreg_accuracy']:.4f} below the "
                  f"top {config.finetune_top}")
    trail.add("shortlist", ", ".join(shortlist), f"best {config.finetune_top} by logreg probe accuracy; the search "
              f"chooses among them, freeze {', '.join(config.freezes)} and lr {config.lr_min:g}..{config.lr_max:g}")
    return candidates, probes, shortlist


def _distributions(config: AutoConfig, shortlist: list[str]) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {"backbone": CategoricalDistribution(shortlist), "freeze": CategoricalDistribution(config.freezes),
            "lr": FloatDistribution(config.lr_min, config.lr_max, log=True)}


def _enqueue_defaults(study, config: AutoConfig, shortlist: list[str]) -> None:
    """Every shortlisted backbone with every freeze policy is tried first at a middle learning rate (1e-3,
    inside the range), the best probed backbone's first: the sampler's random start then explores around
    known-good settings, and a tight budget still sees each policy of the best backbone."""
    lr = min(max(1e-3, config.lr_min), config.lr_max)
    for name in shortlist:
        for freeze in config.freezes:
            study.enqueue_trial({"backbone": name, "freeze": freeze, "lr": lr}, skip_if_exists=True)


def planned_epochs(config: AutoConfig, freeze: str) -> int:
    """Epochs of a trial that is never pruned: a two-stage policy trains each stage ``max_epochs``."""
    return config.max_epochs * (2 if freeze.startswith("two-stage") else 1)


def _without_improvement(study, optuna) -> tuple[Any, int]:
    """The best completed trial (any worker's) and how many trials have ended after it, none better."""
    ended = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                     optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL))
    complete = [t for t in ended if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None, 0
    best = max(complete, key=lambda t: (t.value, -t.number))
    return best, sum(t.number > best.number for t in ended)


def _started_trials(study, optuna) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING,
              optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))


def _search(study, config: AutoConfig, shortlist: list[str], budget: Budget, trail: Trail, costs: Costs,
            output: Path, optuna) -> str:
    """Trials until the budget, ``max_trials`` or a fault stops them; returns why it stopped."""
    distributions = _distributions(config, shortlist)
    longest = max(planned_epochs(config, freeze) for freeze in config.freezes)
    while True:
        if config.max_trials is not None and _started_trials(study, optuna) >= config.max_trials:
            return f"max_trials ({config.max_trials}) reached"
        best, since = _without_improvement(study, optuna)
        if config.trial_patience and since >= config.trial_patience:
            return (f"trial patience: {since} trials in a row ended without beating trial {best.number}'s "
                    f"validation accuracy {best.value:.4f}")
        estimate, left = costs.full_trial(longest), budget.left  # one reading: the trail shows the decision
        if estimate > left:
            return (f"budget: {left:.1f}s left, a new trial needs about {estimate:.1f}s to finish (its epochs, the "
                    "test evaluation and a saved model): only a finished trial can be the winner")
        trial = study.ask(distributions)
        stopped = _trial(study, trial, config, budget, trail, costs, output, optuna, estimate, left)
        if stopped:
            return stopped


def _trial(study, trial, config: AutoConfig, budget: Budget, trail: Trail, costs: Costs, output: Path, optuna,
           estimate: float, left: float) -> str | None:
    """One fine-tuning run, reporting each epoch's validation accuracy to the pruner."""
    from ..finetune.config import FinetuneConfig
    from ..finetune.run import restored_epoch, run_finetune

    backbone, freeze, lr = trial.params["backbone"], trial.params["freeze"], trial.params["lr"]
    key = Costs.key(backbone, freeze)
    folder = output / "trials" / f"{trial.number:04d}"
    planned = planned_epochs(config, freeze)
    trail.add("trial", f"trial {trial.number}: {backbone}, freeze {freeze}, lr {lr:.2g}",
              f"{left:.1f}s left >= about {estimate:.1f}s to finish a trial", trial=trial.number,
              estimate=estimate, left=left)
    fc = FinetuneConfig(data=config.data, backbone=backbone, random_init=config.random_init, freeze=freeze, lr=lr,
                        epochs=config.max_epochs, early_stopping="val_accuracy", patience=planned,
                        output=str(folder), **{k: getattr(config, k) for k in DATA_FIELDS},
                        **{k: getattr(config, k) for k in ("device", "precision", "compile", "batch_size",
                                                           "num_workers")})
    started = time.perf_counter()
    marks: list[float] = []  # when each epoch ended
    epochs: list[float] = []  # each epoch's own seconds (training and validation)

    def on_epoch(record: dict) -> None:
        marks.append(time.perf_counter())
        epochs.append(float(record.get("seconds") or 0.0))
        step, value = int(record["epoch"]), float(record.get("val_accuracy") or 0.0)
        trial.report(value, step)
        if step < planned and trial.should_prune():  # a trial at its last epoch finishes: its model is made
            best = _best_at(study, step, optuna)
            raise optuna.TrialPruned(f"successive halving at epoch {step}: validation accuracy {value:.4f} is not in "
                                     f"the top 1/{config.reduction_factor} of the trials at this rung (best "
                                     f"{best:.4f})")
        next_epoch = max(epochs + costs.epoch.get(key, []))
        if step < planned and not budget.fits(next_epoch + costs.tail_of(key)):
            raise BudgetStop(f"stopped after epoch {step}: another epoch ({next_epoch:.1f}s) and the test evaluation "
                             f"(about {costs.tail_of(key):.1f}s) would not fit the {budget.left:.1f}s left")

    def learn(complete: bool) -> None:
        """This trial's costs, kept on the trial so every worker estimates from every worker's trials."""
        if not marks:
            return
        measured = {"key": key, "setup": max(0.0, marks[0] - started - epochs[0]), "epochs": epochs,
                    "tail": time.perf_counter() - marks[-1] if complete else None}
        costs.add(measured)
        trial.set_user_attr("costs", measured)

    trial.set_user_attr("worker", trail.worker)
    try:
        with _notes_once(trail):
            result = run_finetune(fc, None, on_epoch)
    except (optuna.TrialPruned, BudgetStop) as exc:
        learn(False)
        reason = str(exc)
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        shutil.rmtree(folder, ignore_errors=True)  # a cut trial leaves no half-trained model behind
        trail.add("budget-stop" if isinstance(exc, BudgetStop) else "prune", f"trial {trial.number} ({backbone})",
                  reason, trial=trial.number, epochs=len(marks))
        return "budget: a running trial was stopped before its next epoch" if isinstance(exc, BudgetStop) else None
    except UserError as exc:
        trial.set_user_attr("reason", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        trail.add("fail", f"trial {trial.number} ({backbone})", str(exc), trial=trial.number)
        return None
    learn(True)
    history = result.history
    best_epoch = restored_epoch(history, "val_accuracy")
    value = next(float(h["val_accuracy"]) for h in history if h["epoch"] == best_epoch)
    seconds = time.perf_counter() - started
    for attr, v in (("model_path", str(folder)), ("test_accuracy", result.accuracy), ("seconds", seconds),
                    ("reason", f"ran all {len(history)} epochs; best validation accuracy at epoch {best_epoch}")):
        trial.set_user_attr(attr, v)
    study.tell(trial, value)
    trail.add("complete", f"trial {trial.number} ({backbone}): validation accuracy {value:.4f}",
              f"{len(history)} epochs, never pruned", trial=trial.number, seconds=seconds,
              test_accuracy=result.accuracy)
    return None


class _Once(logging.Filter):
    """Each fine-tuning warning (e.g. a small validation set) goes into the trail once, not to stderr per trial."""

    def __init__(self, trail: Trail):
        super().__init__()
        self.trail = trail

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and message not in self.trail.said:
            self.trail.said.add(message)
            self.trail.add("note", message, "from the fine-tuning runs (said once)")
        return record.levelno < logging.WARNING


@contextlib.contextmanager
def _notes_once(trail: Trail):
    logger = logging.getLogger("transferlab.finetune")
    once = _Once(trail)
    logger.addFilter(once)
    for child in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("transferlab.finetune.")]:
        child.addFilter(once)
    try:
        yield
    finally:
        for child in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                      if n.startswith("transferlab.finetune")]:
            child.removeFilter(once)


def _best_at(study, step: int, optuna) -> float:
    values = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
              if step in t.intermediate_values]
    return max(values) if values else float("nan")


def _winner(study, output: Path, trail: Trail, optuna) -> dict[str, Any] | None:
    """The study's best completed trial (any worker's), its bundle copied to ``output/winner``."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        trail.add("winner", "none", "no trial of the study completed")
        return None
    best = max(done, key=lambda t: (t.value, -t.number))
    source = Path(best.user_attrs.get("model_path", ""))
    bundle = None
    if source.is_dir():
        target = output / "winner"
        staging = output / f".winner-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        bundle = str(target)
    winner = {"trial": best.number, **best.params, "val_accuracy": best.value,
              "test_accuracy": best.user_attrs.get("test_accuracy"), "bundle": bundle, "trial_folder": str(source)}
    trail.add("winner", f"trial {best.number}: {best.params['backbone']}, freeze {best.params['freeze']}",
              f"best validation accuracy {best.value:.4f} of {len(done)} completed trial(s)"
              + ("" if bundle else f"; its bundle {source} is not on this machine"))
    return winner


def _trial_rows(study, optuna) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.WAITING:  # enqueued, never started by any worker
            continue
        rows.append({"number": t.number, "state": t.state.name.lower(), "backbone": t.params.get("backbone"),
                     "freeze": t.params.get("freeze"), "lr": t.params.get("lr"),
                     "epochs": max(t.intermediate_values, default=0), "value": t.value,
                     "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
                     "test_accuracy": t.user_attrs.get("test_accuracy"), "seconds": t.user_attrs.get("seconds"),
                     "reason": t.user_attrs.get("reason"), "worker": t.user_attrs.get("worker")})
    return rows


def _write(result: AutoResult, output: Path) -> None:
    record = result.to_dict()
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "trail.json", json.dumps(record, indent=2, default=str))
    atomic_write_text(output / "report.md", trail_markdown(record))
    atomic_write_text(output / "report.html", trail_html(record))
