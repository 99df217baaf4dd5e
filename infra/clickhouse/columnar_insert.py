"""Columnar inserts written whole, column by column, in ClickHouse's Native format.

clickhouse-driver writes a columnar insert one Python value at a time: it copies every column into
chunks first, and for an ``Array`` column it flattens the rows three times and packs the offsets in a
Python loop. The sink's inserts are mostly numbers and ``Array`` columns (ten feature names and values an
event), and that writing was a fifth of the ingestion process's time.

:class:`ColumnarInsertClient` is a :class:`clickhouse_driver.Client` that writes the data block of a
columnar ``INSERT`` itself: numbers and ``DateTime`` through numpy, ``String`` with the driver's own
string writer, and ``Array`` of either as offsets and flattened values (rows that all hold the same
strings, such as every event's feature names, are encoded once; rows kept whole, as ``streams.batch``'s
``NumberRows`` and ``TextRows`` keep feature values, give their sizes by ``lengths()`` and their values row
after row by ``flattened()``).
A column of any other type, or with values the fast form does not take exactly as clickhouse-driver would
(``None``, ``datetime``, text in a number column, a number out of range), is written by clickhouse-driver's
own column writer, which accepts or refuses it as always: the bytes on the wire are the same either way
(``tests/infra``).

A query's external tables (data sent with it, read as temporary tables: ``IN (SELECT ... FROM _keys)``, or an
``INSERT ... SELECT`` that joins them) are written the same way when given as :class:`ExternalColumns`, a
column at a time; clickhouse-driver takes them a row at a time (a tuple or dict a row, transposed).

>>> from driftloop.infra.clickhouse.columnar_insert import encode_array_of_strings_row
>>> encode_array_of_strings_row(["f0", "é"])
b'\\x02f0\\x02\\xc3\\xa9'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from clickhouse_driver import Client, defines
from clickhouse_driver.block import BlockInfo, ColumnOrientedBlock, RowOrientedBlock
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.protocol import ClientPacketTypes
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str, write_binary_uint8

Writer = Any  # clickhouse-driver's BufferedWriter (a Cython class): write(bytes), write_strings(list)

_NUMBER_TYPES: dict[str, np.dtype[Any]] = {
    **{f"Float{bits}": np.dtype(f"<f{bits // 8}") for bits in (32, 64)},
    **{f"Int{bits}": np.dtype(f"<i{bits // 8}") for bits in (8, 16, 32, 64)},
    **{f"UInt{bits}": np.dtype(f"<u{bits // 8}") for bits in (8, 16, 32, 64)},
}
_DATETIME = re.compile(r"DateTime(\('[^']*'\))?")  # seconds since the epoch, as UInt32
_UINT32 = np.dtype("<u4")
_SHARED_ROWS = 8  # rows of an array of strings a list object at least, to be encoded a list object at a time


#: The library series this module was written for (pinned in pyproject.toml).
WRITTEN_FOR = {"clickhouse-driver": "0.2."}


@dataclass(frozen=True)
class ExternalColumns:
    """An external table sent with a query, a column at a time: ``columns[i]`` holds the values of
    ``structure[i]`` (name, ClickHouse type)."""

    name: str
    structure: Sequence[tuple[str, str]]
    columns: Sequence[Sequence[Any]]

    def as_rows(self) -> dict[str, Any]:
        """clickhouse-driver's form of the table: its structure and a tuple a row."""
        return {"name": self.name, "structure": list(self.structure), "data": list(zip(*self.columns, strict=True))}


