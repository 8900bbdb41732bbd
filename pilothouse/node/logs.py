"""Container logs on disk: where they live, their format, and reading them back for `kubectl logs`.

Where: `DATA/pods/<namespace>_<name>_<uid>/<container>/<attempt>.log`, one file per run of
a container (attempt 0, 1, ... as it restarts), like the kubelet's /var/log/pods. A file
that grows past the runtime's limit (10 MiB) is renamed `<attempt>.log.<UTC time>` and a
new `<attempt>.log` begins; five files are kept in all. As the kubelet does, `read_log`
reads the current file and, when following, the files that replace it.

Format: the CRI log format that containerd and CRI-O write, one record per line:

    <timestamp> <stream> <tag> <content>\\n

- timestamp: RFC 3339 in UTC with nanoseconds (`2025-01-01T12:00:00.000000001Z`), when
  the shim read the output;
- stream: `stdout` or `stderr` (a container with a tty has only stdout);
- tag: `F` for a record that ends a line, `P` for a piece of a line: one longer than
  16 KiB, or a last line the container left unterminated when it exited;
- content: the bytes of the line without its newline (a trailing carriage return is dropped
  too, as the CRI runtimes do).

The shim (`runtime/shim.py`) is the only writer; it cannot import this module, so this
docstring is the format's one description and the shim's `format_records` its one
implementation.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

CHUNK = 64 * 1024
_ATTEMPT = re.compile(r"^(\d+)\.log$")
_TIMESTAMP = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                        rb"(Z|[+-]\d\d:\d\d)$")


def log_path(pod_dir: Path, container: str, attempt: int) -> Path:
    """The log file of one run of a container."""
    return pod_dir / container / f"{attempt}.log"


def log_attempts(container_dir: Path) -> list[int]:
    """The attempts of a container that have a log file, oldest first (`<pod dir>/<container>`):
    `[-1]` is what `kubectl logs` reads, `[-2]` what `kubectl logs --previous` reads."""
    try:
        names = os.listdir(container_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := _ATTEMPT.match(name)))


def parse_timestamp(value: bytes) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp, or None if it is not one."""
    m = _TIMESTAMP.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != b"Z":
        sign = 1 if zone[:1] == b"+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = (m.group(7) or b"").ljust(9, b"0")
    return seconds * 1_000_000_000 + int(fraction)


def format_timestamp(ns: int) -> bytes:
    """RFC 3339 UTC with nine fraction digits, as `kubectl logs --timestamps` prints it."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return b"%s.%09dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode(),
                          fraction)


class _Output:
    """Turns records into what the user reads: prefixes stripped, pieces of a line joined,
    optional timestamps at the start of each line, `since` and `limit_bytes` applied."""

    def __init__(self, *, timestamps: bool, since: float | None, limit_bytes: int | None):
        self.timestamps = timestamps
        self.since_ns = None if since is None else int(since * 1_000_000_000)
        self.left = limit_bytes
        self.line_start = True
        self.skipping = False

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0

    def feed(self, records: list[bytes]) -> bytes:
        out = []
        for record in records:
            parts = record.split(b" ", 3)
            if len(parts) < 3:
                continue  # not a CRI record (a torn or foreign line)
            stamp, _stream, tag = parts[0], parts[1], parts[2]
            content = parts[3] if len(parts) == 4 else b""
            if self.line_start:
                ns = None
                if self.since_ns is not None or self.timestamps:
                    ns = parse_timestamp(stamp)
                self.skipping = self.since_ns is not None and (ns is None or ns < self.since_ns)
                if self.timestamps and not self.skipping:
                    out.append((format_timestamp(ns) if ns is not None else stamp) + b" ")
            full = tag != b"P"
            self.line_start = full
            if self.skipping:
                continue
            out.append(content + b"\n" if full else content)
        data = b"".join(out)
        if self.left is not None:
            data = data[:self.left]
            self.left -= len(data)
        return data


def _is_line_end(record: bytes) -> bool:
    parts = record.split(b" ", 3)
    return len(parts) >= 3 and parts[2] == b"F"


def _tail_offset(f, lines: int) -> int:
    """Where the last `lines` lines of the file start: after the (lines+1)-th record from
    the end that ends a line (F). Bytes after the last newline are no record yet."""
    size = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return size
    seen = 0
    position = size
    carry = b""  # the start of a record cut by the block boundary
    carry_end: int | None = None  # the offset of the newline ending it (None: none yet)
    while position > 0:
        step = min(CHUNK, position)
        position -= step
        f.seek(position)
        block = f.read(step) + carry
        pieces = block.split(b"\n")
        end = carry_end
        for piece in reversed(pieces[1:]):
            if end is not None and _is_line_end(piece):
                seen += 1
                if seen > lines:
                    return end + 1
            end = (position + len(block) if end is None else end) - len(piece) - 1
        carry, carry_end = pieces[0], end
    if carry_end is not None and _is_line_end(carry) and seen + 1 > lines:
        return carry_end + 1
    return 0


def _rotated(f, path: Path) -> bool:
    """Whether the open file is no longer the one at `path` (renamed and replaced)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False  # between the rename and the new file: look again
    opened = os.fstat(f.fileno())
    return (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev)


async def read_log(path: Path, *, follow: bool = False, tail_lines: int | None = None,
                   since: float | None = None, timestamps: bool = False,
                   limit_bytes: int | None = None,
                   running: Callable[[], bool] = lambda: False,
                   poll_interval: float = 0.1) -> AsyncIterator[bytes]:
    """Yield a container's output from its CRI log file, as `kubectl logs` shows it.

    `tail_lines` keeps the last N lines, `since` (epoch seconds) drops older lines,
    `timestamps` prefixes each line with its RFC 3339 time and a space, `limit_bytes`
    stops after that many bytes. With `follow`, keeps yielding what is appended (also
    across rotation) until `running()` is False and everything written has been read.
    """
    output = _Output(timestamps=timestamps, since=since, limit_bytes=limit_bytes)
    if output.done:
        return
    f = None
    while f is None:
        try:
            f = open(path, "rb")  # noqa: SIM115 - kept open across yields, closed below
        except FileNotFoundError:
            if not follow or not running():
                return
            await asyncio.sleep(poll_interval)
    try:
        f.seek(_tail_offset(f, tail_lines) if tail_lines is not None else 0)
        pending = b""
        last_look = False
        while True:
            chunk = f.read(CHUNK)
            if chunk:
                records = (pending + chunk).split(b"\n")
                pending = records.pop()
                data = output.feed(records)
                if data:
                    yield data
                if output.done:
                    return
                continue
            if not follow:
                return
            if _rotated(f, path):
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                pending = b""
                continue
            if last_look:
                return
            if not running():
                last_look = True  # one more pass: what was written before it stopped
                continue
            await asyncio.sleep(poll_interval)
    finally:
        f.close()
