"""un00 from the forwarder between a real EPICS IOC (pvxslibs, CA and PVA) and the real broker
(issue 20): the units once at connect, before the first value; again when EGU changes."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from caproto.sync.client import write as ca_write
from streaming_data_types.logdata_f144 import deserialise_f144

from datastream.instrument import InstrumentConfig
from datastream.schemas import schema_id
from datastream.schemas.un00 import deserialise_un00
from forwarder.service import run as run_forwarder
from tests.conftest import EPICS_PORTS, serve_db, wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

DB = """
record(ao, "$(P)CA_T") { field(VAL, "1.5") field(PINI, "YES") field(EGU, "K") }
record(ao, "$(P)PVA_T") { field(VAL, "2.5") field(PINI, "YES") field(EGU, "K") }
record(longout, "$(P)COUNT") { field(VAL, "7") field(PINI, "YES") }
"""
CHANNELS = {"TE:UN:CA_T": "ca", "TE:UN:PVA_T": "pva", "TE:UN:COUNT": "ca"}


@pytest.fixture(scope="module")
def epics_ioc(tmp_path_factory):
    ioc = serve_db(tmp_path_factory.mktemp("ioc"), DB, "TE:UN:", EPICS_PORTS.sample_env_ca,
                   "TE:UN:CA_T")
    yield ioc
    ioc.stop()


def _by_key(kafka, topic: str) -> dict[str, list[tuple[str, object]]]:
    """(schema, decoded) of each un00 and f144 on the topic, in order, by key."""
    out: dict[str, list[tuple[str, object]]] = {}
    for msg in read_all(kafka, topic, timeout=1):
        schema = schema_id(msg.value())
        if schema == "un00":
            out.setdefault(msg.key().decode(), []).append((schema, deserialise_un00(msg.value())))
        elif schema == "f144":
            out.setdefault(msg.key().decode(), []).append((schema, deserialise_f144(msg.value())))
    return out


def _units(messages: list[tuple[str, object]]) -> list[str | None]:
    return [m.units for schema, m in messages if schema == "un00"]


def test_units_go_before_the_first_value_and_again_when_egu_changes(kafka, topics, epics_ioc,
                                                                     tmp_path):
    topic = topics.sample_env
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"streams": [
        {"channel": channel, "protocol": protocol, "schema": "f144", "topic": topic,
         "periodic": False} for channel, protocol in CHANNELS.items()]}))
    config = replace(InstrumentConfig(name=topics.instrument, prefix="TE:UN:"),
                     streams_file=streams)
    stop = threading.Event()
    thread = threading.Thread(target=run_forwarder, args=(config, kafka, stop))
    thread.start()
    try:
        got = wait_until(lambda: (lambda d: d if all(
            any(s == "f144" for s, _ in d.get(c, [])) for c in CHANNELS) else None)(
                _by_key(kafka, topic)), 20, "a value of every PV")
        for channel in CHANNELS:
            first, second = got[channel][:2]
            assert first[0] == "un00" and second[0] == "f144", channel
            assert first[1].source_name == channel
            # stamped with the value it goes before
            assert first[1].timestamp_ns == second[1].timestamp_unix_ns
        assert _units(got["TE:UN:CA_T"]) == _units(got["TE:UN:PVA_T"]) == ["K"]
        assert _units(got["TE:UN:COUNT"]) == [None]  # a record without EGU

        ca_write("TE:UN:CA_T.EGU", "mK", notify=True)
        ca_write("TE:UN:PVA_T.EGU", "mK", notify=True)
        got = wait_until(lambda: (lambda d: d if all(
            _units(d.get(c, [])) == ["K", "mK"] for c in ("TE:UN:CA_T", "TE:UN:PVA_T"))
            else None)(_by_key(kafka, topic)), 20, "un00 mK of the PVs over CA and PVA")
        # a changed EGU alone is not a new value
        assert [s for s, _ in got["TE:UN:PVA_T"]] == ["un00", "f144", "un00"]
        assert [s for s, _ in got["TE:UN:CA_T"]] == ["un00", "f144", "un00"]

        ca_write("TE:UN:CA_T", 3.5, notify=True)
        ca_write("TE:UN:PVA_T", 4.5, notify=True)

        def last_values(d):
            last = {c: [m.value for s, m in d.get(c, []) if s == "f144"][-1:]
                    for c in ("TE:UN:CA_T", "TE:UN:PVA_T")}
            return d if last == {"TE:UN:CA_T": [3.5], "TE:UN:PVA_T": [4.5]} else None

        got = wait_until(lambda: last_values(_by_key(kafka, topic)), 20, "the new values")
        for channel in ("TE:UN:CA_T", "TE:UN:PVA_T"):
            assert _units(got[channel]) == ["K", "mK"]  # unchanged units: no more un00
        assert _units(got["TE:UN:COUNT"]) == [None]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
