"""The forwarder reconfigured while running (fc00 on the config topic, IBEX blocks), resumed
from its storage topic, and riding out IOCs that appear late or restart: a real EPICS IOC
(pvxslibs) and the real broker."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from caproto.sync.client import write as ca_write
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, deserialise_ep01
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00
from streaming_data_types.logdata_f144 import deserialise_f144
from streaming_data_types.status_x5f2 import deserialise_x5f2

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import deliver, make_producer
from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from forwarder.config_update import Action
from forwarder.ibex_blocks import encode_block_names
from forwarder.options import ForwarderOptions
from forwarder.service import run as run_forwarder
from tests.conftest import EPICS_PORTS, EpicsIoc, ca_readable, wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

DB = """
record(calc, "$(P)COUNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "$(P)COUNT") }
record(ao, "$(P)B1") { field(VAL, "1") field(PINI, "YES") }
record(ao, "$(P)CS:SB:Temp1") { field(VAL, "4.5") field(PINI, "YES") }
record(ao, "$(P)CS:SB:Field") { field(VAL, "0.25") field(PINI, "YES") }
record(waveform, "$(P)CS:BLOCKSERVER:BLOCKNAMES") { field(FTVL, "CHAR") field(NELM, "16000") }
"""


@pytest.fixture
def epics_db(tmp_path):
    (tmp_path / "cfg.db").write_text(DB)
    return tmp_path / "cfg.db"


class Forwarder:
    """`datastream forwarder` in a thread of the test."""

    def __init__(self, config, kafka, options):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_forwarder,
                                       args=(config, kafka, self.stop, options))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _config(topics, prefix):
    return InstrumentConfig(name=topics.instrument, prefix=prefix)


def _messages(kafka, topic, kind, decode):
    return [(m, decode(m.value())) for m in read_all(kafka, topic, timeout=1)
            if schema_id(m.value()) == kind]


def _last_status(kafka, topics):
    statuses = [json.loads(deserialise_x5f2(m.value()).status_json)
                for m in read_all(kafka, topics.forwarder_status, timeout=1)
                if schema_id(m.value()) == "x5f2"]
    return statuses[-1] if statuses else None


def _fc00(action, *streams):
    return serialise_fc00(action.value, [StreamInfo(c, s, t, p, 0) for c, s, t, p in streams])


def test_config_topic_storage_and_restart(kafka, topics, epics_db, tmp_path):
    ioc = EpicsIoc(epics_db, "P=TE:CFG:", EPICS_PORTS.sample_env_ca, tmp_path / "ioc.log")
    ioc.start()
    producer = make_producer(kafka)
    options = ForwarderOptions(status_interval_s=0.5, run_log=False)
    try:
        wait_until(lambda: ca_readable("TE:CFG:COUNT"), 30, "the EPICS IOC")
        config = _config(topics, "TE:CFG:")
        with Forwarder(config, kafka, options):
            wait_until(lambda: _last_status(kafka, topics), 20, "a first status message")
            deliver(producer, topics.forwarder_config, b"not a flatbuffer at all")
            deliver(producer, topics.forwarder_config, _fc00(
                Action.ADD, ("TE:CFG:COUNT", "f144", topics.sample_env, Protocol.PVA),
                ("TE:CFG:B1", "f142", topics.run_log, Protocol.CA),
                ("TE:CFG:B1", "f142", topics.run_log, Protocol.CA),
                ("TE:CFG:FAKE", "f142", topics.run_log, Protocol.FAKE),
                ("TE:CFG:B1", "f142", "NO_SUCH_topic", Protocol.CA)))
            counts = wait_until(
                lambda: (lambda m: m if len(m) >= 5 else None)(
                    _messages(kafka, topics.sample_env, "f144", deserialise_f144)),
                20, "f144 updates of the counter added over the config topic")
            values = [float(d.value) for _, d in counts]
            assert values == sorted(values)  # in order, from one subscription
            b1 = _messages(kafka, topics.run_log, "f142", deserialise_f142)
            assert len({d.timestamp_ns for _, d in b1}) == 1  # added twice, forwarded once
            status = wait_until(lambda: (lambda s: s if s and s["config_errors"] == 3 else None)(
                _last_status(kafka, topics)), 10, "the bad message and bad streams counted")
            assert "NO_SUCH_topic" in status["config_last_error"]  # an ADD to no topic
            assert {s["channel_name"] for s in status["streams"]} == {"TE:CFG:COUNT",
                                                                       "TE:CFG:B1"}
            deliver(producer, topics.forwarder_config, serialise_fc00(
                Action.REMOVE.value, [StreamInfo("TE:CFG:B?", "", "*", Protocol.CA, 0)]))
            wait_until(lambda: any(
                d.source_name == "TE:CFG:B1" and d.status == ConnectionInfo.DESTROYED
                for _, d in _messages(kafka, topics.run_log, "ep01", deserialise_ep01)),
                10, "ep01 destroyed of the removed stream")
            removed_at = len(_messages(kafka, topics.run_log, "f142", deserialise_f142))
        # a new forwarder with no config file resumes from the storage topic
        before = len(_messages(kafka, topics.sample_env, "f144", deserialise_f144))
        with Forwarder(config, kafka, options):
            wait_until(lambda: len(_messages(kafka, topics.sample_env, "f144",
                                             deserialise_f144)) >= before + 5,
                       20, "the stored counter stream forwarded again after a restart")
            status = _last_status(kafka, topics)
            assert [s["channel_name"] for s in status["streams"]] == ["TE:CFG:COUNT"]
        assert len(_messages(kafka, topics.run_log, "f142", deserialise_f142)) == removed_at
    finally:
        ioc.stop()


def test_ibex_blocks_follow_the_configuration(kafka, topics, epics_db, tmp_path):
    ioc = EpicsIoc(epics_db, "P=TE:IBX:", EPICS_PORTS.sample_env_ca, tmp_path / "ioc.log")
    ioc.start()
    try:
        wait_until(lambda: ca_readable("TE:IBX:B1"), 30, "the EPICS IOC")
        blocknames = "TE:IBX:CS:BLOCKSERVER:BLOCKNAMES"
        ca_write(blocknames, encode_block_names(["Temp1"]), notify=True)
        options = ForwarderOptions(ibex_blocks=True, run_log=False, use_storage=False,
                                   status_interval_s=0.5)
        with Forwarder(_config(topics, "TE:IBX:"), kafka, options):
            def sources():
                return {d.source_name for _, d in _messages(kafka, topics.sample_env, "f142",
                                                            deserialise_f142)}

            wait_until(lambda: "TE:IBX:CS:SB:Temp1" in sources(), 20, "the Temp1 block")
            ca_write(blocknames, encode_block_names(["Field"]), notify=True)
            wait_until(lambda: "TE:IBX:CS:SB:Field" in sources(), 20, "the Field block")
            ep01 = [d for _, d in _messages(kafka, topics.sample_env, "ep01", deserialise_ep01)]
            assert ConnectionInfo.DESTROYED in [e.status for e in ep01
                                                if e.source_name == "TE:IBX:CS:SB:Temp1"]
            ca_write(blocknames, "zz not hex", notify=True)  # kept: the blocks stay as they are
            status = wait_until(lambda: _last_status(kafka, topics), 10, "status")
            wait_until(lambda: [s["channel_name"] for s in _last_status(kafka, topics)["streams"]]
                       == ["TE:IBX:CS:SB:Field"], 10, "only the Field block in the status")
            assert status is not None
    finally:
        ioc.stop()


def test_a_pv_that_appears_later_and_an_ioc_restart(kafka, topics, epics_db, tmp_path):
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"streams": [
        {"channel": "TE:LATE:COUNT", "protocol": "ca", "schema": "f142",
         "topic": topics.sample_env, "name": "count_ca"},
        {"channel": "TE:LATE:COUNT", "protocol": "pva", "schema": "f144",
         "topic": topics.sample_env, "name": "count_pva"}]}))
    config = replace(_config(topics, "TE:LATE:"), streams_file=streams)
    ioc = EpicsIoc(epics_db, "P=TE:LATE:", EPICS_PORTS.run_control_ca, tmp_path / "ioc.log")
    options = ForwarderOptions(run_log=False, use_storage=False)
    try:
        with Forwarder(config, kafka, options):
            def states():
                # each change once: the periodic re-sends repeat it with its own time
                changes = dict.fromkeys((d.timestamp, d.status) for _, d in _messages(
                    kafka, topics.sample_env, "ep01", deserialise_ep01))
                return [status for _, status in changes]

            wait_until(lambda: states().count(ConnectionInfo.NEVER_CONNECTED) == 2, 20,
                       "ep01 never connected, over CA and over PVA")
            ioc.start()  # the IOC appears after the forwarder subscribed

            def counts(kind, decode):
                return [float(d.value) for _, d in _messages(kafka, topics.sample_env, kind,
                                                            decode)]

            wait_until(lambda: len(counts("f142", deserialise_f142)) >= 3
                       and len(counts("f144", deserialise_f144)) >= 3, 30,
                       "updates over CA and PVA once the PV exists")
            # far above what the restarted IOC, counting from zero, reaches while its clients
            # find it again (their search backoff can take longer than this life did)
            ca_write("TE:LATE:COUNT", 100_000, notify=True)
            wait_until(lambda: max(counts("f142", deserialise_f142)) >= 100_000, 10,
                       "the raised count forwarded")
            ioc.stop()
            wait_until(lambda: states().count(ConnectionInfo.DISCONNECTED) == 2, 30,
                       f"ep01 disconnected over CA and PVA {states()}")
            n142, n144 = len(counts("f142", deserialise_f142)), len(counts("f144",
                                                                          deserialise_f144))
            ioc.start()
            wait_until(lambda: len(counts("f142", deserialise_f142)) >= n142 + 3
                       and len(counts("f144", deserialise_f144)) >= n144 + 3, 60,
                       "updates again after the IOC restarted")
            assert states().count(ConnectionInfo.CONNECTED) >= 4
            # the restarted IOC counts from zero again: newer timestamps, so forwarded
            assert counts("f142", deserialise_f142)[-1] < max(counts("f142", deserialise_f142))
    finally:
        ioc.stop()
