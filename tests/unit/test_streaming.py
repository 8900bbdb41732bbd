"""The stream protocols: WebSocket channel framing, error-channel Status, SPDY/3.1 framing."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import pytest

from pilothouse.node import streaming
from pilothouse.node.streaming import (
    CLOSE_SIGNAL,
    SPDY3_DICTIONARY,
    V1,
    V4,
    V4_BASE64,
    V5,
    ChannelMessage,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    SpdyFramer,
    SpdyProtocolError,
    SpdySession,
    SynReplyFrame,
    SynStreamFrame,
    WindowUpdateFrame,
)

# -- channel protocols -------------------------------------------------------------------------


def test_binary_channels_put_the_channel_byte_first() -> None:
    assert V5.encode(streaming.STDOUT, b"hi") == b"\x01hi"
    assert V4.decode(b"\x00input") == ChannelMessage(0, b"input")
    # The Python client writes str data as a text message: the channel is its first char.
    assert V4.decode("\x00text\n") == ChannelMessage(0, b"text\n")
    assert V4.decode(b"") is None


def test_base64_channels_use_a_digit_and_base64_text() -> None:
    assert V4_BASE64.encode(streaming.STDERR, b"hi") == "2aGk="
    assert V4_BASE64.decode("0aGk=") == ChannelMessage(0, b"hi")
    assert V4_BASE64.decode("0not base64!") is None


def test_only_v5_has_the_close_signal() -> None:
    assert V5.decode(bytes([CLOSE_SIGNAL, streaming.STDIN])) == ChannelMessage(0, b"", close=True)
    assert V5.decode(bytes([CLOSE_SIGNAL, 0, 0])) is None
    assert V4.decode(bytes([CLOSE_SIGNAL, 0])) == ChannelMessage(255, b"\x00")


def test_negotiation_takes_the_clients_first_supported_offer() -> None:
    supported = streaming.REMOTE_COMMAND_PROTOCOLS
    assert streaming.negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"], supported) == \
        "v4.channel.k8s.io"
    assert streaming.negotiate(["v6.channel.k8s.io", "v5.channel.k8s.io"], supported) == \
        "v5.channel.k8s.io"
    assert streaming.negotiate([], supported) == ""
    assert streaming.negotiate(["v5.channel.k8s.io"], streaming.PORT_FORWARD_PROTOCOLS) is None
    assert streaming.offered_protocols(" v5.channel.k8s.io , v4.channel.k8s.io") == \
        ["v5.channel.k8s.io", "v4.channel.k8s.io"]


def test_port_forward_channels_open_with_the_port_little_endian() -> None:
    assert streaming.port_prefix(8080) == bytes([0x90, 0x1F])


def test_resize_messages_may_be_split_or_joined() -> None:
    sizes = streaming.ResizeDecoder()
    assert sizes.feed(b'{"Width":80,') == []
    assert sizes.feed(b'"Height":24}{"width":100,"height":40}') == [(80, 24), (100, 40)]
    assert sizes.feed(b' \n') == []


# -- Status on the error channel ---------------------------------------------------------------


def test_success_is_the_status_go_marshals() -> None:
    payload = streaming.error_channel_payload(V5, streaming.success_status())
    assert payload == b'{"metadata":{},"status":"Success"}'
    assert streaming.error_channel_payload(V1, streaming.success_status()) is None


def _client_go_exit_code(payload: bytes) -> int:
    """What client-go's errorDecoderV4 makes of the error channel: the code it exits with."""
    status = json.loads(payload)
    if status["status"] == "Success":
        return 0
    assert status["reason"] == "NonZeroExitCode"
    cause = next(c for c in status["details"]["causes"] if c["reason"] == "ExitCode")
    code = int(cause["message"])
    assert 0 <= code <= 255  # strconv.ParseUint(msg, 10, 8)
    return code


def test_a_non_zero_exit_carries_its_code_as_a_cause() -> None:
    status = streaming.exit_code_status(3, ["sh", "-c", "exit 3"])
    payload = streaming.error_channel_payload(V4, status)
    assert payload is not None and _client_go_exit_code(payload) == 3
    assert status["message"] == ("command terminated with non-zero exit code: "
                                 "error executing command [sh -c exit 3], exit code 3")
    # Death by SIGKILL is 137, as runtimes report it; client-go would reject -9.
    killed = streaming.error_channel_payload(V5, streaming.exit_code_status(-9, ["sleep"]))
    assert killed is not None and _client_go_exit_code(killed) == 137


def test_pre_v4_protocols_carry_the_message_only() -> None:
    status = streaming.internal_error_status("boom")
    assert streaming.error_channel_payload(V1, status) == b"Internal error occurred: boom"
    assert json.loads(streaming.error_channel_payload(V4, status) or b"") == {
        "metadata": {}, "status": "Failure", "message": "Internal error occurred: boom",
        "reason": "InternalError", "details": {"causes": [{"message": "boom"}]}, "code": 500}


# -- SPDY/3.1 framing --------------------------------------------------------------------------


def test_the_header_dictionary_is_the_spdy3_one() -> None:
    # Length and Adler-32 of the dictionary in the SPDY/3 draft (and in the Go framer kubectl
    # uses): a zlib stream names its dictionary by this checksum, so a wrong byte breaks
    # every header block a real client sends.
    assert len(SPDY3_DICTIONARY) == 1423
    assert zlib.adler32(SPDY3_DICTIONARY) == 0xE3C6A7C2
    block = SpdyFramer().encode(SynReplyFrame(1, {"a": ["b"]}))[12:]
    assert block[1] & 0x20, "header blocks must announce a preset dictionary"
    assert struct.unpack(">I", block[2:6])[0] == 0xE3C6A7C2


