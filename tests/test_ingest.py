"""Ingest: validation in SQL with reasons, duplicates, idempotence, Parquet, the CLI's summary."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.ingest import IngestSummary, add_arguments, ingest, run
from adapters.store import open_store
from federation.errors import ConfigError
from federation.registry import load_registry
from tests.oracle import oracle_presence, oracle_trips

A, B, C = 110101, 110102, 420102
OUTSIDE = 990101
DOMAIN = np.array([A, B, C], dtype=np.int32)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = open_store(store)
    try:
        result: list[tuple[object, ...]] = con.execute(sql).fetchall()
        return result
    finally:
        con.close()


def assert_adds_up(summary: IngestSummary, file_rows: int) -> None:
    assert summary.loaded + summary.rejected + summary.duplicates == file_rows
    assert sum(summary.rejected_by_reason.values()) == summary.rejected


# -- rejections ----------------------------------------------------------------------------------------------


def test_cells_rejections_carry_reasons(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "cells.csv",
        f"""
cell_id,district
1,{A}
2,{B}
3,{OUTSIDE}
,{A}
12.5,{A}
0x10,{A}
4,
5,4201xx
1,{C}
""",
    )
    store = tmp_path / "telecom.duckdb"
    summary = ingest("telecom", store, csv=source, domain=DOMAIN, table="cells")
    assert (summary.loaded, summary.rejected, summary.duplicates) == (2, 7, 0)
    assert summary.rejected_by_reason == {
        "unknown district in district": 1,
        "null cell_id": 1,
        "unparsable cell_id": 2,
        "null district": 1,
        "unparsable district": 1,
        "conflict": 1,
    }
    assert_adds_up(summary, 9)
    # The first occurrence of cell 1 in the file wins; the later one with another district is a conflict.
    assert rows(store, "SELECT * FROM cells ORDER BY cell_id") == [(1, A), (2, B)]
    rejected = rows(
        store, "SELECT line, cell_id, district, reason, source FROM rejected_cells ORDER BY reason, cell_id"
    )
    assert (4, "3", str(OUTSIDE), "unknown district in district", str(source)) in rejected
    assert (6, "12.5", str(A), "unparsable cell_id", str(source)) in rejected
    assert (5, None, str(A), "null cell_id", str(source)) in rejected
    assert (10, "1", str(C), "conflict: same key as line 2 of this file with other content", str(source)) in rejected


def test_signalling_rejections_and_key(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "signalling.csv",
        """
subscriber_id,ts,cell_id
1,2024-03-01 23:59:59,1
1,2024-03-01 23:59:59,2
1,2024-03-01 23:59:59,1
2,,1
2,2024-13-01 10:00:00,1
2,yesterday,1
,2024-03-01 10:00:00,
3,2024-03-02T00:00:00,2
""",
    )
    store = tmp_path / "telecom.duckdb"
    summary = ingest("telecom", store, csv=source, domain=DOMAIN, table="signalling")
    # Same subscriber and ts in another cell is another event; the exact repeat is a duplicate.
    assert (summary.loaded, summary.rejected, summary.duplicates) == (3, 4, 1)
    assert summary.rejected_by_reason == {
        "null ts": 1,
        "unparsable ts": 2,
        "null subscriber_id; null cell_id": 1,
    }
    assert rows(store, "SELECT count(*), min(ts), max(ts) FROM signalling") == [
        (3, dt.datetime(2024, 3, 1, 23, 59, 59), dt.datetime(2024, 3, 2))
    ]


def test_cases_rejections(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "cases.csv",
        f"""
