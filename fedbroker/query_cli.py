"""``fedbroker query KIND``: one subcommand per catalog kind, its flags built from the kind's parameter schema.

Every kind shares the coordinator flags (``--federation``, ``--as``, ``--start``, ``--end``, ``--format``,
``--limit``, ``--broker``); its own flags come from :attr:`federation.catalog.QueryKind.params`, so adding a
kind to the catalog adds its subcommand here with nothing else to write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
from collections.abc import Sequence
from pathlib import Path

from federation.catalog import KINDS, QueryKind
from federation.catalog.base import Param

#: argparse dest of a kind's parameter: prefixed so a param can never shadow a shared flag.
_DEST = "param_"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def add_query_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``query`` with one subcommand per kind; returns the ``query`` parser."""
    query = commands.add_parser(
        "query",
        help="run a joint query as a coordinator",
        description="Run a joint query as a coordinator. Kinds: "
        + "; ".join(f"{name}: {entry.summary}" for name, entry in KINDS.items()),
    )
    kinds = query.add_subparsers(dest="kind", required=True, metavar="KIND")
    for name, entry in KINDS.items():
        sub = kinds.add_parser(name, help=entry.summary, description=entry.summary)
        _shared_flags(sub, entry)
        group = sub.add_argument_group(f"{name} parameters")
        for param in entry.params:
            group.add_argument(param.flag, dest=_DEST + param.name, metavar=_metavar(param), help=_help(param))
        if name == "exposure":
            # Client-side only, not a signed parameter: it runs a warning query first.
            from fedbroker.risk_from_warning import add_flag

            add_flag(group)
    return query


def _shared_flags(sub: argparse.ArgumentParser, entry: QueryKind) -> None:
    sub.add_argument(
        "--federation",
        type=Path,
        required=True,
        help="the roster (federation.yaml; federation.runtime.yaml after `up --ephemeral`)",
    )
    sub.add_argument("--as", dest="coordinator", required=True, help="coordinator id (signs the query)")
    start_help = "first day, YYYY-MM-DD"
    if entry.trailing_window is not None:
        start_help += f" (default: {entry.param(entry.trailing_window).flag} days ending at --end)"
    elif entry.start_default is not None:
        start_help += f" (default: {entry.start_default})"
    sub.add_argument("--start", type=_date, help=start_help)
    sub.add_argument("--end", type=_date, help="last day, YYYY-MM-DD (default: the federation's last day)")
    sub.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sub.add_argument("--limit", type=int, help="table: show at most this many rows")
    sub.add_argument("--broker", help="broker host:port (default: the roster's)")
    sub.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="also keep the answer in DIR (answer.json plus one file per table; see `fedbroker results`)",
    )
    sub.add_argument(
        "--save-as",
        default="csv",
        metavar="FORMATS",
        help="with --output: comma-separated table formats among csv, parquet, geojson (default: csv)",
    )


def _metavar(param: Param) -> str:
    if param.choices:
        return "{" + ",".join(param.choices) + "}"
    return {"districts": "CODE,...", "date": "YYYY-MM-DD", "region": "PREFIX"}.get(param.type, param.type.upper())


def _help(param: Param) -> str:
    text = param.help
    if param.required:
        text += " (required)"
    elif param.default is not None:
        text += f" (default: {param.default})"
    return text


def query_params(args: argparse.Namespace) -> dict[str, str]:
    """The signed query's params from the command line: only those given, as the strings typed."""
    entry = KINDS[args.kind]
    given = ((p.name, getattr(args, _DEST + p.name, None)) for p in entry.params)
    return {name: value for name, value in given if value is not None}


def suggest(parser: argparse.ArgumentParser, argv: Sequence[str], unknown: Sequence[str]) -> str:
    """'unrecognized arguments' with a "did you mean" for each misspelt flag, among the flags of the
    (sub)command the words in ``argv`` select."""
    flags = _flags_of_selected(parser, argv)
    parts = []
    for word in unknown:
        flag = word.split("=", 1)[0]
        close = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6) if flag.startswith("--") else []
        parts.append(f"{word} (did you mean {close[0]}?)" if close else word)
    return "unrecognized arguments: " + " ".join(parts)


def _flags_of_selected(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    current = parser
    for word in argv:
        sub = _subcommand(current, word)
        if sub is not None:
            current = sub
    return [flag for action in current._actions for flag in action.option_strings if flag.startswith("--")]


def _subcommand(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and word in action.choices:
            chosen: argparse.ArgumentParser = action.choices[word]
            return chosen
    return None
