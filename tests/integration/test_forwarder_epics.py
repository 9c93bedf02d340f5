"""The forwarder between a real EPICS IOC (pvxslibs, CA and PVA) and the real broker."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, deserialise_ep01

from datastream.instrument import InstrumentConfig
from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from forwarder.service import run as run_forwarder
from forwarder.update import EPICS_EPOCH_OFFSET_S
from tests.conftest import EPICS_PORTS, serve_db, wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

DB = """
record(ao, "$(P)AO") { field(VAL, "1.5") field(PINI, "YES") field(EGU, "K") }
record(longout, "$(P)LONG") { field(VAL, "7") field(PINI, "YES") }
record(stringout, "$(P)STR") { field(VAL, "hello") field(PINI, "YES") }
record(mbbo, "$(P)ENUM") { field(ZRST, "Off") field(ONST, "On") field(VAL, "1") field(PINI, "YES") }
record(waveform, "$(P)WF") { field(FTVL, "DOUBLE") field(NELM, "4") field(PINI, "YES") }
"""


@pytest.fixture(scope="module")
def epics_ioc(tmp_path_factory):
    ioc = serve_db(tmp_path_factory.mktemp("ioc"), DB, "TE:FWD:", EPICS_PORTS.sample_env_ca,
                   "TE:FWD:AO")
    yield ioc
    ioc.stop()


def _streams_file(tmp_path, topic):
    streams = [{"channel": f"TE:FWD:{name}", "protocol": proto, "schema": "f142",
                "topic": topic, "name": f"{name}_{proto}"}
               for name in ("AO", "LONG", "STR", "ENUM", "WF") for proto in ("ca", "pva")]
    streams.append({"channel": "TE:FWD:NOT_THERE", "protocol": "ca", "topic": topic})
    path = tmp_path / "streams.json"
    path.write_text(json.dumps({"streams": streams}))
    return path


def test_ca_and_pva_updates_become_f142_with_epics_timestamps(kafka, topics, epics_ioc,
                                                              tmp_path):
    config = replace(InstrumentConfig(name=topics.instrument, prefix="TE:FWD:"),
                     streams_file=_streams_file(tmp_path, topics.sample_env))
    stop = threading.Event()
    thread = threading.Thread(target=run_forwarder, args=(config, kafka, stop))
    thread.start()
    try:
        ca_write("TE:FWD:AO", 2.75, notify=True)
        ca_write("TE:FWD:WF", [1.0, 2.0, 3.0, 4.0], notify=True)
        reading = ca_read("TE:FWD:AO", data_type="time")
        stamp = reading.metadata.stamp
        epics_ns = ((stamp.secondsSinceEpoch + EPICS_EPOCH_OFFSET_S) * 1_000_000_000
                    + stamp.nanoSeconds)

        def f142_by_key():
            out = {}
            for m in read_all(kafka, topics.sample_env, timeout=1):
                if schema_id(m.value()) == "f142":
                    out.setdefault(m.key().decode(), []).append(m)
            return out

        got = wait_until(lambda: (lambda d: d if {"TE:FWD:AO", "TE:FWD:STR", "TE:FWD:ENUM",
                                                  "TE:FWD:LONG", "TE:FWD:WF"} <= set(d)
                                  and len(d["TE:FWD:AO"]) >= 4 else None)(f142_by_key()),
                         20, "f142 messages of every PV over CA and PVA")
        ao = [deserialise_f142(m.value()) for m in got["TE:FWD:AO"]]
        assert 2.75 in [float(a.value) for a in ao]
        latest = [m for m in got["TE:FWD:AO"] if float(deserialise_f142(m.value()).value) == 2.75]
        # Kafka timestamp = EPICS timestamp (ms), payload = EPICS ns; a periodic re-send keeps
        # the payload and is stamped later
        kafka_ms = [m.timestamp()[1] for m in latest]
        assert kafka_ms.count(epics_ns // 1_000_000) == 2  # over CA and over PVA
        assert min(kafka_ms) == epics_ns // 1_000_000
        for msg in latest:
            payload = deserialise_f142(msg.value())
            assert payload.timestamp_ns == epics_ns
            assert payload.timestamp_ns > EPICS_EPOCH_OFFSET_S * 10**9
        values = {k: {repr(deserialise_f142(m.value()).value) for m in v} for k, v in got.items()}
        assert any("hello" in v for v in values["TE:FWD:STR"])
        enum_values = {int(deserialise_f142(m.value()).value) for m in got["TE:FWD:ENUM"]}
        assert enum_values == {1}  # the index, over CA and PVA alike
        wf = [deserialise_f142(m.value()).value for m in got["TE:FWD:WF"]]
        assert any(isinstance(w, np.ndarray) and w.tolist() == [1.0, 2.0, 3.0, 4.0] for w in wf)

        ep01 = [deserialise_ep01(m.value()) for m in read_all(kafka, topics.sample_env, timeout=1)
                if schema_id(m.value()) == "ep01"]
        missing = [e for e in ep01 if e.source_name == "TE:FWD:NOT_THERE"]
        # the periodic re-send repeats the state, with the time of the change
        assert {e.status for e in missing} == {ConnectionInfo.NEVER_CONNECTED}
        assert len({e.timestamp for e in missing}) == 1
        assert ConnectionInfo.CONNECTED in [e.status for e in ep01 if e.source_name == "TE:FWD:AO"]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_pva_callbacks_keep_one_python_thread_state(epics_ioc, monkeypatch):
    """pvxs's thread keeps the Python thread state it was given on its first callback:
    otherwise CPython makes and frees one per callback (forwarder/pva_source.py)."""
    import forwarder.pva_source as pva_source

    ensure = pva_source.ctypes.pythonapi.PyGILState_Ensure
    kept_on: list[int] = []

    def counted_ensure():
        kept_on.append(threading.get_ident())
        return ensure()

    monkeypatch.setattr(pva_source, "ctypes", SimpleNamespace(
        pythonapi=SimpleNamespace(PyGILState_Ensure=counted_ensure)))
    values: list[float] = []
    source = pva_source.PvaSource(lambda u: values.append(float(u.value)), lambda *_: None)
    source.add(["TE:FWD:AO"])
    try:
        for value in np.arange(20.0, 30.0):
            ca_write("TE:FWD:AO", value, notify=True)
            wait_until(lambda v=value: v in values, 10, f"PVA update {value}")
    finally:
        source.close()
    assert kept_on and len(kept_on) == len(set(kept_on))  # once per thread, not per callback
