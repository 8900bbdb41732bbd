"""Container logs: the CRI format the shim writes, and reading it back as `kubectl logs` does."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from pilothouse.node.logs import log_attempts, log_path, parse_timestamp, read_log
from pilothouse.node.runtime.shim import (
    MAX_RECORD,
    LineSplitter,
    LogWriter,
    format_records,
)

T0 = 1_735_732_800 * 1_000_000_000  # 2025-01-01T12:00:00Z
RECORD = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] ")


def write(path: Path, *records: tuple[float, str, str, str]) -> None:
    """Append (seconds after T0, stream, tag, content) records, as the shim writes them."""
    with open(path, "ab") as f:
        for seconds, stream, tag, content in records:
            f.write(format_records(stream.encode(), [(tag.encode(), content.encode())],
                                   T0 + int(seconds * 1e9)))


def read(path: Path, **options) -> bytes:
    async def go() -> bytes:
        return b"".join([chunk async for chunk in read_log(path, **options)])

    return asyncio.run(go())


# -- the format ----------------------------------------------------------------------------

def test_records_are_timestamped_lines_with_stream_and_tag() -> None:
    line = format_records(b"stderr", [(b"F", b"boom")], T0 + 1)
    assert line == b"2025-01-01T12:00:00.000000001Z stderr F boom\n"
    assert parse_timestamp(line.split()[0]) == T0 + 1
    assert parse_timestamp(b"2025-01-01T13:00:00.5+01:00") == T0 + 500_000_000
    assert parse_timestamp(b"yesterday") is None


def test_lines_are_split_into_partial_records_past_16_kib_and_at_exit() -> None:
    splitter = LineSplitter()
    long_line = b"x" * (MAX_RECORD * 2 + 10)
    records = splitter.feed(b"one\r\ntw")
    assert records == [(b"F", b"one")]  # a carriage return before the newline goes too
    records = splitter.feed(b"o\n" + long_line + b"\nend")
    assert records == [(b"F", b"two"), (b"P", b"x" * MAX_RECORD), (b"P", b"x" * MAX_RECORD),
                       (b"F", b"x" * 10)]
    assert splitter.flush() == [(b"P", b"end")]  # unterminated when the stream ended
    assert splitter.flush() == []


def test_the_writer_rotates_and_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    writer = LogWriter(str(path), max_bytes=1000, max_files=3)
    for i in range(100):
        writer.write(format_records(b"stdout", [(b"F", b"line %03d" % i)], T0 + i))
    writer.close()
    rotated = sorted(p.name for p in tmp_path.iterdir() if p.name != "0.log")
    assert len(rotated) == 2 and all(re.fullmatch(r"0\.log\.\d{8}-\d{6}\.\d{6}", n)
                                     for n in rotated)
    newest = (tmp_path / rotated[-1]).read_bytes() + path.read_bytes()
    assert newest.endswith(b"stdout F line 099\n")
    record = len(format_records(b"stdout", [(b"F", b"line 000")], T0))
    assert all(1000 - record < os.path.getsize(tmp_path / n) <= 1000 for n in rotated)


def test_a_record_longer_than_a_file_fills_one_alone(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    writer = LogWriter(str(path), max_bytes=100, max_files=5)
    writer.write(format_records(b"stdout", [(b"F", b"short")], T0))
    writer.write(format_records(b"stdout", [(b"F", b"x" * 300), (b"F", b"after")], T0))
    writer.close()
    files = sorted(tmp_path.iterdir())
    contents = [f.read_bytes().count(b"\n") for f in [*files[1:], files[0]]]
    assert contents == [1, 1, 1] and path.read_bytes().endswith(b"F after\n")


def test_log_paths_and_attempts(tmp_path: Path) -> None:
    assert log_path(tmp_path, "web", 2) == tmp_path / "web" / "2.log"
    assert log_attempts(tmp_path / "web") == []
    (tmp_path / "web").mkdir()
    for name in ("0.log", "1.log", "1.log.20250101-120000.000000", "10.log", "x.log"):
        (tmp_path / "web" / name).touch()
    assert log_attempts(tmp_path / "web") == [0, 1, 10]  # rotated files are not attempts


# -- reading -------------------------------------------------------------------------------

def test_reading_strips_the_prefixes_and_joins_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, (0, "stdout", "F", "hello"), (1, "stderr", "P", "par"), (2, "stderr", "F", "ts"),
          (3, "stdout", "F", ""), (4, "stdout", "P", "no newline at exit"))
    assert read(path) == b"hello\nparts\n\nno newline at exit"
    assert read(path, timestamps=True) == (
        b"2025-01-01T12:00:00.000000000Z hello\n2025-01-01T12:00:01.000000000Z parts\n"
        b"2025-01-01T12:00:03.000000000Z \n2025-01-01T12:00:04.000000000Z no newline at exit")
    assert read(tmp_path / "missing.log") == b""


def test_tail_counts_lines_not_records(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, (0, "stdout", "F", "a"), (1, "stdout", "P", "b1"), (2, "stdout", "F", "b2"),
          (3, "stdout", "F", "c"))
    assert read(path, tail_lines=1) == b"c\n"
    assert read(path, tail_lines=2) == b"b1b2\nc\n"
    assert read(path, tail_lines=3) == read(path, tail_lines=100) == b"a\nb1b2\nc\n"
    assert read(path, tail_lines=0) == b""


def test_tail_across_read_blocks_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, *((i, "stdout", "F", f"line {i} " + "y" * 40) for i in range(5000)))
    lines = read(path).splitlines()
    assert len(lines) == 5000
    for n in (1, 7, 1234, 4999, 5000):
        assert read(path, tail_lines=n).splitlines() == lines[-n:]


def test_since_drops_older_lines_and_limit_bytes_truncates(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, (0, "stdout", "F", "old"), (5, "stdout", "P", "new"), (9, "stdout", "F", "er"),
          (10, "stdout", "F", "newest"))
    assert read(path, since=T0 / 1e9 + 5) == b"newer\nnewest\n"
    assert read(path, since=T0 / 1e9 + 60) == b""
    assert read(path, limit_bytes=6) == b"old\nne"
    assert read(path, tail_lines=1, timestamps=True, limit_bytes=34) == \
        b"2025-01-01T12:00:10.000000000Z new"


def test_follow_reads_appended_lines_across_rotation_until_the_container_stops(
        tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write(path, (0, "stdout", "F", "first"))
    running = True

    async def container() -> None:
        nonlocal running
        await asyncio.sleep(0.05)
        write(path, (1, "stdout", "F", "second"))
        await asyncio.sleep(0.05)
        path.rename(tmp_path / "0.log.20250101-120002.000000")
        write(path, (2, "stdout", "F", "third"))
        await asyncio.sleep(0.05)
        write(path, (3, "stdout", "F", "last"))
        running = False

    async def go() -> list[bytes]:
        writer = asyncio.create_task(container())
        chunks = [c async for c in read_log(path, follow=True, running=lambda: running,
                                            poll_interval=0.01)]
        await writer
        return chunks

    chunks = asyncio.run(asyncio.wait_for(go(), 5))
    assert b"".join(chunks) == b"first\nsecond\nthird\nlast\n"
    assert len(chunks) >= 3  # delivered as they came, not at the end


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "0.log"

    async def go() -> bytes:
        async def later() -> None:
            await asyncio.sleep(0.05)
            write(path, (0, "stdout", "F", "late"))

        task = asyncio.create_task(later())
        out = b""
        async for chunk in read_log(path, follow=True, running=lambda: True,
                                    poll_interval=0.01):
            out += chunk
            break
        await task
        return out

    assert asyncio.run(asyncio.wait_for(go(), 5)) == b"late\n"
    assert read(tmp_path / "never.log", follow=True) == b""  # not running: nothing to wait for