case_id,person_id,status,district,onset_date,report_date
1,101,confirmed,{A},2024-03-01,2024-03-02
2,102,suspected,{B},,2024-03-02
3,103,recovered,{A},2024-03-01,2024-03-02
4,104,close_contact,{OUTSIDE},,2024-03-02
5,105,confirmed,{A},2024-03-01,
6,106,confirmed,{A},01/03/2024,2024-03-02
7,,confirmed,{C},2024-03-01,2024-03-02
8,108,,{C},2024-03-01,2024-03-02
""",
    )
    store = tmp_path / "health.duckdb"
    summary = ingest("health", store, csv=source, domain=DOMAIN)
    assert summary.table == "cases"
    assert (summary.loaded, summary.rejected, summary.duplicates) == (2, 6, 0)
    assert summary.rejected_by_reason == {
        "bad status": 1,
        "unknown district in district": 1,
        "null report_date": 1,
        "unparsable onset_date": 1,
        "null person_id": 1,
        "null status": 1,
    }
    # onset_date may be empty: suspected cases and close contacts often have none.
    assert rows(store, "SELECT case_id, onset_date FROM cases ORDER BY case_id") == [
        (1, dt.date(2024, 3, 1)),
        (2, None),
    ]


def test_cases_imported_and_cluster_columns(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "cases.csv",
        f"""
case_id,person_id,status,district,onset_date,report_date,imported,cluster_id
1,101,confirmed,{A},2024-03-01,2024-03-02,true,7
2,102,confirmed,{A},2024-03-01,2024-03-02,0,
3,103,confirmed,{A},2024-03-01,2024-03-02,maybe,7
4,104,confirmed,{A},2024-03-01,2024-03-02,,7
5,105,confirmed,{A},2024-03-01,2024-03-02,f,7.5
6,106,suspected,{B},,2024-03-02,yes,-3
""",
    )
    store = tmp_path / "health.duckdb"
    summary = ingest("health", store, csv=source, domain=DOMAIN)
    assert (summary.loaded, summary.rejected) == (3, 3)
    assert summary.rejected_by_reason == {"unparsable imported": 1, "null imported": 1, "unparsable cluster_id": 1}
    assert summary.defaulted == {}
    assert rows(store, "SELECT case_id, imported, cluster_id FROM cases ORDER BY case_id") == [
        (1, True, 7),
        (2, False, None),
        (6, True, -3),
    ]


def test_an_older_case_export_loads_with_defaults_and_says_so(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "old.csv",
        f"""