class ColumnarInsertClient(Client):
    """A clickhouse-driver client whose columnar inserts, and queries' :class:`ExternalColumns`, write their data
    blocks in one pass a column.

    Everything else (queries, row-oriented inserts, numpy mode, compressed connections) is
    clickhouse-driver's own behaviour.
    """

    def process_ordinary_query(  # clickhouse-driver's hook: execute() calls it for anything but an insert of data
        self,
        query: str,
        params: Any = None,
        with_column_types: bool = False,
        external_tables: Sequence[Any] | None = None,
        query_id: str | None = None,
        types_check: bool = False,
        columnar: bool = False,
    ) -> Any:
        tables = list(external_tables or ())
        columns = [table for table in tables if isinstance(table, ExternalColumns)]
        if not columns or len(columns) != len(tables) or not self._writes_blocks_itself(types_check):
            tables = [table.as_rows() if isinstance(table, ExternalColumns) else table for table in tables]
            return super().process_ordinary_query(
                query, params, with_column_types, tables or None, query_id, types_check, columnar
            )
        if params is not None:
            query = self.substitute_params(query, params, self.connection.context)
        self.connection.send_query(query, query_id=query_id, params=params)
        for table in columns:
            self._send_block(table.structure, table.columns, row_count(table.columns), table_name=table.name)
        self.connection.send_data(RowOrientedBlock())  # an empty block ends the external tables
        return self.receive_result(with_column_types=with_column_types, columnar=columnar)

    def _writes_blocks_itself(self, types_check: bool) -> bool:
        """Whether this connection's data blocks are written by this module (the driver's otherwise)."""
        connection = self.connection
        return not (types_check or connection.compression or connection.context.client_settings["use_numpy"])

    def send_data(
        self, sample_block: Any, data: Any, types_check: bool = False, columnar: bool = False
    ) -> int:  # clickhouse-driver's hook: process_insert_query calls it with the server's sample block
        connection = self.connection
        columns = sample_block.columns_with_types
        if not columnar or not self._writes_blocks_itself(types_check) or len(data) != len(columns):
            if columnar:  # clickhouse-driver takes lists and tuples only
                data = [values if isinstance(values, list | tuple) else list(values) for values in data]
            return super().send_data(sample_block, data, types_check=types_check, columnar=columnar)  # type: ignore[no-any-return]
        rows = row_count(data)
        block_rows = connection.context.client_settings["insert_block_size"]
        for start in range(0, rows, block_rows):
            chunk = data if rows <= block_rows else [values[start : start + block_rows] for values in data]
            self._send_block(columns, chunk, min(block_rows, rows - start))
            self.receive_profile_events()
        connection.send_data(ColumnOrientedBlock())  # an empty block ends the data
        self.receive_profile_events()
        return rows

    def _send_block(
        self, columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]], rows: int, *, table_name: str = ""
    ) -> None:
        connection = self.connection
        fout, revision = connection.fout, connection.server_info.used_revision
        write_varint(ClientPacketTypes.DATA, fout)
        if revision >= defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
            write_binary_str(table_name, fout)  # an external table's name; an insert's data has none
        write_block(fout, connection.context, revision, columns, data, rows)
        fout.flush()


def write_block(
    fout: Writer, context: Any, revision: int, columns: Sequence[tuple[str, str]], data: Sequence[Any], rows: int
) -> None:
    """A Native data block of ``rows`` rows: block info, then each column's name, type and values."""
    if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
        BlockInfo().write(fout)
    write_varint(len(columns), fout)
    write_varint(rows, fout)
    encoding = context.client_settings.get("strings_encoding") or "utf-8"
    for (name, spec), values in zip(columns, data, strict=True):
        write_binary_str(name, fout)
        write_binary_str(spec, fout)
        if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
            write_binary_uint8(0, fout)  # no custom (sparse) serialization
        write = _writer(spec)
        if write is None or not write(values, fout, encoding):
            # a copy: the driver's writers prepare a list in place (a retry would send what they made of it)
            write_column(context, name, spec, list(values), fout, types_check=False)


def encode_array_of_strings_row(strings: Sequence[str | bytes], encoding: str = "utf-8") -> bytes:
    """One row of an ``Array(String)`` column's flattened values: each string as its length and bytes."""
    parts = []
    for text in strings:
        data = text if isinstance(text, bytes) else text.encode(encoding)
        parts.append(_varint(len(data)) + data)
    return b"".join(parts)


# --- the column writers: each writes ``values`` and returns True, or writes nothing and returns False ----------


def _writer(spec: str) -> Callable[[Sequence[Any], Writer, str], bool] | None:
    if spec == "String":
        return _write_strings
    if spec in _NUMBER_TYPES:
        dtype = _NUMBER_TYPES[spec]
        return lambda values, fout, encoding: _write_numbers(values, dtype, fout)
    if _DATETIME.fullmatch(spec):
        return lambda values, fout, encoding: _write_numbers(values, _UINT32, fout, integers_only=True)
    if spec.startswith("Array(") and spec.endswith(")"):
        inner = spec[6:-1]
        if inner == "String":
            return _write_arrays_of_strings
        if inner in _NUMBER_TYPES:
            dtype = _NUMBER_TYPES[inner]
            return lambda values, fout, encoding: _write_arrays_of_numbers(values, dtype, fout)
    return None


