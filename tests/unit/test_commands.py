import json
import uuid

import pytest
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from filewriter.commands import CommandError, parse_start, parse_stop

JOB = str(uuid.uuid4())


def pl72(**overrides):
    args = {"job_id": JOB, "filename": "X00000001.nxs", "start_time": 1_700_000_000_000,
            "nexus_structure": json.dumps({"children": []})} | overrides
    return serialise_pl72(**args)


def test_start_times_are_converted_from_ms_to_ns():
    start = parse_start(pl72(stop_time=1_700_000_000_500))
    assert start.start_ns == 1_700_000_000_000_000_000
    assert start.stop_ns == 1_700_000_000_500_000_000
    assert parse_start(pl72()).stop_ns is None


@pytest.mark.parametrize(("overrides", "code", "message"), [
    ({"job_id": ""}, 400, "without job_id"),
    ({"job_id": "run-1"}, 400, "not a UUID"),
    ({"filename": ""}, 400, "without filename"),
    ({"nexus_structure": ""}, 400, "without nexus_structure"),
    ({"nexus_structure": "{not json"}, 500, "not valid JSON"),
])
def test_bad_starts_get_kafka_to_nexus_codes(overrides, code, message):
    with pytest.raises(CommandError, match=message) as info:
        parse_start(pl72(**overrides))
    assert info.value.status_code == code


def test_stop():
    stop = parse_stop(serialise_6s4t(JOB, command_id=str(uuid.uuid4()),
                                     stop_time=1_700_000_000_001))
    assert stop.stop_ns == 1_700_000_000_001_000_000
    assert parse_stop(serialise_6s4t(JOB, stop_time=0)).stop_ns is None
    with pytest.raises(CommandError):
        parse_stop(serialise_6s4t("nope", stop_time=1))
    with pytest.raises(CommandError):
        parse_stop(b"garbage-garbage")