case_id,person_id,status,district,onset_date,report_date
1,101,confirmed,{A},2024-03-01,2024-03-02
2,102,close_contact,{B},,2024-03-02
""",
    )
    store = tmp_path / "health.duckdb"
    summary = ingest("health", store, csv=source, domain=DOMAIN)
    assert summary.loaded == 2 and summary.defaulted == {"imported": "false", "cluster_id": "NULL"}
    printed = "\n".join(summary.lines())
    assert "imported: not in the file (an older export); every row loaded with imported = false" in printed
    assert "cluster_id = NULL" in printed
    assert rows(store, "SELECT case_id, imported, cluster_id FROM cases ORDER BY case_id") == [
        (1, False, None),
        (2, False, None),
    ]
    # One of the two new columns without the other is a broken export, not an older one.
    half = write_csv(
        tmp_path / "half.csv",
        f"case_id,person_id,status,district,onset_date,report_date,imported\n3,103,confirmed,{A},,2024-03-02,true",
    )
    with pytest.raises(ConfigError, match="lacks cluster_id"):
        ingest("health", store, csv=half, domain=DOMAIN)


# -- Parquet, idempotence, duplicates across files -----------------------------------------------------------


def tickets_parquet(path: Path) -> Path:
    table = pa.table(
        {
            "ticket_id": pa.array([1, 2, 3, 4, 5, 5], pa.int64()),
            "passenger_id": pa.array([11, 12, 13, None, 15, 15], pa.int64()),
            "mode": ["rail", "air", "boat", "coach", "coach", "coach"],
            "origin": pa.array([A, B, A, A, OUTSIDE, OUTSIDE], pa.int32()),
            "destination": pa.array([B, C, C, B, A, A], pa.int32()),
            "departure": pa.array(
                [dt.datetime(2024, 3, 1, 8), dt.datetime(2024, 3, 1, 9), dt.datetime(2024, 3, 2), None, None, None],
                pa.timestamp("us"),
            ),
            "extra": ["ignored"] * 6,
        }
    )
    pq.write_table(table, path)
    return path


def test_parquet_tickets(tmp_path: Path) -> None:
    store = tmp_path / "transport.duckdb"
    summary = ingest("transport", store, parquet=tickets_parquet(tmp_path / "t.parquet"), domain=DOMAIN)
    assert (summary.loaded, summary.rejected, summary.duplicates) == (2, 4, 0)
    assert summary.rejected_by_reason == {
        "bad mode": 1,
        "null passenger_id; null departure": 1,
        "unknown district in origin; null departure": 2,
    }
    assert rows(store, "SELECT ticket_id, mode, origin, destination, departure FROM tickets ORDER BY ticket_id") == [
        (1, "rail", A, B, dt.datetime(2024, 3, 1, 8)),
        (2, "air", B, C, dt.datetime(2024, 3, 1, 9)),
    ]


def test_loading_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    store = tmp_path / "transport.duckdb"
    source = tickets_parquet(tmp_path / "t.parquet")
    first = ingest("transport", store, parquet=source, domain=DOMAIN)
    counts = "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM rejected_tickets)"
    after_first = rows(store, counts)
    second = ingest("transport", store, parquet=source, domain=DOMAIN)
    assert not first.already_loaded and second.already_loaded
    assert (second.loaded, second.rejected, second.duplicates) == (0, 0, 0)
    assert second.sha256 == first.sha256
    assert rows(store, counts) == after_first
    assert rows(store, "SELECT count(*), sum(loaded), sum(rejected) FROM ingest_log") == [(1, 2, 4)]


def test_overlapping_files_count_duplicates(tmp_path: Path) -> None:
    store = tmp_path / "telecom.duckdb"
    first = write_csv(tmp_path / "a.csv", f"subscriber_id,home_district\n1,{A}\n2,{B}")
    second = write_csv(tmp_path / "b.csv", f"subscriber_id,home_district\n2,{C}\n3,{C}\n3,{A}")
    ingest("telecom", store, csv=first, domain=DOMAIN, table="subscribers")
    summary = ingest("telecom", store, csv=second, domain=DOMAIN, table="subscribers")
    assert (summary.loaded, summary.rejected, summary.duplicates) == (1, 2, 0)
    # A key already stored with other content is a conflict naming the stored row's line; within a file the
    # first row wins and a later one with other content is a conflict naming the first one's line.
    assert rows(store, "SELECT subscriber_id, home_district FROM subscribers ORDER BY 1") == [(1, A), (2, B), (3, C)]
    assert rows(store, "SELECT line, reason FROM rejected_subscribers ORDER BY line") == [
        (2, f"conflict: key already stored with other content ({first} line 3); use --update to replace it"),
        (4, "conflict: same key as line 3 of this file with other content"),
    ]
    again = write_csv(tmp_path / "c.csv", f"subscriber_id,home_district\n1,{A}\n4,{B}")
    summary = ingest("telecom", store, csv=again, domain=DOMAIN, table="subscribers")
    assert (summary.loaded, summary.rejected, summary.duplicates) == (1, 0, 1)  # the same row again: a duplicate


def test_subscriber_numbers_are_e164_and_unique(tmp_path: Path) -> None:
    store = tmp_path / "telecom.duckdb"
    old = write_csv(tmp_path / "old.csv", f"subscriber_id,home_district\n1,{A}")
    summary = ingest("telecom", store, csv=old, domain=DOMAIN, table="subscribers")
    assert summary.loaded == 1  # an export without msisdn still loads; the number is NULL
    source = write_csv(
        tmp_path / "numbers.csv",
        f"""
