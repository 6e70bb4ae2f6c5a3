"""The HTML report rendered in a real headless Chromium: no console message, no network request, and the map,
flows, tables and charts present with the expected number of marks. A screenshot is kept in the test's tmp dir.

Chromium comes from Debian's package (``.ci/run`` installs it). Without it the test skips and says why, unless
FEDBROKER_REQUIRE_BROWSER=1 (set by CI), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fedbroker import Client
from fedbroker.html_report import gather, render_report
from federation.registry import load_registry
from tests.federation_fixtures import own_federation

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("FEDBROKER_REQUIRE_BROWSER") == "1":
        pytest.fail("Chromium is required here (FEDBROKER_REQUIRE_BROWSER=1): apt-get install chromium")
    pytest.skip("no Chromium on this machine: apt-get install chromium to run the browser test")


class _Marks(HTMLParser):
    """Counts the elements of interest in the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.svg: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self.svg.append(found.get("id") or found.get("class") or "")
        classes = (found.get("class") or "").split()
        for key in (f"{tag}.{c}" for c in classes):
            self.counts[key] = self.counts.get(key, 0) + 1
        if tag == "table":
            self.counts["table"] = self.counts.get("table", 0) + 1


def test_report_renders_offline_with_its_marks(small_scenario: Path, tmp_path: Path) -> None:
    browser = _chromium()
    with own_federation(small_scenario, tmp_path / "run") as federation:
        config = federation.config
        registry = load_registry(config.domain.provinces)
        inputs = gather(Client(config, NATIONAL), config.data_end, registry)
    page = tmp_path / "report.html"
    page.write_text(render_report(inputs), encoding="utf-8")
    netlog = tmp_path / "netlog.json"
    # The browser's own background traffic (sync, component updates, spelling dictionaries) is switched off, so
    # any request left in the net-log is the page's.
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-features=Translate,OptimizationHints,MediaRouter,SpellcheckService",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dumped = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # No script runs and nothing is fetched: any console message (a CSP violation included) is a failure.
    console = [line for line in dumped.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    assert _page_requests(netlog) == []
    marks = _Marks()
    marks.feed(dumped.stdout)
    assert "risk-map" in marks.svg
    released = len(inputs.importation.rows)
    assert marks.counts["circle.released"] == released
    assert marks.counts["circle.released"] + marks.counts.get("circle.unreleased", 0) == len(registry)
    assert marks.counts.get("line.flow", 0) > 0
    assert marks.counts["pre.query"] == sum(a is not None for a in (inputs.flows, inputs.warning, inputs.trend)) + 1
    if inputs.trend is not None:
        assert marks.counts.get("polyline.rt-curve", 0) >= 1 and marks.counts.get("polygon.rt-band", 0) >= 1
    if inputs.warning is not None:
        assert "tier-map" in marks.svg
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")


def _page_requests(path: Path) -> list[str]:
    """URLs the page itself asked for, from Chromium's net-log: every started request job whose initiator is
    an origin (the browser's own traffic has "not an origin"), other than file: and data: URLs."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:  # a log cut short lacks its closing brackets
        document = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = document["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in document.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and "url" in params and params.get("initiator") != "not an origin":
            urls.append(str(params.get("url")))
    return [u for u in urls if not u.startswith(("file:", "data:"))]


def test_the_network_check_sees_a_page_request(tmp_path: Path) -> None:
    """Control: a page that does fetch something is caught by the same net-log check."""
    browser = _chromium()
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    netlog = tmp_path / "netlog.json"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--log-net-log={netlog}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert _page_requests(netlog) == ["http://127.0.0.1:9/x.png"]
