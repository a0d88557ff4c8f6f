"""The HTML report in a real headless browser (Debian's chromium), driven over the DevTools pipe.

No network, no extra Python package: chromium's ``--remote-debugging-pipe`` speaks
JSON messages separated by NUL bytes on file descriptors 3 (in) and 4 (out).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.report import records_for_plan, write_report
from transferlab.study import RunStore, load_study, plan_study, run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


class Browser:
    """A headless chromium and one page, spoken to with the DevTools protocol over a pipe."""

    def __init__(self, profile: Path):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--mute-audio", "--remote-debugging-pipe",
                 f"--user-data-dir={profile}", "about:blank"]

        def onto_3_and_4() -> None:  # in the child: the pipe ends become fds 3 and 4 (copies first: no clobbering)
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3, inheritable=True)
            os.dup2(write_end, 4, inheritable=True)

        self.process = subprocess.Popen(
            [CHROMIUM, *flags], pass_fds=(3, 4, to_browser_r, from_browser_w), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=onto_3_and_4,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while time.monotonic() < deadline:
            message = self._read()
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(event)

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self.to_browser)
        os.close(self.from_browser)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A real tiny study run into a store, then reported with every figure."""
    tmp = tmp_path_factory.mktemp("browser")
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFERLAB_CACHE_DIR")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFERLAB_CACHE_DIR"] = str(tmp / "cache")
    try:
        make_image_folder(tmp / "data", per_class=10)
        path = write_study(tmp, f"""
            name: browser study
            data: data
            backbones: [{TINY_BACKBONE}]
            settings: {{num_workers: 0, batch_size: 8}}
            methods:
              - {{name: logreg, kind: probe, head: logreg}}
              - {{name: temperature, kind: temperature, sweep: {{temperature: [0.5, 4]}}}}
            sweep:
              per_class: [3, 6]
              seed: [0, 1]
            """)
        plan = plan_study(load_study(path))
        store = RunStore(tmp / "runs.sqlite")
        assert run_study(plan, store).count("done") == len(plan.runs)
        files = write_report(records_for_plan(store, plan), tmp / "report", title="browser study")
        yield files["html"], store, plan
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    html, _, _ = report
    browser = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.open_page()
        browser.send("Page.navigate", {"url": html.as_uri()})
        browser.wait_for("Page.loadEventFired", timeout=60)
        yield browser
    finally:
        browser.close()


def test_report_renders_with_every_image_decoded(page):
    assert page.evaluate("document.title") == "browser study"
    assert page.evaluate("document.querySelector('h1').textContent") == "browser study"
    images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 5
    assert all(complete and width > 0 for complete, width in images)
    sections = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.id)")
    for section in ("comparison-section", "accuracy-vs-per_class", "accuracy-vs-temperature", "learning-curves",
                    "confusion", "filters", "runs-section"):
        assert section in sections


def test_comparison_table_holds_the_numbers_from_the_store(page, report):
    _, store, plan = report
    rows = page.evaluate("""[...document.querySelectorAll('#comparison tbody tr')].map(tr => ({
        runs: tr.dataset.runs.split(' '),
        accuracy: tr.querySelector('.col-test_accuracy').textContent,
        method: tr.querySelector('.col-method').textContent}))""")
    assert len(rows) == 6  # logreg x 2 sizes, temperature x 2 sizes x 2 temperatures
    for row in rows:
        stored = [store.get(run_id).accuracy for run_id in row["runs"]]
        assert len(stored) == 2 and None not in stored
        mean = sum(stored) / 2
        assert row["accuracy"].startswith(f"{mean:.3f} ± ")
    per_run = page.evaluate("""Object.fromEntries([...document.querySelectorAll('#runs tbody tr')].map(tr =>
        [tr.querySelector('.col-id').textContent, tr.querySelector('.col-accuracy').textContent]))""")
    assert per_run == {run.run_id: f"{store.get(run.run_id).accuracy:.4f}" for run in plan.runs}


def test_no_console_errors_and_no_network_requests(page):
    page.evaluate("1")  # flush pending events
    errors = [e for e in page.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(url.startswith(("file:", "data:")) for url in requests)


def test_every_accuracy_has_its_interval_and_the_noise_sentence_is_shown(page, report):
    _, store, plan = report
    intervals = page.evaluate("""[...document.querySelectorAll('#comparison tbody tr, #runs tbody tr')].map(tr =>
        tr.querySelector('.col-interval').textContent)""")
    assert len(intervals) == 6 + len(plan.runs)
    comparison, runs = intervals[:6], intervals[6:]
    pattern = r"\[\d\.\d{3}, \d\.\d{3}\] \((t|Wilson pooled), 2 runs\)"
    assert all(re.fullmatch(pattern, t) for t in comparison), comparison
    assert all(re.fullmatch(r"\[\d\.\d{3}, \d\.\d{3}\]", t) for t in runs), runs
    verdicts = page.evaluate("[...document.querySelectorAll('#comparison .col-vs_best')].map(td => td.textContent)")
    assert verdicts.count("best") == 2  # one best per samples-per-class setting
    assert all(v == "best" or re.match(r"p [=<] [\d.]+, (within noise|different)$", v) for v in verdicts)
    sentences = page.evaluate("[...document.querySelectorAll('p.noise')].map(p => p.textContent)")
    assert len(sentences) == 2 and all(s.startswith("At per_class=") for s in sentences)
    assert all("McNemar exact" in s for s in sentences)


def test_the_page_fits_1280_px_with_the_comparison_compact_and_its_details_beside(page):
    """16 columns overflowed the page and cut one off: the comparison is two tables, each row's details also on
    hover, and no table is wider than a 1280 px window."""
    page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                     "mobile": False})
    try:
        sizes = page.evaluate("""(() => ({page: document.documentElement.scrollWidth,
            view: document.documentElement.clientWidth,
            tables: [...document.querySelectorAll('table')].map(t => [t.id, t.getBoundingClientRect().right,
                                                                      t.parentElement.scrollWidth,
                                                                      t.parentElement.clientWidth])}))()""")
    finally:
        page.send("Emulation.clearDeviceMetricsOverride")
    assert sizes["view"] <= 1280 and sizes["page"] <= sizes["view"], sizes
    assert {"comparison", "comparison-details", "runs"} <= {table_id for table_id, *_ in sizes["tables"]}
    for table_id, right, content, box in sizes["tables"]:
        assert right <= sizes["view"] and content <= box, (table_id, right, content, box, sizes["view"])
    rows = page.evaluate("""[...document.querySelectorAll('#comparison tbody tr')].map(tr => [tr.dataset.runs,
        tr.title])""")
    details = page.evaluate("[...document.querySelectorAll('#comparison-details tbody tr')].map(tr => tr.dataset.runs)")
    assert [runs for runs, _ in rows] == details
    assert all("inference ms/image: " in title and "feature dim: " in title for _, title in rows), rows
