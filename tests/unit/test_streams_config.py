import pytest

from datastream.streams import Stream, StreamConfigError, log_name, parse_streams


def test_macros_defaults_and_names():
    doc = {"streams": [{"channel": "$(P)SE:TEMP", "units": "K"},
                       {"channel": "$(P)SE:FIELD", "protocol": "pva", "schema": "f144",
                        "name": "Field", "periodic": False}]}
    streams = parse_streams(doc, "X_sampleEnv", {"P": "IN:X:"})
    assert streams[0].stream == Stream("IN:X:SE:TEMP", "ca", "f142", "X_sampleEnv")
    assert streams[0].name == "TEMP" and streams[0].units == "K" and streams[0].periodic
    assert streams[1].stream.protocol == "pva" and not streams[1].periodic


def test_duplicates_are_dropped():
    doc = {"streams": [{"channel": "A:B"}, {"channel": "A:B"}]}
    assert len(parse_streams(doc, "t", {})) == 1


@pytest.mark.parametrize(("doc", "message"), [
    ({"streams": [{"channel": "A", "protocol": "http"}]}, "protocol"),
    ({"streams": [{"channel": "A", "schema": "x9x9"}]}, "schema"),
    ({"streams": [{"channel": "A", "colour": "red"}]}, "unknown keys"),
    ({"streams": [{"channel": "$(Q)A"}]}, "macro"),
    ({"streams": [{"channel": "X:A"}, {"channel": "Y:A", "schema": "f144"}]}, "log name"),
    ({"stream": []}, "streams"),
    ({"streams": [{"channel": "A", "dtype": "complex"}]}, "dtype"),
    ({"streams": [{"channel": "A", "array_size": -1}]}, "array_size"),
])
def test_bad_config_is_explained(doc, message):
    with pytest.raises(StreamConfigError, match=message):
        parse_streams(doc, "t", {})


def test_log_name():
    assert log_name("IN:DEMO:SE:TEMP:SP") == "SP"
    assert log_name("IN:DEMO:SE:B-FIELD") == "B_FIELD"


def test_file_types_reach_the_nexus_template():
    from ioc.nexus_template import _logs

    streams = parse_streams({"streams": [
        {"channel": "A:SPEC", "array_size": 8, "units": "counts"},
        {"channel": "A:STAT", "dtype": "string"}]}, "t", {})
    configs = [log["children"][0]["config"] for log in _logs(streams)]
    assert configs[0] == {"topic": "t", "source": "A:SPEC", "dtype": "double", "array_size": 8,
                          "value_units": "counts"}
    assert configs[1] == {"topic": "t", "source": "A:STAT", "dtype": "string"}
