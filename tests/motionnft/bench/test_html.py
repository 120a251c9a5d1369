"""The offline HTML page of a bench result (motionnft.bench.html), built from a synthetic bench of six
64 px items and four models, checked as text and then in a real headless browser (Debian's chromium,
driven over the DevTools protocol with the `websockets` client that uvicorn[standard] brings).

The models: `oracle` copies the targets; `<i>copy</i>` (a name with markup) copies the inputs; `partial`
has one item missing, one undecodable output that failed (with markup in its error) and copies the
target otherwise; `silent` has no output folder and no scored item, so its means are all None.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from motionnft.bench.html import FlowPictures, write_index_html
from motionnft.contracts.bench import BenchResults, CategorySummary, ItemScores, ModelSummary, Versions
from motionnft.data.formats import load_dataset
from motionnft.data.records import AS_IS, EditSample, RecordError
from motionnft.data.synth import generate
from motionnft.data.synth_io import write_dataset
from motionnft.flow import build_flow_estimator

EVIL_PROMPT = "Move the ball <script>alert(1)</script> & the cube"
EVIL_ERROR = 'judge said <img src="x" onerror="alert(2)">'
MODELS = ("oracle", "<i>copy</i>", "partial", "silent")
UNSCORED = {("partial", 2): "missing", ("partial", 4): "failed"}  # (model, item index) -> status
BROWSER_TIMEOUT_S = 60


class CountingSamples(Mapping[str, EditSample]):
    """Samples as `motionnft.bench.items.LazySamples` gives them (decoded on each access), counting
    accesses; the items of `broken` raise RecordError as an unreadable bench image does."""

    def __init__(self, samples: dict[str, EditSample], broken: tuple[str, ...] = ()) -> None:
        self.samples, self.broken, self.reads = samples, broken, 0

    def __getitem__(self, item: str) -> EditSample:
        self.reads += 1
        if item in self.broken:
            raise RecordError(f"record {item!r} input image: file not found")
        return self.samples[item]

    def __iter__(self) -> Iterator[str]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)


class CountingEstimator:
    """The CPU estimator, counting the image pairs it is asked for."""

    def __init__(self) -> None:
        self.inner = build_flow_estimator("dis", "cpu")
        self.name, self.device, self.pairs = self.inner.name, self.inner.device, 0

    def estimate(self, sources: Any, targets: Any) -> torch.Tensor:
        self.pairs += len(sources)
        return self.inner.estimate(sources, targets)


def _scores(model: str, sample: EditSample, status: str, rank: int, error: str | None = None) -> ItemScores:
    numbers = {"overall": 1.0 + rank / 2, "fidelity": 1.0, "preservation": 2.0, "coherence": 3.0, "mas": 10.0 * rank}
    return ItemScores(item=sample.id, model=model, category=sample.category, status=status, error=error,  # type: ignore[arg-type]
                      **(numbers if status == "scored" else {}))  # fmt: skip


def _summary(items: list[ItemScores], total: int) -> ModelSummary:
    scored = [s for s in items if s.status == "scored"]
    metrics = ("overall", "fidelity", "preservation", "coherence", "mas")
    means = {m: float(np.mean([getattr(s, m) for s in scored])) if scored else None for m in metrics}
    per_category = {
        c: CategorySummary(n=sum(s.category == c for s in scored), overall=means["overall"], mas=means["mas"])
        for c in {s.category for s in scored if s.category is not None}
    }
    ci95 = {m: (v - 0.5, v + 0.5) for m, v in means.items() if v is not None}
    return ModelSummary(n=len(scored), missing=total - len(scored) - sum(s.status == "failed" for s in items),
                        failed=sum(s.status == "failed" for s in items), win_rate=50.0 if scored else None,
                        ci95=ci95, per_category=per_category, **means)  # fmt: skip


def _bench(root: Path) -> tuple[BenchResults, dict[str, EditSample], dict[str, Path]]:
    """Six synthetic items (one with markup in its instruction, one without a category), four models."""
    pairs = generate(6, seed=3, size=64)
    pairs[0] = dataclasses.replace(pairs[0], prompt=EVIL_PROMPT)
    pairs[1] = dataclasses.replace(pairs[1], category=None)  # type: ignore[arg-type]
    records = load_dataset(write_dataset(pairs, root / "bench", "bench.jsonl", progress=False))
    samples = {r.id: r.load(AS_IS) for r in records}
    dirs = {m: root / f"model{j}" for j, m in enumerate(MODELS[:3])}
    items: list[ItemScores] = []
    for rank, sample in enumerate(samples.values()):
        for model, folder in dirs.items():
            folder.mkdir(exist_ok=True)
            status = UNSCORED.get((model, rank), "scored")
            pixels = sample.input_image if model == "<i>copy</i>" else sample.target_image
            if status == "scored":
                Image.fromarray(pixels).save(folder / f"{sample.id}.png")
            elif status == "failed":
                (folder / f"{sample.id}.png").write_bytes(b"not a png")
            items.append(_scores(model, sample, status, rank, EVIL_ERROR if status == "failed" else None))
        items.append(_scores("silent", sample, "missing", rank))
    versions = Versions(flow_backend="opencv-dis-medium", reward_version="motion-v1", judge_backend="heuristic",
                        judge_model="none", judge_is_language_model=False, rubrics={}, win_rate="scores")  # fmt: skip
    models = {m: _summary([s for s in items if s.model == m], len(samples)) for m in MODELS}
    results = BenchResults(bench=str(root / "bench"), items_total=len(samples), models=models, pairs={},
                           items=items, versions=versions)  # fmt: skip
    return results, samples, dirs


def image_sources(text: str) -> list[str]:
    """Every `<img src>` of the page (markup in untrusted text is escaped, so it cannot match)."""
    return re.findall(r'<img src="([^"]*)"', text)


def between(text: str, start: str, end: str) -> str:
    """The part of `text` after the first `start`, up to the next `end`."""
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BenchResults, CountingEstimator]:
    root = tmp_path_factory.mktemp("html")
    results, samples, dirs = _bench(root)
    estimator, counted = CountingEstimator(), CountingSamples(samples)
    page = write_index_html(root / "out", results, counted, dirs, FlowPictures(estimator))
    assert counted.reads == len(samples)  # each item decoded once, not once per model
    return page, results, estimator


def test_every_image_resolves_to_a_file_inside_the_folder(built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    page, _, _ = built
    images = image_sources(page.read_text())
    out = page.parent.resolve()
    assert images and all(src.startswith("assets/") for src in images)  # relative: the folder can move
    for src in images:
        path = (out / src).resolve()
        assert path.is_relative_to(out) and path.is_file(), src
        assert max(Image.open(path).size) <= 3 * 256 + 4 * 18  # flow pictures: three panels and padding
    assert 'loading="lazy"' in page.read_text()


def test_assets_are_written_once(built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    page, _, estimator = built
    assets = page.parent / "assets"
    assert len(list((assets / "items").glob("*.png"))) == 2 * 6  # input and target once per item
    edits = sorted(p.name for p in assets.rglob("*_edit.png"))
    assert len(edits) == 6 + 6 + 4  # partial: one missing, one unreadable
    assert len(list(assets.rglob("*_flow.png"))) == len(edits)
    assert estimator.pairs == 6 + len(edits)  # one target flow per item, one flow per edit


def test_untrusted_text_is_escaped(built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    text = built[0].read_text()
    assert "<script" not in text and "<i>copy" not in text and 'src="x"' not in text
    assert "Move the ball &lt;script&gt;alert(1)&lt;/script&gt; &amp; the cube" in text
    assert "&lt;i&gt;copy&lt;/i&gt;" in text and "judge said &lt;img src=&quot;x&quot;" in text


def test_summary_has_one_row_per_model_and_dashes_for_none(built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    page, results, _ = built
    text = page.read_text()
    rows = re.findall(
        r'<tr><th scope="row"><a href="#model-\d">(.*?)</a>', between(text, '<table id="summary">', "</table>")
    )
    assert [html.unescape(row) for row in rows] == list(MODELS)
    assert results.models["silent"].overall is None
    silent_row = between(text, ">silent</a></th>", "</tr>")
    assert silent_row.count("<td>–</td>") == 6 and silent_row.endswith("<td>0</td><td>6</td><td>0</td>")
    assert "no category" in text and "Flow pictures" in text and "opencv-dis-medium" in text


def test_items_are_listed_worst_first(built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    page, results, _ = built
    text = page.read_text()
    ids = [s.item for s in results.items if s.model == "partial"]
    section = between(text, '<section id="model-2">', "</section>")
    order = [next(i for i in ids if i in heading) for heading in re.findall(r"<h3>(.*?)</h3>", section)]
    assert order == [ids[4], ids[2], ids[0], ids[1], ids[3], ids[5]]  # failed, missing, then by Overall
    assert section.index("failed: judge said") < section.index("no output") < section.index("Overall 1.00")


def test_without_flows_and_with_an_unreadable_bench_item(tmp_path: Path) -> None:
    results, samples, dirs = _bench(tmp_path)
    broken = next(iter(samples))
    page = write_index_html(tmp_path / "out", results, CountingSamples(samples, (broken,)), dirs, None)
    assert not list((tmp_path / "out").rglob("*_flow.png"))
    assert len(list((tmp_path / "out" / "assets" / "items").glob("*.png"))) == 2 * 5
    text = page.read_text()
    assert "Flow pictures were not drawn" in text and text.count("not in the bench given to this page") == 4


# Runs in the page: lazy images off screen never load in a headless window, so each is switched to
# eager and awaited (10 s at most); then every image's natural width and what the summary table shows.
CHECK_PAGE_JS = """(async () => {
  const images = [...document.images];
  for (const img of images) img.loading = "eager";
  const loaded = (img) => img.complete ? null : new Promise((done) => { img.onload = img.onerror = done; });
  const timeout = new Promise((done) => setTimeout(done, 10000));
  await Promise.race([Promise.all(images.map(loaded)), timeout]);
  const table = document.getElementById("summary");
  const box = table ? table.getBoundingClientRect() : {width: 0, height: 0};
  return {images: images.map((img) => [img.getAttribute("src"), img.naturalWidth]),
          summaryRows: table ? table.tBodies[0].rows.length : 0, summaryShown: box.width > 0 && box.height > 0};
})()"""


class DevTools:
    """One page of a headless chromium, over the DevTools protocol (flat sessions, one websocket).

    `errors` collects what the console would show as errors: console.error calls, uncaught exceptions,
    and the browser's own log entries (a file that did not load is one of those).
    """

    def __init__(self, socket: Any) -> None:
        self.socket, self.ids = socket, 0
        self.errors: list[str] = []
        self.events: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=self.session)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and read until its answer, keeping the events that come before it."""
        self.ids += 1
        message = {"id": self.ids, "method": method, "params": params, **({"sessionId": session} if session else {})}
        self.socket.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self.ids:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    def open(self, url: str) -> dict[str, Any]:
        """Load `url`, wait for its load event, run CHECK_PAGE_JS and return its answer."""
        self.errors, self.events = [], []
        self.call("Page.navigate", session=self.session, url=url)
        while "Page.loadEventFired" not in self.events:
            self._receive()
        answer = self.call("Runtime.evaluate", session=self.session, expression=CHECK_PAGE_JS, awaitPromise=True,
                           returnByValue=True, timeout=BROWSER_TIMEOUT_S * 1000)  # fmt: skip
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return dict(answer["result"]["value"])

    def _receive(self) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(self.socket.recv(timeout=BROWSER_TIMEOUT_S))
        method, params = reply.get("method"), reply.get("params", {})
        if method:
            self.events.append(method)
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
        return reply