ALL_FRAMES = [
    SynStreamFrame(1, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]},
                   priority=2, fin=True),
    SynStreamFrame(3, {"streamtype": ["data"], "multi": ["a", "b"]}, associated_to=1,
                   unidirectional=True),
    SynReplyFrame(3, {}),
    HeadersFrame(3, {"x-extra": ["1"]}, fin=True),
    DataFrame(3, b"payload"),
    DataFrame(3, b"", fin=True),
    RstStreamFrame(5, streaming.CANCEL),
    SettingsFrame(((0, 7, 65536), (1, 4, 100)), clear=True),
    PingFrame(1),
    GoAwayFrame(7, 0),
    WindowUpdateFrame(3, 1024),
]


def test_frames_round_trip() -> None:
    sender, receiver = SpdyFramer(), SpdyFramer()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES)
    assert receiver.feed(wire) == ALL_FRAMES


def test_frames_split_at_any_byte_are_reassembled() -> None:
    # kubectl's framer writes a frame in several writes, each its own WebSocket message.
    sender, receiver = SpdyFramer(), SpdyFramer()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES)
    frames = [frame for i in range(len(wire)) for frame in receiver.feed(wire[i:i + 1])]
    assert frames == ALL_FRAMES


def test_wire_layout_of_data_and_control_frames() -> None:
    framer = SpdyFramer()
    assert framer.encode(DataFrame(1, b"abc", fin=True)) == b"\x00\x00\x00\x01\x01\x00\x00\x03abc"
    assert framer.encode(PingFrame(7)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    syn = framer.encode(SynStreamFrame(5, {"Port": ["80"]}, fin=True))
    control, kind, flags_length = struct.unpack(">HHI", syn[:8])
    assert (control, kind, flags_length >> 24) == (0x8003, 1, 0x01)
    assert flags_length & 0xFFFFFF == len(syn) - 8
    # Names go lower case on the wire, in a block only the dictionary-primed stream reads.
    block = zlib.decompressobj(zdict=SPDY3_DICTIONARY).decompress(syn[18:])
    assert block == struct.pack(">I", 1) + struct.pack(">I", 4) + b"port" + \
        struct.pack(">I", 2) + b"80"


def test_header_compression_is_one_stream_per_direction() -> None:
    sender = SpdyFramer()
    first = sender.encode(SynStreamFrame(1, {"port": ["80"]}))
    second = sender.encode(SynStreamFrame(3, {"port": ["80"]}))
    assert len(second) < len(first)  # the second block refers back to the first
    receiver = SpdyFramer()
    assert receiver.feed(first + second) == [SynStreamFrame(1, {"port": ["80"]}),
                                             SynStreamFrame(3, {"port": ["80"]})]
    with pytest.raises(SpdyProtocolError):
        SpdyFramer().feed(second)


def test_unknown_control_frames_are_skipped_and_other_versions_refused() -> None:
    framer = SpdyFramer()
    unknown = struct.pack(">HHI", 0x8003, 0xF0, 2) + b"??"
    assert framer.feed(unknown + SpdyFramer().encode(PingFrame(3))) == [PingFrame(3)]
    with pytest.raises(SpdyProtocolError):
        SpdyFramer().feed(struct.pack(">HHI", 0x8002, 6, 4) + b"\x00\x00\x00\x01")


def test_a_session_answers_streams_and_pings_and_routes_data() -> None:
    async def go() -> None:
        sent: list[bytes] = []

        async def send(data: bytes) -> None:
            sent.append(data)

        client, reader = SpdyFramer(), SpdyFramer()
        session = SpdySession(send)
        opened = await session.receive(client.encode(
            SynStreamFrame(1, {"streamtype": ["data"], "port": ["80"]})))
        assert [s.header("StreamType") for s in opened] == ["data"]
        stream = opened[0]
        await session.accept(stream)
        assert reader.feed(b"".join(sent)) == [SynReplyFrame(1, {})]
        sent.clear()

        assert await session.receive(client.encode(DataFrame(1, b"hello")) +
                                     client.encode(PingFrame(1))) == []
        assert await stream.read() == b"hello"
        await stream.write(b"x" * (streaming.DATA_CHUNK + 1))
        await stream.close()
        frames = reader.feed(b"".join(sent))
        assert frames[0] == PingFrame(1)
        assert frames[1:] == [DataFrame(1, b"x" * streaming.DATA_CHUNK), DataFrame(1, b"x"),
                              DataFrame(1, b"", fin=True)]
        sent.clear()

        await session.receive(client.encode(DataFrame(1, b"", fin=True)))
        assert await stream.read() == b""
        # Streams go up in odd ids; anything else is refused.
        await session.receive(client.encode(SynStreamFrame(2, {})))
        assert reader.feed(b"".join(sent)) == [RstStreamFrame(2, streaming.PROTOCOL_ERROR)]

    asyncio.run(go())


def test_a_reset_ends_reading_and_drops_what_was_queued() -> None:
    async def go() -> None:
        async def send(data: bytes) -> None:
            return None

        client = SpdyFramer()
        session = SpdySession(send)
        (stream,) = await session.receive(client.encode(SynStreamFrame(1, {})))
        await session.receive(client.encode(DataFrame(1, b"late")) +
                              client.encode(RstStreamFrame(1, streaming.CANCEL)))
        assert await stream.read() == b""
        with pytest.raises(ConnectionResetError):
            await stream.write(b"nobody listens")
        # Frames for a stream that is gone are dropped.
        assert await session.receive(client.encode(DataFrame(1, b"more"))) == []

    asyncio.run(go())
