"""The byte-level protocols of the kubelet's streaming endpoints: exec, attach, port-forward.

This module owns formats, not sockets: the kubelet server (`server.py`) moves the bytes, and
the tests drive the same definitions from the client side. Three protocols live here.

**WebSocket channel protocols** (exec, attach, and the Python client's port-forward). Every
message is one channel byte followed by payload. The subprotocol names the variant, and a
server picks the client's first offer it supports (apimachinery `wsstream.handshake`):

- `channel.k8s.io`, and an unnamed connection: binary; on failure the error channel gets the
  message text, on success nothing.
- `base64.channel.k8s.io`, `v4.base64.channel.k8s.io`: text messages, the channel as an
  ASCII digit, the payload base64.
- `v4.channel.k8s.io`: the error channel carries a `metav1.Status` as JSON at the end,
  Success included, and a non-zero exit as reason `NonZeroExitCode` with a cause of type
  `ExitCode` whose message is the code: exactly what client-go's `errorDecoderV4` and the
  Python client's `returncode` parse.
- `v5.channel.k8s.io` (kubectl >= 1.30 over WebSocket): v4 plus the close signal, a
  two-byte message `[255, channel]` by which the client ends its side of a channel (stdin
  EOF for `kubectl cp`, which cannot otherwise be told from a closed connection).

Channels for exec and attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (JSON
`{"Width": w, "Height": h}`, one object after another). The server first sends an empty
message on the lowest channel it will write (stdout, else stderr, else error) so the client
knows the stream is up. For port-forward over channels, port i of the request has a data
channel 2i and an error channel 2i+1, and the server opens both with the port number as
two little-endian bytes (kubelet `portforward/websocket.go`, Python `PortForward._proxy`).

**Status documents**: what the kubelet writes on the error channel, field for field as Go's
`json.Marshal(metav1.Status)` renders them (an empty `metadata`, no kind).

**SPDY/3.1** for port-forward: kubectl >= 1.30 asks for the WebSocket subprotocol
`SPDY/3.1+portforward.k8s.io` and then runs an ordinary SPDY/3.1 client connection through
the WebSocket, its bytes carried in binary messages with no framing of their own and frame
boundaries anywhere (client-go `portforward/tunneling_connection.go`). Per forwarded
connection it opens an error stream and a data stream, with headers `streamtype`, `port` and
`requestid`. `SpdyFramer` encodes and parses frames (header blocks compressed by one zlib
stream per direction, primed with the dictionary from the SPDY/3 draft); `SpdySession` is
the server side of a connection: it hands new streams to its caller to accept or refuse,
echoes pings and routes data to streams. There is no flow control to speak of: the Go
implementation kubectl uses (moby spdystream) never sends WINDOW_UPDATE and ignores it, and
so does this one; a stream's reader that falls behind holds up the connection instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# -- WebSocket channel protocols ---------------------------------------------------------------

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
#: First byte of the v5 close signal; the second byte is the channel being closed.
CLOSE_SIGNAL = 255

#: The WebSocket subprotocol with which kubectl tunnels SPDY for port-forward.
SPDY_PORT_FORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"


@dataclass(frozen=True)
class ChannelProtocol:
    """One variant of the channel protocol, as its subprotocol name selects it."""

    name: str
    #: Text messages: channel as an ASCII digit, payload in base64.
    base64: bool = False
    #: The error channel carries a JSON metav1.Status (v4 and later).
    status_json: bool = False
    #: The client may send `[255, channel]` to close its side of a channel (v5).
    stream_close: bool = False

    def encode(self, channel: int, data: bytes = b"") -> bytes | str:
        """One WebSocket message carrying `data` on `channel` (str: send as a text message)."""
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode("ascii")
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> ChannelMessage | None:
        """The channel and payload of a message from the client; None for an empty or
        undecodable message, which the real server skips too."""
        raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        if not raw:
            return None
        if self.stream_close and raw[0] == CLOSE_SIGNAL:
            if len(raw) != 2:
                return None
            return ChannelMessage(raw[1], b"", close=True)
        if self.base64:
            try:
                return ChannelMessage(raw[0] - ord("0"), base64.b64decode(raw[1:], validate=True))
            except (binascii.Error, ValueError):
                return None
        return ChannelMessage(raw[0], raw[1:])


class ChannelMessage(NamedTuple):
    channel: int
    data: bytes
    #: A v5 close signal: the client will send nothing more on `channel`.
    close: bool = False


V5 = ChannelProtocol("v5.channel.k8s.io", status_json=True, stream_close=True)
V4 = ChannelProtocol("v4.channel.k8s.io", status_json=True)
V4_BASE64 = ChannelProtocol("v4.base64.channel.k8s.io", base64=True, status_json=True)
V1 = ChannelProtocol("channel.k8s.io")
V1_BASE64 = ChannelProtocol("base64.channel.k8s.io", base64=True)
#: A client that named no subprotocol gets the original binary protocol.
UNNAMED = ChannelProtocol("")

#: What exec and attach speak (the CRI streaming server's list, plus v5).
REMOTE_COMMAND_PROTOCOLS: Mapping[str, ChannelProtocol] = {
    p.name: p for p in (V5, V4, V4_BASE64, V1, V1_BASE64, UNNAMED)
}
#: What port-forward speaks over channels (kubelet `portforward/websocket.go`).
PORT_FORWARD_PROTOCOLS: Mapping[str, ChannelProtocol] = {
    p.name: p for p in (V4, V4_BASE64, UNNAMED)
}


def negotiate(offered: Sequence[str], supported: Iterable[str]) -> str | None:
    """The subprotocol to answer with: the client's first offer that is supported, "" when
    the client offered none, None when nothing offered is supported."""
    allowed = set(supported)
    for name in offered or [""]:
        if name in allowed:
            return name
    return None


def offered_protocols(header: str | None) -> list[str]:
    """The subprotocols of a `Sec-WebSocket-Protocol` header, in the client's order."""
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def port_prefix(port: int) -> bytes:
    """What the server first writes on both channels of a forwarded port."""
    return struct.pack("<H", port)


