"""Hostile and malformed study files: one `error: FILE:LINE: ...` line, fast, in little memory, no store made."""

from __future__ import annotations

import os
import tracemalloc

import pytest
import yaml
from bad_input_checks import assert_one_error
from hypothesis import given, settings
from hypothesis import strategies as st

import transferlab.cli.study  # noqa: F401  (imported before memory is measured)
import transferlab.study.plan  # noqa: F401
import transferlab.study.runner  # noqa: F401
from transferlab.errors import UserError
from transferlab.study.spec import parse_study

GOOD = "name: s\ndata: digits\nbackbones: [{name: test_efficientnet, random_init: true}]\n" \
       "methods:\n  - {name: p, kind: probe, head: logreg}\n"


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nmethods: [{{name: x, kind: probe, head: logreg, note: *a{levels - 1}}}]\n"


def merge_bomb(levels: int = 40) -> str:
    lines = ["m0: &m0 {x: 1, y: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, levels)]
    return "\n".join(lines) + "\nmethods: [{name: x, kind: probe}]\n"


HOSTILE = {
    "billion laughs": (billion_laughs(), "expands to more than"),
    "billion laughs in a value": (GOOD.replace("head: logreg", "head: *a") .replace("name: s\n", "name: s\nx: &a [" +
                                  ",".join(["1"] * 10) + "]\n"), ":"),
    "merge key bomb": (merge_bomb(), "expands to more than"),
    "alias inside itself": ("methods: &m [{name: x, kind: probe}, *m]\n", "refers to the value that contains it"),
    "deep flow nesting": ("methods: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "deep block nesting": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n", "nested more than"),
    "deep through aliases": ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 120))
                             + "methods: [{name: x, kind: probe}]\n", "nested more than"),
    "larger than 1 MB": ("# " + "x" * 1_100_000 + "\n" + GOOD, "at most 1,000,000 bytes"),
    "a python object tag": ("methods: !!python/object/apply:os.system ['echo hi']\n", ":1:"),
    "a tab for indentation": ("methods:\n\t- {name: x}\n", ":2:"),
    "duplicate key": ("name: a\nname: b\nmethods: [{name: x, kind: probe}]\n", "duplicate key"),
    "a list as a key": ("? [1, 2]\n: 3\nmethods: [{name: x, kind: probe}]\n", "a key must be a plain word"),
    "not a mapping": ("- 1\n- 2\n", ""),
    "empty methods": ("methods: []\n", "methods must be a non-empty list"),
    "unknown top key": ("nmae: x\n" + GOOD, "nmae"),
    "unknown kind": (GOOD.replace("kind: probe", "kind: probing"), "unknown method kind"),
    "epochs 0": (GOOD.replace("kind: probe, head: logreg", "kind: finetune, epochs: 0"), "epochs"),
    "lr nan": (GOOD.replace("kind: probe, head: logreg", "kind: finetune, lr: .nan"), "lr"),
    "head mlp:0": (GOOD.replace("head: logreg", "head: 'mlp:0'"), "mlp"),
    "batch size in settings": (GOOD + "settings: {batch_size: -1}\n", "batch_size"),
    "seed sweep of text": (GOOD + "sweep: {seed: [zero]}\n", "seed"),
    "an integer of 5,000 digits": (GOOD + "settings: {epochs: " + "9" * 5000 + "}\n", "too long to read"),
    "an integer of 5,000 digits as a key": (GOOD + "? " + "9" * 5000 + "\n: 1\n", "too long to read"),
    "a date that is no date": (GOOD.replace("name: s", "name: 2001-13-45"), "2001-13-45"),
    "a seed numpy cannot take": (GOOD + "settings: {seed: 1099511627776}\n", "seed must be at most 4294967295"),
    "unterminated quote": ('name: "s\n' + GOOD, ""),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_study_file_is_one_line_with_its_place(cli, tmp_path, case):
    text, fragment = HOSTILE[case]
    study = tmp_path / "study.yaml"
    study.write_text(text)
    store = tmp_path / "runs.db"
    tracemalloc.start()
    try:
        result = cli("study", "run", str(study), "--dry-run", "--store", str(store))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    line = assert_one_error(result, f"{study}", fragment)
    assert line.startswith(f"error: {study}")
    assert peak < 100 * 1024**2  # bounded memory: nothing was expanded
    assert not store.exists()  # a refused study file makes no store


@pytest.mark.parametrize("make", [
    lambda p: os.mkfifo(p),
    lambda p: p.mkdir(),
    lambda p: p.write_bytes(b"\xff\xfe\x00name: x"),
    lambda p: None,
], ids=["fifo", "folder", "not utf-8", "missing"])
def test_a_study_file_that_is_not_a_readable_text_file_is_one_line(cli, tmp_path, make):
    study = tmp_path / "study.yaml"
    make(study)
    assert_one_error(cli("study", "run", str(study), "--dry-run", "--store", str(tmp_path / "runs.db")))


def test_a_billion_laughs_never_builds_its_values():
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"<study>:\d+: expands to more than"):
            parse_study(billion_laughs(levels=12))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2


def test_a_few_aliases_within_bounds_are_still_read():
    text = GOOD.replace("{name: p, kind: probe, head: logreg}",
                        "{<<: &o {kind: probe, head: logreg}, name: p}\n  - {<<: *o, name: q, head: knn}")
    spec = parse_study(text)
    assert [(m.name, m.kind, m.options.get("head")) for m in spec.methods] == [("p", "probe", "logreg"),
                                                                               ("q", "probe", "knn")]


# ---------------------------------------------------------------------------------------------------------------
# The schema: any document of known keys and odd values is a valid study or one UserError

VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 1000), st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["probe", "finetune", "scratch", "temperature", "logreg", "mlp:0", "mlp:8", "all",
                               "two-stage", "digits", "test_efficientnet", "", "x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "kind", "head", "epochs", "lr", "seed", "batch_size", "freeze", "C", "temperature", "sweep",
         "backbones", "random_init", "per_class", "layer", "dropout"]), inner, max_size=4)),
    max_leaves=12)
METHOD = st.fixed_dictionaries({"name": st.text("abc", min_size=1, max_size=3),
                                "kind": st.sampled_from(["probe", "finetune", "scratch", "temperature", "other"])},
                               optional={k: VALUES for k in ("head", "epochs", "lr", "seed", "freeze", "C",
                                                             "temperature", "sweep", "dropout", "batch_size")})
DOCUMENT = st.fixed_dictionaries({"methods": st.one_of(st.lists(METHOD, max_size=3), VALUES)},
                                 optional={k: VALUES for k in ("name", "data", "backbones", "sweep", "settings",
                                                               "store", "report", "description")})


@settings(max_examples=150, deadline=None)
@given(DOCUMENT)
def test_any_study_document_is_a_plan_or_one_user_error(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        spec = parse_study(text)
    except UserError as exc:
        assert str(exc).startswith("<study>")
        return
    assert spec.methods and all(m.kind in ("probe", "finetune", "scratch", "temperature") for m in spec.methods)


def test_a_study_text_over_1_mb_is_refused_before_parsing():
    with pytest.raises(UserError, match=r"<study>: a study file must be at most 1,000,000 bytes"):
        parse_study(GOOD + "# " + "x" * 1_000_000 + "\n")
