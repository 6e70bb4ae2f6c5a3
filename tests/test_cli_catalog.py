"""The query command line is built from the catalog: one subcommand per kind, its flags from the kind's
parameter schema, unknown kinds refused first, misspelt flags answered with "did you mean"."""

from __future__ import annotations

import pytest

from fedbroker.cli import build_parser, main
from federation.catalog import KINDS


def test_every_kind_has_a_subcommand_with_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for name, entry in KINDS.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["query", name, "--help"])
        assert exit_info.value.code == 0
        shown = capsys.readouterr().out
        for param in entry.params:
            assert param.flag in shown, (name, param.flag)
        assert "--federation" in shown and "--as" in shown


def test_defaults_and_choices_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["query", "importation-risk", "--help"])
    shown = capsys.readouterr().out
    assert "(default: 14)" in shown and "(default: 1.0)" in shown
    with pytest.raises(SystemExit):
        main(["query", "flows", "--help"])
    assert "{telecom,transport}" in capsys.readouterr().out


def test_unknown_kind_is_refused_before_any_date_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["query", "rt", "--federation", "x.yaml", "--as", "c", "--end", "not-a-date"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "invalid choice: 'rt'" in message
    assert "importation-risk" in message
    assert "not-a-date" not in message


def test_misspelt_flag_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["query", "importation-risk", "--federation", "x.yaml", "--as", "c", "--windw-days", "7"])
    assert exit_info.value.code == 2
    assert "--windw-days (did you mean --window-days?)" in capsys.readouterr().err


def test_kind_params_never_shadow_shared_flags() -> None:
    args = build_parser().parse_args(
        ["query", "flows", "--federation", "f.yaml", "--as", "c", "--source", "transport", "--mode", "air"]
    )
    assert (args.kind, args.coordinator, args.param_source, args.param_mode) == ("flows", "c", "transport", "air")
