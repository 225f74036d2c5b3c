"""Stored Arrow streams are bounds-checked before decoding: hostile ones are refused cleanly."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import time

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florgit.codec import arrow
from florgit.codec.arrow import END_SCHEMA, LOOP_SCHEMA, RECORD_SCHEMA, START_SCHEMA, check_stream, read_checked
from florgit.errors import InvalidDataError

BUDGET = 1 << 30
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _records(n: int) -> list[tuple]:
    values = [1.5, 7, "héllo", None, True, 2**70, float("nan"), ""]
    return [(i // 10, f"m{i % 5}", values[i % len(values)]) for i in range(n)]


def _tables() -> dict[str, pa.Table]:
    return {
        "records": pa.Table.from_batches([arrow.record_batch(_records(100)), arrow.record_batch(_records(3))]),
        "loops": pa.Table.from_batches([arrow.loop_batch([(1, 0, 0, "epoch"), (2, 1, 1, "step")])]),
        "starts": pa.Table.from_batches([arrow.start_batch([(1, 1, 0, 0, 0.5), (2, 2, 0, "a", 0.75)])]),
        "ends": pa.Table.from_batches([arrow.end_batch([(1, 1.0), (2, None)])]),
    }


SCHEMAS = {"records": RECORD_SCHEMA, "loops": LOOP_SCHEMA, "starts": START_SCHEMA, "ends": END_SCHEMA}


def _messages(data: bytes) -> list[bytes]:
    """The encapsulated messages of a stream, as pyarrow frames them (schema first)."""
    reader = ipc.MessageReader.open_stream(pa.BufferReader(data))
    out = []
    while True:
        try:
            out.append(reader.read_next_message().serialize().to_pybytes())
        except StopIteration:
            return out


def _patch_prefixes(data: bytes, old: int, new: int) -> bytes:
    """Rewrite the uncompressed-length prefix of each zstd buffer that declares ``old``.

    Buffers are found by the zstd frame magic, not by the parser under test."""
    out = bytearray(data)
    hits = 0
    start = out.find(ZSTD_MAGIC)
    while start != -1:
        if start >= 8 and struct.unpack_from("<q", out, start - 8)[0] == old:
            struct.pack_into("<q", out, start - 8, new)
            hits += 1
        start = out.find(ZSTD_MAGIC, start + 1)
    assert hits, f"no compressed buffer declares {old} bytes"
    return bytes(out)


def _assert_clean(data: bytes, schema: pa.Schema, budget: int = 1 << 24) -> pl.DataFrame | None:
    """Either a frame of the schema or InvalidDataError: nothing else may escape."""
    try:
        df = read_checked(data, schema, budget, what="records.arrows")
    except InvalidDataError as exc:
        assert exc.what == "records.arrows"
        return None
    assert df.columns == schema.names
    return df


# --- valid streams pass and decode to the same frames --------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_round_trip_of_real_tables(name):
    table = _tables()[name]
    data = arrow.to_stream_bytes(table)
    total = check_stream(data, SCHEMAS[name], BUDGET)
    assert total >= table.nbytes - table.num_rows  # every buffer is counted (bitmaps may be dropped)
    df = read_checked(data, SCHEMAS[name], BUDGET)
    assert df.equals(pl.read_ipc_stream(io.BytesIO(data)))
    assert df.equals(pl.from_arrow(table))
    assert read_checked(data, SCHEMAS[name], BUDGET, columns=SCHEMAS[name].names[:2]).columns == SCHEMAS[name].names[:2]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_empty_tables_pass(name):
    schema = SCHEMAS[name]
    data = arrow.to_stream_bytes(schema.empty_table())
    assert check_stream(data, schema, 0) == 0
    df = read_checked(data, schema, 0)
    assert df.height == 0 and df.columns == schema.names


def test_a_spooled_stream_of_many_batches_passes(tmp_path):
    path = str(tmp_path / "records.arrows")
    appender = arrow.StreamAppender(path, RECORD_SCHEMA)
    for k in range(50):
        appender.append(arrow.record_batch(_records(20 + k)))
    appender.close()
    data = open(path, "rb").read()
    df = read_checked(data, RECORD_SCHEMA, BUDGET)
    assert df.equals(pl.from_arrow(arrow.read_stream(path, RECORD_SCHEMA)))


@pytest.fixture(scope="module")
def million() -> tuple[pa.Table, bytes]:
    table = pa.Table.from_batches([arrow.record_batch(_records(1_000_000))])
    return table, arrow.to_stream_bytes(table)


def test_a_million_records_round_trip_and_the_check_is_cheap(million):
    table, data = million
    total = check_stream(data, RECORD_SCHEMA, BUDGET)
    assert table.nbytes <= total < 4 * table.nbytes
    assert read_checked(data, RECORD_SCHEMA, BUDGET).equals(pl.from_arrow(table))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        check_stream(data, RECORD_SCHEMA, BUDGET)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[2] < 0.02  # ~0.1 ms measured: metadata only, no decompression


def test_the_budget_is_the_declared_total(million):
    _table, data = million
    total = check_stream(data, RECORD_SCHEMA, BUDGET)
    assert check_stream(data, RECORD_SCHEMA, total) == total
    with pytest.raises(InvalidDataError, match="more than"):
        check_stream(data, RECORD_SCHEMA, total - 1)


# --- hostile streams are refused -----------------------------------------------------

BOMB_SCRIPT = textwrap.dedent(
    """
    import os, resource, struct, sys
    os.environ["POLARS_MAX_THREADS"] = "1"  # thread pools made later need address space too
    import polars, pyarrow as pa
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    from florgit.codec import arrow
    from florgit.errors import InvalidDataError
    sys.path.insert(0, {tests!r})
    from test_arrow_bounds import _patch_prefixes, _row_bomb

    table = pa.Table.from_batches([arrow.end_batch([(i, i * 0.5) for i in range(12345)])])
    data = arrow.to_stream_bytes(table)
    bombs = [_patch_prefixes(data, 12345 * 8, n) for n in (2**33, 2**40, 2**62)] + [_row_bomb(data, 12345)]
    in_use = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    limit = in_use + (1 << 30)  # 1 GiB more address space: a declared 8 GiB buffer cannot be allocated
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:  # the bomb is live: an unchecked reader tries to allocate what it declares
        pa.ipc.open_stream(pa.BufferReader(bombs[0])).read_all()
        print("unchecked read allocated")
    except pa.ArrowMemoryError:
        print("unchecked read ran out of memory")
    for bomb in bombs:
        try:
            arrow.read_checked(bomb, arrow.END_SCHEMA, 1 << 30, what="ends.arrows")
        except InvalidDataError as exc:
            print("refused:", exc.why)
        else:
            sys.exit("a bomb was decoded")
    """
)


def _row_bomb(data: bytes, rows: int) -> bytes:
    """Declare 2**40 rows everywhere the batch metadata says ``rows`` (lengths, counts)."""
    batch = _messages(data)[1]
    patched = batch.replace(struct.pack("<q", rows), struct.pack("<q", 2**40))
    assert patched != batch
    return data.replace(batch, patched)


def test_declared_sizes_beyond_the_budget_are_refused_without_allocating(tmp_path):
    script = BOMB_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines and lines[0] == "unchecked read ran out of memory", out.stdout + out.stderr[-2000:]
    assert len(lines) == 5 and all(line.startswith("refused: ") for line in lines[1:])
    assert sum("more than 1073741824 bytes" in line for line in lines) == 3
    assert "too small for 1099511627776 rows" in lines[4]


def test_a_prefix_lie_in_either_direction_stays_within_the_budget():
    # Declaring fewer bytes than the rows need is malformed; -1 (stored raw) counts its real size.
    data = arrow.to_stream_bytes(pa.Table.from_batches([arrow.end_batch([(i, 0.5) for i in range(1000)])]))
    with pytest.raises(InvalidDataError, match="too small for 1000 rows"):
        check_stream(_patch_prefixes(data, 8000, 8), END_SCHEMA, BUDGET)
    with pytest.raises(InvalidDataError, match="-2 bytes"):
        check_stream(_patch_prefixes(data, 8000, -2), END_SCHEMA, BUDGET)


def test_wrong_schema_is_refused():
    data = arrow.to_stream_bytes(_tables()["records"])
    with pytest.raises(InvalidDataError, match="schema is") as info:
        check_stream(data, LOOP_SCHEMA, BUDGET, what="records.arrows", run_id="abc123")
    assert info.value.what == "records.arrows" and info.value.run_id == "abc123"
    narrower = pa.schema([pa.field("ctx", pa.int32()), *list(RECORD_SCHEMA)[1:]])
    with pytest.raises(InvalidDataError, match="schema is"):
        check_stream(data, narrower, BUDGET)


def test_dictionary_batches_and_second_schemas_are_refused():
    ours = _messages(arrow.to_stream_bytes(_tables()["ends"]))
    table = pa.table({"loop": pa.array(["a", "b", "a"]).dictionary_encode()})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    theirs = _messages(sink.getvalue().to_pybytes())  # schema, dictionary, batch
    with pytest.raises(InvalidDataError, match="dictionary batch"):
        check_stream(b"".join([ours[0], theirs[1], *ours[1:]]), END_SCHEMA, BUDGET)
    with pytest.raises(InvalidDataError, match="second schema"):
        check_stream(b"".join([*ours, ours[0]]), END_SCHEMA, BUDGET)
    with pytest.raises(InvalidDataError, match="schema is"):  # a dictionary column is another type
        check_stream(sink.getvalue().to_pybytes(), LOOP_SCHEMA, BUDGET)


def test_every_truncation_is_refused_or_reads_whole_batches():
    data = arrow.to_stream_bytes(_tables()["records"])
    ends = [sum(map(len, _messages(data)[: k + 1])) for k in range(len(_messages(data)))]
    for cut in range(len(data)):
        df = _assert_clean(data[:cut], RECORD_SCHEMA)
        assert (df is not None) == (cut in ends), cut  # only whole messages are readable


def test_every_single_byte_corruption_is_refused_or_harmless():
    data = arrow.to_stream_bytes(_tables()["ends"])
    for pos in range(len(data)):
        for new in {0x00, 0xFF, data[pos] ^ 0x01, data[pos] ^ 0x80}:
            _assert_clean(data[:pos] + bytes([new]) + data[pos + 1 :], END_SCHEMA)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_corruptions_of_a_records_stream_never_escape(draw):
    data = arrow.to_stream_bytes(_tables()["records"])
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        mutated[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    _assert_clean(bytes(mutated), RECORD_SCHEMA)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(-(2**31), 2**31 - 1))
def test_random_bytes_are_refused(garbage, length):
    for data in (garbage, b"\xff\xff\xff\xff" + struct.pack("<i", length) + garbage):
        _assert_clean(data, RECORD_SCHEMA)
    with pytest.raises(InvalidDataError):
        check_stream(garbage, RECORD_SCHEMA, BUDGET)


def test_a_reader_panic_becomes_invalid_data(monkeypatch):
    from polars.exceptions import PanicException

    data = arrow.to_stream_bytes(_tables()["ends"])

    def panic(*_args, **_kwargs):
        raise PanicException("index out of bounds")

    monkeypatch.setattr(pl, "read_ipc_stream", panic)
    with pytest.raises(InvalidDataError, match="PanicException"):
        read_checked(data, END_SCHEMA, BUDGET)

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "read_ipc_stream", interrupt)
    with pytest.raises(KeyboardInterrupt):
        read_checked(data, END_SCHEMA, BUDGET)


def test_unknown_columns_are_a_caller_error():
    with pytest.raises(ValueError, match="not in the schema"):
        read_checked(arrow.to_stream_bytes(_tables()["ends"]), END_SCHEMA, BUDGET, columns=["nope"])


def test_checked_streams_joined_decode_as_their_concatenation(tmp_path):
    """Queries decode many runs' tables as one stream: the record batches of each checked
    stream, behind one schema message. Rows and where the batches lie come from the check."""
    from florgit.codec import ipc_bounds

    streams = [arrow.to_stream_bytes(pa.Table.from_batches([arrow.record_batch(_records(n))])) for n in (0, 5, 1, 103)]
    path = tmp_path / "spooled.arrows"  # a spooled stream: a batch per flush and no end marker
    appender = arrow.StreamAppender(str(path), RECORD_SCHEMA)
    for n in (2, 7):
        appender.append(arrow.record_batch(_records(n)))
    streams.append(path.read_bytes())
    checked = [(data, ipc_bounds.check_stream_parts(data, RECORD_SCHEMA, 1 << 30)) for data in streams]
    assert [parts.rows for _d, parts in checked] == [0, 5, 1, 103, 9]
    joined = ipc_bounds.joined_stream(checked)
    assert check_stream(joined, RECORD_SCHEMA, 1 << 30) == sum(parts.declared for _d, parts in checked)
    expected = pl.concat([pl.read_ipc_stream(io.BytesIO(data)) for data in streams])
    assert pl.read_ipc_stream(io.BytesIO(joined)).equals(expected)