subscriber_id,home_district,msisdn
2,{A},+8613800000002
3,{B},13800000003
4,{B},+8613800000002
5,{C},
6,{C},+86138000000061234567
7,{A},+8613800000007
""",
    )
    summary = ingest("telecom", store, csv=source, domain=DOMAIN, table="subscribers")
    assert_adds_up(summary, 6)
    assert dict(summary.rejected_by_reason) == {"bad msisdn": 2, "msisdn of another subscriber": 1}
    again = write_csv(tmp_path / "again.csv", f"subscriber_id,home_district,msisdn\n8,{A},+8613800000007")
    assert dict(ingest("telecom", store, csv=again, domain=DOMAIN, table="subscribers").rejected_by_reason) == {
        "msisdn of another subscriber": 1
    }
    assert rows(store, "SELECT subscriber_id, msisdn FROM subscribers ORDER BY 1") == [
        (1, None),
        (2, "+8613800000002"),
        (5, None),
        (7, "+8613800000007"),
    ]


def test_ingested_store_answers_aggregates(tmp_path: Path) -> None:
    store = tmp_path / "telecom.duckdb"
    cells = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\n2,{B}\n3,{C}")
    events = write_csv(
        tmp_path / "signalling.csv",
        "subscriber_id,ts,cell_id\n1,2024-03-01 08:00:00,1\n1,2024-03-01 20:00:00,2\n1,2024-03-02 09:00:00,3\n"
        "2,2024-03-02 10:00:00,3\n2,bad,3",
    )
    ingest("telecom", store, csv=cells, domain=DOMAIN, table="cells")
    ingest("telecom", store, csv=events, domain=DOMAIN, table="signalling")
    con = open_store(store)
    start, end = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
    presence = compute_aggregate(con, AggregateRequest("telecom.presence", DOMAIN, start, end, {}))
    trips = compute_aggregate(con, AggregateRequest("telecom.trips", DOMAIN, start, end, {}))
    assert presence.tolist() == [0, 0, 1, 0, 0, 2]
    assert np.array_equal(presence, oracle_presence(con, DOMAIN, start, end))
    assert np.array_equal(trips, oracle_trips(con, DOMAIN, start, end)) and int(trips.sum()) == 2


def test_default_domain_is_the_registry(tmp_path: Path) -> None:
    real = int(load_registry().codes[0])
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{real}\n2,{OUTSIDE}")
    summary = ingest("telecom", tmp_path / "s.duckdb", csv=source, table="cells")
    assert (summary.loaded, summary.rejected) == (1, 1)


# -- refusals ------------------------------------------------------------------------------------------------


def test_refusals_say_what_to_fix(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}")
    with pytest.raises(ConfigError, match=re.escape("--table cells|subscribers|signalling")):
        ingest("telecom", store, csv=source, domain=DOMAIN)
    with pytest.raises(ConfigError, match="'tickets' is not a telecom table"):
        ingest("telecom", store, csv=source, domain=DOMAIN, table="tickets")
    with pytest.raises(ConfigError, match="unknown agency kind"):
        ingest("police", store, csv=source, domain=DOMAIN)
    with pytest.raises(ConfigError, match="exactly one source"):
        ingest("health", store, csv=source, parquet=source, domain=DOMAIN)
    with pytest.raises(ConfigError, match="does not exist"):
        ingest("health", store, csv=tmp_path / "missing.csv", domain=DOMAIN)
    with pytest.raises(ConfigError, match=r"lacks column.*onset_date, report_date"):
        ingest("health", store, csv=write_csv(tmp_path / "c.csv", "case_id,person_id,status,district\n1,2,x,3"))
    with pytest.raises(ConfigError, match=r"cannot read .* as PARQUET"):
        ingest("telecom", store, parquet=source, domain=DOMAIN, table="cells")
    # Nothing half-done was left behind by the refused loads: not even an empty store file.
    assert not store.exists() and not Path(f"{store}.wal").exists()
    # On an existing store, a refused load changes nothing.
    ingest("telecom", store, csv=source, domain=DOMAIN, table="cells")
    before = rows(store, "SELECT table_name FROM information_schema.tables ORDER BY 1")
    with pytest.raises(ConfigError, match=r"lacks column.*onset_date, report_date"):
        ingest("health", store, csv=write_csv(tmp_path / "c.csv", "case_id,person_id,status,district\n1,2,x,3"))
    assert rows(store, "SELECT table_name FROM information_schema.tables ORDER BY 1") == before
    assert rows(store, "SELECT count(*) FROM cells") == [(1,)]


# -- the CLI -------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedbroker ingest")
    add_arguments(p)
    return p


def test_cli_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "telecom.duckdb"
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\n2,{OUTSIDE}\n1,{A}")
    args = parser().parse_args(["telecom", "--store", str(store), "--csv", str(source), "--table", "cells"])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "cells: 1 loaded, 1 rejected, 1 duplicate" in out
    assert "rejected (unknown district in district): 1" in out
    assert run(args) == 0
    assert "already loaded" in capsys.readouterr().out


def test_cli_restricts_to_provinces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\n2,{C}")
    argv = ["telecom", "--store", str(tmp_path / "s.duckdb"), "--csv", str(source), "--table", "cells"]
    assert run(parser().parse_args([*argv, "--provinces", "42"])) == 0
    assert "cells: 1 loaded, 1 rejected, 0 duplicate" in capsys.readouterr().out


def test_cli_reports_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["telecom", "--store", str(tmp_path / "s.duckdb"), "--csv", str(tmp_path / "x.csv")])
    assert run(args) == 2
    assert "fedbroker ingest:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["telecom", "--store", "s.duckdb"])  # no source file


# -- a data engineer's checks --------------------------------------------------------------------------------


def test_short_row_is_rejected_with_its_line(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\n2\n3,{B}")
    summary = ingest("telecom", tmp_path / "t.duckdb", csv=source, domain=DOMAIN, table="cells")
    assert (summary.loaded, summary.rejected) == (2, 1)
    assert [(line, reason) for line, reason, _ in summary.rejected_rows] == [(3, "null district")]


def test_show_rejected_prints_line_reason_and_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\nx,{B}\n3,{OUTSIDE}")
    argv = ["telecom", "--store", str(tmp_path / "t.duckdb"), "--csv", str(source), "--table", "cells"]
    assert run(parser().parse_args([*argv, "--show-rejected"])) == 0
    out = capsys.readouterr().out
    assert f"line 3: unparsable cell_id: x,{B}" in out
    assert f"line 4: unknown district in district: 3,{OUTSIDE}" in out


def test_update_replaces_a_conflicting_row_and_audits_it(tmp_path: Path) -> None:
    store = tmp_path / "h.duckdb"
    first = write_csv(
        tmp_path / "a.csv",
        f"case_id,person_id,status,district,onset_date,report_date\n1,101,suspected,{A},,2024-03-02\n"
        f"2,102,confirmed,{B},2024-03-01,2024-03-02",
    )
    ingest("health", store, csv=first, domain=DOMAIN)
    second = write_csv(
        tmp_path / "b.csv",
        f"case_id,person_id,status,district,onset_date,report_date\n1,101,confirmed,{A},2024-03-01,2024-03-03",
    )
    refused = ingest("health", store, csv=second, domain=DOMAIN)
    assert refused.rejected_by_reason == {"conflict": 1} and refused.loaded == 0
    assert f"({first} line 2)" in refused.rejected_rows[0][1]
    # The same file again, with --update: a load already logged is read again when it may update.
    applied = ingest("health", store, csv=second, domain=DOMAIN, update=True)
    assert (applied.loaded, applied.updated, applied.rejected) == (1, 1, 0)
    assert rows(store, "SELECT status, report_date FROM cases WHERE case_id = 1") == [
        ("confirmed", dt.date(2024, 3, 3))
    ]
    ((old, new, audited_source, line),) = rows(store, "SELECT old_row, new_row, source, line FROM ingest_updates")
    assert "suspected" in str(old) and "confirmed" in str(new) and audited_source == str(second) and line == 2
    assert rows(store, "SELECT count(*) FROM cases") == [(2,)]


def test_signalling_needs_known_cells_and_subscribers(tmp_path: Path) -> None:
    store = tmp_path / "t.duckdb"
    ingest(
        "telecom", store, csv=write_csv(tmp_path / "c.csv", f"cell_id,district\n1,{A}"), table="cells", domain=DOMAIN
    )
    events = write_csv(
        tmp_path / "s.csv", "subscriber_id,ts,cell_id\n7,2024-03-01 08:00:00,1\n7,2024-03-01 09:00:00,99"
    )
    summary = ingest("telecom", store, csv=events, table="signalling", domain=DOMAIN)
    # cells is loaded, so cell 99 is unknown; subscribers is empty, so subscriber ids are not checked yet.
    assert summary.rejected_by_reason == {"unknown cell_id": 1} and summary.loaded == 1
    assert any("subscribers is empty" in note for note in summary.notes)
    ingest(
        "telecom",
        store,
        csv=write_csv(tmp_path / "u.csv", f"subscriber_id,home_district\n8,{B}"),
        table="subscribers",
        domain=DOMAIN,
    )
    later = write_csv(tmp_path / "s2.csv", "subscriber_id,ts,cell_id\n7,2024-03-02 08:00:00,1")
    assert ingest("telecom", store, csv=later, table="signalling", domain=DOMAIN).rejected_by_reason == {
        "unknown subscriber_id": 1
    }


def test_onset_after_report_is_flagged_and_loaded(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        f"case_id,person_id,status,district,onset_date,report_date\n1,101,confirmed,{A},2024-03-05,2024-03-02\n"
        f"2,102,confirmed,{A},2024-03-01,2024-03-02",
    )
    store = tmp_path / "h.duckdb"
    summary = ingest("health", store, csv=source, domain=DOMAIN)
    assert summary.loaded == 2 and dict(summary.flagged) == {"onset after report": (2,)}
    assert rows(store, "SELECT line, reason FROM flagged_cases") == [(2, "onset after report")]
    assert "flagged (onset after report), loaded: 1 (lines 2)" in "\n".join(summary.lines())


def test_timestamp_offsets_become_shanghai_time(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "t.csv",
        f"ticket_id,passenger_id,mode,origin,destination,departure\n"
        f"1,11,rail,{A},{B},2024-03-01T16:30:00Z\n2,12,rail,{A},{B},2024-03-01 09:00:00-05:00\n"
        f"3,13,air,{A},{B},2024-03-01 09:00:00+08:00\n4,14,air,{A},{B},2024-03-01 09:00:00",
    )
    store = tmp_path / "x.duckdb"
    ingest("transport", store, csv=source, domain=DOMAIN)
    assert rows(store, "SELECT departure FROM tickets ORDER BY ticket_id") == [
        (dt.datetime(2024, 3, 2, 0, 30),),  # 16:30 UTC is 00:30 the next day in Shanghai: another day's trip
        (dt.datetime(2024, 3, 1, 22, 0),),
        (dt.datetime(2024, 3, 1, 9, 0),),
        (dt.datetime(2024, 3, 1, 9, 0),),  # no offset: already local time
    ]


def test_strict_loads_nothing_when_a_row_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "t.duckdb"
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{A}\n2,{OUTSIDE}")
    argv = ["telecom", "--store", str(store), "--csv", str(source), "--table", "cells", "--strict"]
    assert run(parser().parse_args(argv)) == 1
    assert "nothing was loaded" in capsys.readouterr().out
    assert not store.exists()  # it did not exist before: a refused strict load leaves none
    clean = write_csv(tmp_path / "ok.csv", f"cell_id,district\n1,{A}")
    assert (
        run(
            parser().parse_args(["telecom", "--store", str(store), "--csv", str(clean), "--table", "cells", "--strict"])
        )
        == 0
    )
    assert run(parser().parse_args(argv)) == 1
    assert rows(store, "SELECT count(*) FROM cells") == [(1,)] and rows(
        store, "SELECT count(*) FROM rejected_cells"
    ) == [(0,)]


def test_federation_domain(tmp_path: Path, small_scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inside = int(load_registry([42]).codes[0])
    source = write_csv(tmp_path / "cells.csv", f"cell_id,district\n1,{inside}\n2,{A}")
    argv = ["telecom", "--store", str(tmp_path / "t.duckdb"), "--csv", str(source), "--table", "cells"]
    assert run(parser().parse_args([*argv, "--federation", str(small_scenario)])) == 0
    assert "cells: 1 loaded, 1 rejected" in capsys.readouterr().out  # 110101 is outside Hubei's domain


def test_ingest_refreshes_the_partials(tmp_path: Path) -> None:
    from adapters.backends.duckdb_store import DuckDBStore
    from adapters.partials import fresh

    store = tmp_path / "x.duckdb"
    ingest("transport", store, parquet=tickets_parquet(tmp_path / "t.parquet"), domain=DOMAIN)
    con = open_store(store)
    try:
        assert fresh(DuckDBStore.wrap(con), "transport.trips")
    finally:
        con.close()