class ResizeDecoder:
    """Terminal sizes from the resize channel: JSON objects one after another, split or
    joined across messages in any way (the server reads them with a streaming decoder)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        """The (width, height) pairs completed by `data`."""
        self._buffer += data.decode("utf-8", "replace")
        sizes: list[tuple[int, int]] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return sizes
            try:
                value, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                self._buffer = text
                return sizes
            self._buffer = text[end:]
            if isinstance(value, dict):
                fields = {str(k).lower(): v for k, v in value.items()}
                width, height = fields.get("width", 0), fields.get("height", 0)
                if isinstance(width, int) and isinstance(height, int):
                    sizes.append((width, height))


# -- Status documents --------------------------------------------------------------------------

NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, argv: Sequence[str]) -> dict[str, Any]:
    """A command that ended with a non-zero code. The code must fit a byte (client-go parses
    it as uint8): a death by signal N is reported as 128+N, as the container runtimes do."""
    if code < 0:
        code = 128 - code
    code &= 0xFF
    command = "[" + " ".join(argv) + "]"
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: "
                   f"error executing command {command}, exit code {code}",
        "reason": NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def internal_error_status(error: str) -> dict[str, Any]:
    """`apierrors.NewInternalError`: how the kubelet reports an exec or attach that failed
    to start; kubectl prints its message after "error: "."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {error}",
        "reason": "InternalError",
        "details": {"causes": [{"message": error}]},
        "code": 500,
    }


def error_channel_payload(protocol: ChannelProtocol, status: Mapping[str, Any]) -> bytes | None:
    """What the error channel carries at the end under `protocol` (None: nothing)."""
    if protocol.status_json:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode()


# -- SPDY/3.1 framing --------------------------------------------------------------------------

SPDY_VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

#: Largest payload a frame's 24-bit length can describe.
MAX_FRAME_PAYLOAD = (1 << 24) - 1


