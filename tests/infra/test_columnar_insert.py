"""The columnar insert writer: byte for byte what clickhouse-driver writes, and the same rows in ClickHouse."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from clickhouse_driver import Client, defines
from clickhouse_driver.block import ColumnOrientedBlock
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.streams.native import BlockOutputStream

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.clickhouse.columnar_insert import ColumnarInsertClient, ExternalColumns, write_block
from driftloop.streams.batch import GappedNumberRows, GappedTextRows, NumberRows, StackedRows, TextRows
from tests.stack_fixtures import PrivateStack

REVISIONS = (54405, defines.CLIENT_REVISION)  # ClickHouse 18.16's protocol, and clickhouse-driver's newest

FEATURES, NULLS = ["f0", "é✓"], ["f1"]  # lists rows share (the decoder's one list of each run of names)
CASES: dict[str, tuple[str, Any]] = {
    "strings": ("String", ["a", "", "é✓", b"raw\xff", "x" * 300]),
    "floats": ("Float64", [1.5, -0.0, math.nan, math.inf, 3, 2**60]),
    "float32": ("Float32", [1.5, 0.1, -2]),
    "uint32": ("UInt32", [0, 1, 2**32 - 1]),
    "uint64": ("UInt64", [0, 2**63 + 5, 2**64 - 1]),
    "int64": ("Int64", [-(2**63), -1, 2**63 - 1]),
    "uint8": ("UInt8", [0, 255, 7]),
    "int8": ("Int8", [-128, 127, 0]),
    "epoch seconds": ("DateTime('UTC')", [0, 1_700_000_000, 2**32 - 1]),
    "datetimes": ("DateTime('UTC')", [datetime(2026, 11, 24, tzinfo=UTC), datetime(1999, 1, 1, tzinfo=UTC)]),
    "plain datetime": ("DateTime", [1, 2, 3]),
    "same names every row": ("Array(String)", [["f0", "f1", "é"]] * 4),
    "equal but separate rows": ("Array(String)", [["f0", "f1"], ["f0", "f1"], ["f0", "f1"]]),
    "names per row": ("Array(String)", [["a"], [], ["b", "c", "d"], [b"\x00"]]),
    "rows sharing two lists": ("Array(String)", [FEATURES, NULLS, FEATURES, FEATURES] * 4),
    "no names": ("Array(String)", [[], [], []]),
    "rows of numbers": ("Array(Float64)", [[1.0, 2.0], [3.0, math.nan], [5, -6.5]]),
    "ragged numbers": ("Array(Float64)", [[1.0], [], [2.0, 3.0, 4.0]]),
    "no numbers": ("Array(Float64)", [[], []]),
    "arrays of ints": ("Array(UInt16)", [[1, 2], [65535]]),
    "numpy rows": ("Array(Float64)", [np.array([1.0, 2.0]), np.array([3.0, 4.0])]),
    "a matrix of rows": ("Array(Float64)", NumberRows(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, math.nan]]))),
    "a matrix of int rows": ("Array(UInt32)", NumberRows(np.array([[1, 2], [3, 4]]))),
    "a matrix of empty rows": ("Array(Float64)", NumberRows(np.empty((3, 0)))),
    "a matrix of no rows": ("Array(Float64)", NumberRows(np.empty((0, 4)))),
    "texts by place": ("Array(String)", TextRows([["a", "é✓", "", b"raw\xff"], ["x", "y", "z" * 300, "w"]])),
    "texts by place, one a row": ("Array(String)", TextRows([["only", "one"]])),
    "texts by place, no rows": ("Array(String)", TextRows([[], []])),
    "a matrix with gaps (nulls)": (
        "Array(Float64)",
        GappedNumberRows(np.array([[1.0, math.nan, 3.0], [math.nan] * 3, [4.0, 5.0, -0.0]]), ["a", "b", "c"]),
    ),
    "a matrix with gaps, no rows": ("Array(Float64)", GappedNumberRows(np.empty((0, 2)), ["a", "b"])),
    "texts by place with gaps": (
        "Array(String)",
        GappedTextRows([["a", None, "é✓", ""], [None, None, "z", "w"]], ["k", "j"]),
    ),
    "matrices of different widths, stacked": (
        "Array(Float64)",
        StackedRows(
            [
                NumberRows(np.array([[1.0, 2.0], [3.0, 4.0]])),
                GappedNumberRows(np.array([[math.nan, 5.0, 6.0]]), ["a", "b", "c"]),
                NumberRows(np.empty((2, 0))),
            ]
        ),
    ),
    "texts by place of different widths, stacked": (
        "Array(String)",
        StackedRows([TextRows([["a", "é✓"]]), GappedTextRows([[None], ["x"], ["y"]], ["k", "j", "i"])]),
    ),
    "enum (clickhouse-driver's)": ("Enum8('a' = 1, 'b' = 2)", ["a", "b", "a"]),
    "nullable (clickhouse-driver's)": ("Nullable(Float64)", [1.0, None, 2.0]),
    "ints in a float array": ("Array(Float64)", [[1, 2], [3, 4]]),
}


class _Captured:
    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += bytes(data)


def _context(revision: int) -> Any:
    context = Client("localhost").connection.context

    class ServerInfo:
        used_revision = revision

        def get_timezone(self) -> str:
            return "UTC"

    context.server_info = ServerInfo()
    return context


def _ours(columns: list[tuple[str, str]], data: list[list[Any]], revision: int) -> bytes:
    sink = _Captured()
    fout = BufferedSocketWriter(sink, 1 << 16)
    copies = [list(c) if isinstance(c, list) else c for c in data]
    write_block(fout, _context(revision), revision, columns, copies, len(data[0]))
    fout.flush()
    return sink.data


def _drivers(columns: list[tuple[str, str]], data: list[list[Any]], revision: int) -> bytes:
    # (copies, here and above: clickhouse-driver prepares some columns' values in place)
    sink = _Captured()
    fout = BufferedSocketWriter(sink, 1 << 16)
    BlockOutputStream(fout, _context(revision)).write(ColumnOrientedBlock(columns, [list(c) for c in data]))
    return sink.data


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_column_is_written_byte_for_byte_as_clickhouse_driver_writes_it(case: str, revision: int) -> None:
    spec, values = CASES[case]
    columns = [("c", spec)]
    assert _ours(columns, [values], revision) == _drivers(columns, [values], revision)


def test_a_whole_block_of_the_predictions_columns_matches() -> None:
    rows = 1000
    names = ["f0", "f1", "f2"]
    columns = [
        ("event_id", "String"),
        ("ts", "DateTime('UTC')"),
        ("num.name", "Array(String)"),
        ("num.value", "Array(Float64)"),
        ("score", "Float64"),
    ]
    data = [
        [f"e{i}" for i in range(rows)],
        list(range(1_700_000_000, 1_700_000_000 + rows)),
        [names] * rows,
        [[i / 3, -i, math.nan] for i in range(rows)],
        [i / rows for i in range(rows)],
    ]
    assert _ours(columns, data, defines.CLIENT_REVISION) == _drivers(columns, data, defines.CLIENT_REVISION)


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ("UInt32", [1, -1]),
        ("UInt8", [256]),
        ("DateTime('UTC')", [2**40]),
        ("Float64", [1.0, None]),
        ("Float64", [1.0, "2.5"]),
        ("UInt64", [1.5]),
        ("String", ["a", 3]),
        ("Array(String)", [["a"], ["b", 3]]),
        ("Array(String)", [["a", 3]] * 2),
        ("Array(String)", [FEATURES, [1]] * 8),  # lists the rows share, one not of texts
        ("Array(String)", TextRows([["a", "b"], ["c", 3]])),
        ("Array(Float64)", [[1.0], [None]]),
        ("Array(Float64)", [[1.0], ["x"]]),
    ],
)
def test_values_clickhouse_driver_refuses_are_refused(spec: str, values: list[Any]) -> None:
    columns = [("c", spec)]
    with pytest.raises(Exception) as drivers:
        _drivers(columns, [values], defines.CLIENT_REVISION)
    with pytest.raises(type(drivers.value)):
        _ours(columns, [values], defines.CLIENT_REVISION)


def test_columns_of_different_lengths_are_refused_and_nothing_is_written(stack: PrivateStack) -> None:
    client = connect(stack.settings.clickhouse)
    table = f"ragged_{uuid.uuid4().hex[:8]}"
    try:
        client.execute(f"CREATE TABLE {table} (a UInt32, b String) ENGINE = Memory")
        with pytest.raises(ValueError, match="different lengths"):
            client.execute(f"INSERT INTO {table} (a, b) VALUES", [[1, 2], ["x"]], columnar=True)
        assert client.execute(f"SELECT count() FROM {table}")[0][0] == 0
    finally:
        client.execute(f"DROP TABLE IF EXISTS {table}")
        client.disconnect()


def test_rows_inserted_are_the_rows_read_back(stack: PrivateStack) -> None:
    client = connect(stack.settings.clickhouse)
    assert isinstance(client, ColumnarInsertClient)
    table = f"roundtrip_{uuid.uuid4().hex[:8]}"
    rows = 2500
    data = [
        list(range(rows)),
        [f"id-{i}-é" for i in range(rows)],
        [1_700_000_000 + i for i in range(rows)],
        [["f0", "f1"]] * (rows - 1) + [["only"]],
        [[i * 0.5, -1.0] for i in range(rows - 1)] + [[7.0]],
        [i / 7 for i in range(rows)],
        TextRows([[f"c{i % 13}" for i in range(rows)], [f"é{i}" for i in range(rows)]]),  # two texts a row
    ]
    try:
        client.execute(
            f"CREATE TABLE {table} (n UInt64, id String, ts DateTime('UTC'),"
            " num Nested(name String, value Float64), score Float64, tags Array(String)) ENGINE = Memory"
        )
        client.execute(
            f"INSERT INTO {table} (n, id, ts, `num.name`, `num.value`, score, tags) VALUES",
            data,
            columnar=True,
            settings={"insert_block_size": 1000},  # three blocks
        )
        back = client.execute(
            f"SELECT n, id, toUInt32(ts), num.name, num.value, score, tags FROM {table} ORDER BY n", columnar=True
        )
    finally:
        client.execute(f"DROP TABLE IF EXISTS {table}")
        client.disconnect()
    assert [list(column) for column in back[:3]] == data[:3]
    assert [list(r) for r in back[3]] == data[3]
    assert [list(r) for r in back[4]] == data[4]
    assert list(back[5]) == data[5]
    assert [list(r) for r in back[6]] == [[f"c{i % 13}", f"é{i}"] for i in range(rows)]


def test_external_tables_sent_a_column_at_a_time_read_as_clickhouse_driver_s_rows(stack: PrivateStack) -> None:
    """A query's external tables given as columns (tuples, as a columnar read returns them, included) read back
    as the same table sent clickhouse-driver's way, a tuple a row; asked to check types, the driver sends them
    itself; and the columns given are left as they were."""
    rows = 3000
    structure = (("k", "String"), ("n", "UInt64"), ("x", "Float64"), ("day", "Date"), ("at", "DateTime('UTC')"))
    columns = [
        tuple(f"k{i}-é" for i in range(rows)),
        list(range(rows)),
        [i / 3 for i in range(rows)],
        [datetime(2026, 12, 4, tzinfo=UTC).date()] * rows,
        [1_790_000_000 + i for i in range(rows)],
    ]
    given = [list(column) for column in columns]
    query = "SELECT k, n, x, day, toUInt32(at) FROM _t ORDER BY n"
    ours = ExternalColumns("_t", structure, columns)
    client = connect(stack.settings.clickhouse)
    try:
        answers = [
            client.execute(query, external_tables=[ours]),
            client.execute(query, external_tables=[ours], types_check=True),
            client.execute(query, external_tables=[ours.as_rows()]),
        ]
        empty = ExternalColumns("_t", structure, [[]] * len(structure))
        assert client.execute("SELECT count() FROM _t", external_tables=[empty]) == [(0,)]
    finally:
        client.disconnect()
    assert answers[0] == answers[1] == answers[2] == list(zip(*given, strict=True))
    assert [list(column) for column in columns] == given
