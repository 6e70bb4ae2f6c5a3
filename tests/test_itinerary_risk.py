"""The carrier's risk list: every accepted form, bad files refused with the fix, reloaded when replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapters.itinerary.risk import RiskList, parse_risk_list
from federation.errors import ConfigError


@pytest.mark.parametrize(
    "text",
    [
        "[420106, 420102]",
        '["420106", "420102"]',
        '{"districts": [420106, 420102]}',
        json.dumps(
            {
                "query": {"kind": "warning"},
                "columns": ["district", "name", "tier"],
                "rows": [[420106, "武昌区", "high"], [420102, "江岸区", "medium"], [420111, "洪山区", "low"]],
            }
        ),
        json.dumps({"columns": ["district", "alert"], "rows": [[420106, True], [420102, False]]}),
        "district,tier\n420106,high\n420102,medium\n420111,low\n",
        "district\n420106\n420102\n",
        "420106\n420102\n",
    ],
)
def test_accepted_forms(text: str) -> None:
    assert parse_risk_list(text, source="x") == {420106, 420102}


def test_an_empty_file_is_an_empty_list() -> None:
    assert parse_risk_list("\n", source="x") == frozenset()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[4201]", "entry 1 is not a six-digit district code"),
        ("[420106, true]", "entry 2"),
        ('{"other": 1}', "expected a list of district codes"),
        ("[420106", "not valid JSON"),
        ("a,b\n1,2\n", "needs a header naming 'district'"),
        ('{"columns": ["district"], "rows": [[420106, 1]]}', "row 1 does not have"),
    ],
)
def test_bad_files_say_what_to_fix(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_risk_list(text, source="risk.json")


def test_the_list_is_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "risk.json"
    path.write_text("[420106]")
    risk = RiskList(path)
    assert risk.prefectures() == {4201}
    path.write_text("[420502, 420202]")
    os.utime(path, ns=(1, 1))  # a replaced file may keep its size; a new mtime is what announces it
    assert risk.prefectures() == {4205, 4202}


def test_a_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fix --risk-list"):
        RiskList(tmp_path / "none.json")
    assert RiskList(None).districts() == frozenset()