def _spdy3_dictionary() -> bytes:
    """The zlib dictionary of SPDY/3 header compression (draft-mbelshe-httpbis-spdy-00,
    section 2.6.10.1): header names and common values, each length-prefixed ("|" stands
    for a space inside one), followed by status lines, dates and media types run together."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status 200|OK version HTTP/1.1 url public set-cookie "
        "keep-alive origin"
    ).split(" ")
    prefixed = b"".join(
        struct.pack(">I", len(w)) + w.encode("ascii") for w in (w.replace("|", " ") for w in words)
    )
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode("ascii")


SPDY3_DICTIONARY = _spdy3_dictionary()

#: Header names to values; names are lower case on the wire, several values of one name
#: travel NUL-separated.
SpdyHeaders = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStreamFrame:
    stream_id: int
    headers: SpdyHeaders
    associated_to: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReplyFrame:
    stream_id: int
    headers: SpdyHeaders
    fin: bool = False


@dataclass(frozen=True)
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass(frozen=True)
class SettingsFrame:
    #: (flags, id, value) per setting.
    entries: tuple[tuple[int, int, int], ...] = ()
    clear: bool = False


@dataclass(frozen=True)
class PingFrame:
    ping_id: int


@dataclass(frozen=True)
class GoAwayFrame:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: SpdyHeaders
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdateFrame:
    stream_id: int
    delta: int


SpdyFrame = (DataFrame | SynStreamFrame | SynReplyFrame | RstStreamFrame | SettingsFrame
             | PingFrame | GoAwayFrame | HeadersFrame | WindowUpdateFrame)


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3: the connection cannot continue."""