def _devtools_url(process: subprocess.Popen[bytes], profile: Path) -> str:
    """The browser's DevTools websocket, from the port file chromium writes once it listens."""
    port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + BROWSER_TIMEOUT_S
    while not (port_file.exists() and len(port_file.read_text().split()) == 2):
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(f"chromium did not open its DevTools port (exit status {process.poll()})")
        time.sleep(0.05)
    port, path = port_file.read_text().split()
    return f"ws://127.0.0.1:{port}{path}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` package (apt-get install chromium; CI does)")
    client = pytest.importorskip("websockets.sync.client", reason="needs websockets (from uvicorn[standard])")
    profile = tmp_path_factory.mktemp("chromium")
    args = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with client.connect(_devtools_url(process, profile), max_size=None, open_timeout=BROWSER_TIMEOUT_S) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_browser_check_sees_a_broken_page(browser: DevTools, tmp_path: Path) -> None:
    # The check itself: a missing image and a console error must both be seen, or the next test proves nothing.
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><link rel="icon" href="data:,"><img src="gone.png" loading="lazy">'
                    "<script>console.error('boom')</script>")  # fmt: skip
    answer = browser.open(page.as_uri())
    assert answer["images"] == [["gone.png", 0]] and not answer["summaryShown"]
    assert any("boom" in e for e in browser.errors) and any("ERR_FILE_NOT_FOUND" in e for e in browser.errors)


def test_page_in_a_headless_browser(browser: DevTools, built: tuple[Path, BenchResults, CountingEstimator]) -> None:
    page = built[0]
    answer = browser.open(page.as_uri())
    assert answer["summaryShown"] and answer["summaryRows"] == len(MODELS)
    assert len(answer["images"]) == len(image_sources(page.read_text()))
    assert [src for src, width in answer["images"] if width == 0] == []
    assert browser.errors == []