def _write_strings(values: Sequence[Any], fout: Writer, encoding: str) -> bool:
    if not isinstance(values, list):
        return False
    fout.write_strings(values, encoding=encoding)  # what clickhouse-driver's String column calls, unprepared
    return True


def _write_numbers(values: Sequence[Any], dtype: np.dtype[Any], fout: Writer, *, integers_only: bool = False) -> bool:
    array = _numbers(values, dtype, integers_only=integers_only)
    if array is None or array.ndim != 1:
        return False
    fout.write(array.tobytes())
    return True


def _write_arrays_of_strings(rows: Sequence[Any], fout: Writer, encoding: str) -> bool:
    if not isinstance(rows, list) and hasattr(rows, "flattened"):  # rows kept a list a place
        fout.write(np.cumsum(rows.lengths(), dtype=np.uint64).tobytes())
        fout.write_strings(rows.flattened(), encoding=encoding)
        return True
    lengths = _lengths(rows)
    if lengths is None:
        return False
    first = rows[0] if len(rows) else None
    if first is not None and isinstance(rows, list) and rows.count(first) == len(rows):  # identity first: cheap
        if not all(isinstance(text, str | bytes) for text in first):
            return False
        fout.write(np.cumsum(lengths, dtype=np.uint64).tobytes())
        fout.write(encode_array_of_strings_row(first, encoding) * len(rows))
        return True
    ids = list(map(id, rows))
    shared = dict(zip(ids, rows, strict=True))
    if len(shared) * _SHARED_ROWS <= len(rows):  # a few lists the rows share (feature names, a pattern of nulls)
        if not all(isinstance(text, str | bytes) for row in shared.values() for text in row):
            return False
        encoded = {key: encode_array_of_strings_row(row, encoding) for key, row in shared.items()}
        fout.write(np.cumsum(lengths, dtype=np.uint64).tobytes())
        fout.write(b"".join(map(encoded.__getitem__, ids)))
        return True
    flat = list(chain.from_iterable(rows))
    fout.write(np.cumsum(lengths, dtype=np.uint64).tobytes())
    fout.write_strings(flat, encoding=encoding)
    return True


def _write_arrays_of_numbers(rows: Sequence[Any], dtype: np.dtype[Any], fout: Writer) -> bool:
    if not isinstance(rows, list) and hasattr(rows, "flattened"):  # rows kept as a matrix (places left out)
        flat = _numbers(rows.flattened(), dtype)
        if flat is None or flat.ndim != 1:
            return False
        fout.write(np.cumsum(rows.lengths(), dtype=np.uint64).tobytes())
        fout.write(flat.tobytes())
        return True
    lengths = _lengths(rows)
    if lengths is None:
        return False
    flat = _numbers(list(chain.from_iterable(rows)), dtype)
    if flat is None or flat.ndim != 1:
        return False
    fout.write(np.cumsum(lengths, dtype=np.uint64).tobytes())
    fout.write(flat.tobytes())
    return True


def _numbers(values: Any, dtype: np.dtype[Any], *, integers_only: bool = False) -> np.ndarray | None:
    """``values`` as ``dtype``, or None where clickhouse-driver may judge them otherwise: anything but ints
    and floats (floats only into a float column), or a number out of the column's range."""
    try:
        array = np.asarray(values)
    except ValueError:  # rows of different lengths: not numbers
        return None
    if array.size == 0:
        return np.empty(array.shape, dtype)
    kind = array.dtype.kind
    if kind == "f" and dtype.kind == "f" and not integers_only:
        return array.astype(dtype, copy=False)
    if kind not in "iu":
        return None  # None, text, datetime, Decimal, an int beyond 64 bits: clickhouse-driver decides
    if dtype.kind != "f":
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            return None
    return array.astype(dtype, copy=False)


def _lengths(rows: Sequence[Any]) -> np.ndarray | None:
    try:
        return np.fromiter(map(len, rows), dtype=np.uint64, count=len(rows))
    except TypeError:  # a row that is not a sequence
        return None


def row_count(data: Sequence[Sequence[Any]]) -> int:
    """The rows of a block given a column at a time (every column as long)."""
    counts = {len(values) for values in data}
    if len(counts) > 1:
        raise ValueError(f"columns of different lengths {sorted(counts)} in one insert")
    return counts.pop() if counts else 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
