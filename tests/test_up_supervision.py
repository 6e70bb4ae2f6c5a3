"""`fedbroker up` supervises: it reports a node that exits, with its last log lines, keeps the others running,
and stops every node on SIGTERM as on Ctrl-C, saying what it stopped."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.federation_fixtures import roster_variant
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


class Lines:
    """The merged output of a process, read by a thread so that waiting for a line can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for text in stream:
                self._queue.put(text)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, pattern: str, timeout_s: float = 120.0) -> re.Match[str]:
        while True:
            for line in self.seen:
                match = re.search(pattern, line)
                if match:
                    return match
            try:
                item = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}") from None
            if item is None:
                raise AssertionError(f"output ended without {pattern!r}:\n{''.join(self.seen)}")
            self.seen.append(item)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def test_up_reports_a_dead_node_and_stops_on_sigterm(small_scenario: Path, tmp_path: Path) -> None:
    roster = roster_variant(small_scenario, tmp_path / "up" / "federation.yaml", min_contributors=2)
    up = subprocess.Popen(
        [sys.executable, "-m", "fedbroker", "up", "--federation", str(roster), "--ephemeral"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = Lines(up)
        lines.until(r"Ctrl-C \(or SIGTERM\) stops every node")
        pids = {m[1]: int(m[2]) for m in re.finditer(r"(\S+)\s+\S+\s+pid (\d+)", "".join(lines.seen))}
        assert "telecom-b" in pids and len(pids) >= 9, pids
        os.kill(pids["telecom-b"], signal.SIGKILL)
        lines.until(r"telecom-b exited with code -9; the others keep running")
        lines.until(r"telecom-b \| .*telecom-b serving on port")  # its last log lines follow
        assert all(_alive(pid) for node, pid in pids.items() if node != "telecom-b")

        up.send_signal(signal.SIGTERM)
        stopping = lines.until(r"SIGTERM: stopping (\d+) node\(s\): (.*)")
        assert int(stopping[1]) == len(pids) - 1 and "telecom-b" not in stopping[2]
        lines.until(r"^stopped ")
        assert up.wait(timeout=60) == 1  # a node had died on its own
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    wait_for(lambda: not any(_alive(pid) for pid in pids.values()))