class SpdyFramer:
    """Frames to bytes and bytes to frames for one end of a SPDY/3 connection.

    Header compression is one zlib stream per direction for the whole connection, so a
    framer must see every frame of its connection, in order: encode frames in the order
    they are sent, and feed received bytes in the order they arrive."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(zdict=SPDY3_DICTIONARY)
        self._decompressor = zlib.decompressobj(zdict=SPDY3_DICTIONARY)
        self._buffer = bytearray()

    def encode(self, frame: SpdyFrame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_FRAME_PAYLOAD:
                raise ValueError("DATA frame payload too large")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                               flags << 24 | len(frame.data)) + frame.data
        if isinstance(frame, SynStreamFrame):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL
                                                      if frame.unidirectional else 0)
            body = struct.pack(">IIBB", frame.stream_id & 0x7FFFFFFF,
                               frame.associated_to & 0x7FFFFFFF, (frame.priority & 0x7) << 5,
                               frame.slot) + self._compress(frame.headers)
            return _control(SYN_STREAM, flags, body)
        if isinstance(frame, SynReplyFrame):
            body = struct.pack(">I", frame.stream_id & 0x7FFFFFFF) + self._compress(frame.headers)
            return _control(SYN_REPLY, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, HeadersFrame):
            body = struct.pack(">I", frame.stream_id & 0x7FFFFFFF) + self._compress(frame.headers)
            return _control(HEADERS, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStreamFrame):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                                                       frame.status))
        if isinstance(frame, SettingsFrame):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags & 0xFF) << 24 | (ident & 0xFFFFFF), value)
                for flags, ident, value in frame.entries)
            return _control(SETTINGS, 1 if frame.clear else 0, body)
        if isinstance(frame, PingFrame):
            return _control(PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAwayFrame):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id & 0x7FFFFFFF,
                                                   frame.status))
        if isinstance(frame, WindowUpdateFrame):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                                                          frame.delta & 0x7FFFFFFF))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    def feed(self, data: bytes) -> list[SpdyFrame]:
        """The frames that `data` completes; a partial frame waits for more bytes. Unknown
        control frame types are skipped, as SPDY/3 asks."""
        self._buffer += data
        frames: list[SpdyFrame] = []
        while len(self._buffer) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buffer)
            length = flags_length & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            flags = flags_length >> 24
            if not word & 0x80000000:
                frames.append(DataFrame(word & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
                continue
            version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
            if version != SPDY_VERSION:
                raise SpdyProtocolError(f"unsupported SPDY version {version}")
            frame = self._parse_control(kind, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _parse_control(self, kind: int, flags: int, payload: bytes) -> SpdyFrame | None:
        try:
            if kind == SYN_STREAM:
                stream_id, associated, priority, slot = struct.unpack_from(">IIBB", payload)
                return SynStreamFrame(stream_id & 0x7FFFFFFF, self._decompress(payload[10:]),
                                      associated & 0x7FFFFFFF, priority >> 5, slot,
                                      bool(flags & FLAG_FIN), bool(flags & FLAG_UNIDIRECTIONAL))
            if kind in (SYN_REPLY, HEADERS):
                (stream_id,) = struct.unpack_from(">I", payload)
                headers = self._decompress(payload[4:])
                cls = SynReplyFrame if kind == SYN_REPLY else HeadersFrame
                return cls(stream_id & 0x7FFFFFFF, headers, bool(flags & FLAG_FIN))
            if kind == RST_STREAM:
                stream_id, status = struct.unpack_from(">II", payload)
                return RstStreamFrame(stream_id & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", payload)
                entries = tuple(
                    (word >> 24, word & 0xFFFFFF, value)
                    for word, value in struct.iter_unpack(">II", payload[4:4 + 8 * count]))
                return SettingsFrame(entries, bool(flags & 1))
            if kind == PING:
                return PingFrame(struct.unpack_from(">I", payload)[0])
            if kind == GOAWAY:
                last_good, status = struct.unpack_from(">II", payload)
                return GoAwayFrame(last_good & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from(">II", payload)
                return WindowUpdateFrame(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as err:
            raise SpdyProtocolError(f"truncated control frame of type {kind}") from err
        return None

    def _compress(self, headers: SpdyHeaders) -> bytes:
        block = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            key = name.lower().encode("utf-8")
            value = "\x00".join(values).encode("utf-8")
            block += [struct.pack(">I", len(key)), key, struct.pack(">I", len(value)), value]
        return self._compressor.compress(b"".join(block)) + self._compressor.flush(
            zlib.Z_SYNC_FLUSH)

    def _decompress(self, compressed: bytes) -> dict[str, list[str]]:
        try:
            block = self._decompressor.decompress(compressed)
        except zlib.error as err:
            raise SpdyProtocolError(f"bad header block: {err}") from err
        try:
            (count,) = struct.unpack_from(">I", block)
            offset = 4
            headers: dict[str, list[str]] = {}
            for _ in range(count):
                (size,) = struct.unpack_from(">I", block, offset)
                name = block[offset + 4:offset + 4 + size].decode("utf-8").lower()
                offset += 4 + size
                (size,) = struct.unpack_from(">I", block, offset)
                value = block[offset + 4:offset + 4 + size].decode("utf-8")
                offset += 4 + size
                headers.setdefault(name, []).extend(value.split("\x00"))
        except (struct.error, UnicodeDecodeError) as err:
            raise SpdyProtocolError("malformed header block") from err
        return headers


def _control(kind: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_FRAME_PAYLOAD:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | SPDY_VERSION, kind, flags << 24 | len(body)) + body


# -- SPDY sessions -----------------------------------------------------------------------------

#: Largest DATA payload a stream sends in one frame.
DATA_CHUNK = 32 * 1024
#: Received DATA frames a stream holds before the connection waits for its reader.
STREAM_BUFFER_FRAMES = 64


@dataclass(eq=False)
class SpdyStream:
    """A stream the peer opened. `read()` returns b"" once the peer finished or reset it."""

    session: SpdySession
    id: int
    headers: Mapping[str, Sequence[str]]
    _inbox: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(STREAM_BUFFER_FRAMES))
    _remote_done: bool = False
    _local_done: bool = False
    _reset: bool = False

    def header(self, name: str) -> str:
        """The first value of a header ("" if absent)."""
        values = self.headers.get(name.lower()) or [""]
        return values[0]

    async def read(self) -> bytes:
        if self._remote_done and self._inbox.empty():
            return b""
        return await self._inbox.get()

    async def write(self, data: bytes) -> None:
        if self._local_done or self._reset:
            raise ConnectionResetError(f"SPDY stream {self.id} is closed")
        view = memoryview(data)
        for start in range(0, len(view), DATA_CHUNK):
            await self.session.send(DataFrame(self.id, bytes(view[start:start + DATA_CHUNK])))

    async def close(self) -> None:
        """Half-close: tell the peer this side sends nothing more (an empty DATA with FIN)."""
        if not self._local_done and not self._reset:
            self._local_done = True
            await self.session.send(DataFrame(self.id, b"", fin=True))

    async def reset(self, status: int = CANCEL) -> None:
        if not self._reset:
            self._abandon()
            await self.session.send(RstStreamFrame(self.id, status))
        self.session.discard(self)

    def _finish_remote(self) -> None:
        if not self._remote_done:
            self._remote_done = True
            # A full inbox has data to wake its reader; the end then shows in `read`.
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(b"")

    def _abandon(self) -> None:
        """Nobody will read what is queued: drop it (unblocking a waiting `receive`) and
        end the stream both ways."""
        self._reset = True
        self._local_done = True
        while not self._inbox.empty():
            self._inbox.get_nowait()
        self._finish_remote()


class SpdySession:
    """The server end of a SPDY/3.1 connection whose bytes arrive through `receive` and
    leave through `send_bytes` (for kubectl's port-forward: WebSocket binary messages).

    `receive` hands back the streams the peer opened; the caller answers each with
    `accept` (SYN_REPLY) or `refuse` (RST_STREAM). Pings are echoed; SETTINGS,
    WINDOW_UPDATE, HEADERS and GOAWAY are ignored (the peer closes the connection after its
    GOAWAY, and that ends the session)."""

    def __init__(self, send_bytes: Callable[[bytes], Awaitable[None]]) -> None:
        self._send_bytes = send_bytes
        self._framer = SpdyFramer()
        self._send_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._last_stream_id = 0

    async def send(self, frame: SpdyFrame) -> None:
        # Compression state follows send order, so encoding and sending are one step.
        async with self._send_lock:
            await self._send_bytes(self._framer.encode(frame))

    async def receive(self, data: bytes) -> list[SpdyStream]:
        opened: list[SpdyStream] = []
        for frame in self._framer.feed(data):
            if isinstance(frame, SynStreamFrame):
                stream = await self._open(frame)
                if stream is not None:
                    opened.append(stream)
            elif isinstance(frame, DataFrame):
                stream = self._streams.get(frame.stream_id)
                if stream is None or stream._remote_done:
                    continue
                if frame.data:
                    await stream._inbox.put(frame.data)
                if frame.fin:
                    stream._finish_remote()
            elif isinstance(frame, RstStreamFrame):
                stream = self._streams.pop(frame.stream_id, None)
                if stream is not None:
                    stream._abandon()
            elif isinstance(frame, PingFrame):
                await self.send(frame)
        return opened

    async def accept(self, stream: SpdyStream) -> None:
        await self.send(SynReplyFrame(stream.id, {}))

    async def refuse(self, stream: SpdyStream, status: int = REFUSED_STREAM) -> None:
        await stream.reset(status)

    def discard(self, stream: SpdyStream) -> None:
        """Forget a stream this side is done with: later frames for it are dropped."""
        self._streams.pop(stream.id, None)
        stream._abandon()

    def close(self) -> None:
        """End every stream, for when the connection is gone."""
        for stream in list(self._streams.values()):
            stream._abandon()
        self._streams.clear()

    async def _open(self, frame: SynStreamFrame) -> SpdyStream | None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_stream_id:
            await self.send(RstStreamFrame(frame.stream_id, PROTOCOL_ERROR))
            return None
        self._last_stream_id = frame.stream_id
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        self._streams[frame.stream_id] = stream
        if frame.fin:
            stream._finish_remote()
        return stream
