"""fc00/rf5k commands, the storage message, stream ownership, options, IBEX block names."""

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00
from streaming_data_types.forwarder_config_update_rf5k import StreamInfo as Rf5kStream
from streaming_data_types.forwarder_config_update_rf5k import serialise_rf5k

from datastream.schemas import MalformedMessage
from datastream.streams import Stream
from forwarder.config_update import Action, apply_command, decode_command, encode_configuration
from forwarder.ibex_blocks import block_streams, decode_block_names, encode_block_names
from forwarder.options import OptionError, resolve_options
from forwarder.stream_set import StreamSet

A = Stream("TE:X:A", "ca", "f142", "X_sampleEnv")
B = Stream("TE:X:B", "pva", "f144", "X_sampleEnv")
C = Stream("TE:Y:C", "ca", "f142", "Y_sampleEnv")


def fc00(action, *streams):
    return serialise_fc00(action.value, [
        StreamInfo(s.channel, s.schema, s.topic,
                   Protocol.CA if s.protocol == "ca" else Protocol.PVA, periodic)
        for s, periodic in streams])


def run(current, message):
    return apply_command(current, decode_command(message))


def test_add_remove_replace_removeall():
    state = run({}, fc00(Action.ADD, (A, 1), (B, 0), (A, 1)))
    assert state == {A: True, B: False}
    state = run(state, fc00(Action.ADD, (C, 0)))
    assert set(state) == {A, B, C}
    state = run(state, serialise_fc00(Action.REMOVE.value, [
        StreamInfo("TE:X:*", "", "X_*", Protocol.CA, 0)]))
    assert state == {C: False}
    assert run(state, fc00(Action.REPLACE, (B, 1))) == {B: True}
    assert run(state, serialise_fc00(Action.REMOVEALL.value, [])) == {}


def test_remove_with_question_mark_and_schema():
    state = {A: True, B: False}
    message = serialise_fc00(Action.REMOVE.value, [
        StreamInfo("TE:X:?", "f144", "*", Protocol.PVA, 0)])
    assert run(state, message) == {A: True}


def test_rf5k_is_understood():
    message = serialise_rf5k(Action.ADD.value, [Rf5kStream(A.channel, "f142", A.topic,
                                                           Protocol.CA)])
    assert run({}, message) == {A: False}


def test_bad_streams_are_rejected_one_by_one():
    message = serialise_fc00(Action.ADD.value, [
        StreamInfo("TE:X:A", "f142", "X_sampleEnv", Protocol.CA, 0),
        StreamInfo("TE:X:FAKE", "f142", "X_sampleEnv", Protocol.FAKE, 0),
        StreamInfo("TE:X:Z", "zz99", "X_sampleEnv", Protocol.CA, 0),
        StreamInfo("", "f142", "X_sampleEnv", Protocol.CA, 0),
    ])
    command = decode_command(message)
    assert list(command.streams) == [A] and len(command.rejected) == 3


@pytest.mark.parametrize("payload", [
    b"", b"garbage!garbage!", b"\0\0\0\0fc00" + b"\xff" * 8, b"\x0c\0\0\0fc00" + b"\xff" * 8,
    b"\0\0\0\0f142xxxxxxxx"])
def test_malformed_config_messages_raise_malformed(payload):
    with pytest.raises(MalformedMessage):
        decode_command(payload)


def test_storage_message_restores_the_set():
    state = {A: True, B: False}
    assert run({C: True}, encode_configuration(state)) == state
    assert run({C: True}, encode_configuration({})) == {}


def test_stream_owners_share_without_doubling():
    owners = StreamSet()
    assert owners.set("file", {A: False})
    assert owners.set("topic", {A: True, B: False})
    assert not owners.set("topic", {A: True, B: False})
    assert owners.merged() == {A: True, B: False}
    owners.set("topic", {})
    assert owners.merged() == {A: False}


def test_options_command_line_then_environment_then_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[forwarder]\nstatus_interval_s = 7\nibex_blocks = true\n'
                      'config_topic = "from_file"\n')

    class Args:
        config_topic = "from_cli"

    env = {"DATASTREAM_FORWARDER_CONFIG_TOPIC": "from_env",
           "DATASTREAM_FORWARDER_PERIODIC_INTERVAL_S": "2.5"}
    options = resolve_options(Args(), config, env)
    assert options.config_topic == "from_cli"
    assert options.periodic_interval_s == 2.5 and options.status_interval_s == 7.0
    assert options.ibex_blocks is True
    assert resolve_options(None, config, env).config_topic == "from_env"
    with pytest.raises(OptionError, match="ibex_blocks"):
        resolve_options(None, config, {"DATASTREAM_FORWARDER_IBEX_BLOCKS": "maybe"})


def test_ibex_block_names_round_trip_from_a_char_waveform():
    text = encode_block_names(["Temp1", "Field"])
    waveform = list(text.encode()) + [0] * 20
    assert decode_block_names(waveform) == ["Temp1", "Field"]
    assert decode_block_names(b"") == []
    streams = block_streams("IN:X:", ["Temp1"], "X_sampleEnv")
    assert list(streams) == [Stream("IN:X:CS:SB:Temp1", "ca", "f142", "X_sampleEnv")]
    with pytest.raises(MalformedMessage):
        decode_block_names("not hex")


def test_an_empty_channel_topic_or_schema_in_a_remove_matches_any():
    """ESS forwarder semantics: "remove these PVs wherever they go" leaves the topic empty."""
    state = {A: True, B: False}
    assert run(state, serialise_fc00(Action.REMOVE.value, [
        StreamInfo(A.channel, "", "", Protocol.CA, 0)])) == {B: False}
    assert run(state, serialise_fc00(Action.REMOVE.value, [
        StreamInfo("", "", B.topic, Protocol.CA, 0)])) == {}
