"""The simulated DAE streams as ISIS's does today: per frame a pu00 (period from 0, proton
charge, vetoes), then the frame's ev44 in chunks sorted by time of flight, all with the
frame's key; a vetoed frame sends its pu00 alone. Its counters equal what it sent."""

from __future__ import annotations

import time

import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.schemas import MalformedMessage, schema_id
from datastream.schemas.pu00 import deserialise_pu00, serialise_pu00
from datastream.schemas.un00 import deserialise_un00, serialise_un00
from ioc.beam_model import BEAM_OFF_VETO, VETO_BITS, BeamSettings
from ioc.simulated_dae import DaeSettings, SimulatedDae
from tests.fakes import FakeProducer


def run_frames(settings: DaeSettings, seconds: float = 0.3) -> tuple[list, object]:
    producer = FakeProducer()
    dae = SimulatedDae(producer, "X_events", settings)
    dae.start()
    try:
        dae.begin(time.time_ns() - int(seconds * 1e9))
        time.sleep(0.2)
        counters = dae.end(time.time_ns())
    finally:
        dae.close()
    return producer.sent, counters


def test_each_frame_is_a_pu00_then_its_sorted_ev44_chunks_under_one_key():
    settings = DaeSettings(frame_rate_hz=50, events_per_frame=250, seed=3, periods=3,
                           max_events_per_message=100, beam_current_ua=36.0)
    sent, counters = run_frames(settings)
    frames: list[tuple] = []
    last = -1
    for s in sent:
        if schema_id(s.value) == "pu00":
            pulse = deserialise_pu00(s.value)
            frames.append((pulse, []))
            key = s.key  # kafka_event_aggregator's: a frame counter, 8 bytes big-endian
            assert len(key) == 8 and (last < 0 or int.from_bytes(key) == last + 1)
            last = int.from_bytes(key)
        else:
            ev = deserialise_ev44(s.value)
            pulse, chunks = frames[-1]  # every ev44 follows its frame's pu00
            assert ev.reference_time.tolist() == [pulse.reference_time]
            assert s.key == key
            chunks.append(ev)
    assert len(frames) == counters.raw_frames == counters.good_frames >= 10
    for k, (pulse, chunks) in enumerate(frames):
        assert pulse.period_number == k % 3  # from 0, hardware periods frame by frame
        assert pulse.vetos == 0
        assert pulse.proton_charge == pytest.approx(36.0 / 50 / 3600)
        assert [len(c.time_of_flight) for c in chunks] == [100, 100, 50]
        tof = np.concatenate([c.time_of_flight for c in chunks])
        assert np.all(np.diff(tof) >= 0)  # sorted by time of flight across the chunks
    assert counters.total_counts == 250 * len(frames)
    assert counters.period_good_frames == tuple(
        sum(1 for k in range(len(frames)) if k % 3 == p) for p in range(3))


def test_a_vetoed_frame_is_raw_not_good_and_sends_no_events():
    settings = DaeSettings(frame_rate_hz=100, events_per_frame=10, seed=4,
                           vetoes={"smp": 0.3, "fermi0": 0.1}, beam_jitter=0.05)
    sent, c = run_frames(settings)
    pulses = [deserialise_pu00(s.value) for s in sent if schema_id(s.value) == "pu00"]
    events = [deserialise_ev44(s.value) for s in sent if schema_id(s.value) == "ev44"]
    vetoed = [p for p in pulses if p.vetos]
    assert vetoed and len(vetoed) < len(pulses)
    assert {e.reference_time[0] for e in events} == {p.reference_time for p in pulses
                                                    if not p.vetos}
    assert c.raw_frames == len(pulses) and c.good_frames == len(pulses) - len(vetoed)
    assert c.raw_uah == pytest.approx(sum(p.proton_charge for p in pulses), rel=1e-9)
    assert c.good_uah == pytest.approx(sum(p.proton_charge for p in pulses if not p.vetos),
                                       rel=1e-9)
    charges = np.array([p.proton_charge for p in pulses])
    assert charges.std() > 0  # the beam's jitter
    smp = sum(1 for p in pulses if p.vetos >> VETO_BITS["smp"] & 1)
    assert dict(c.vetoed_frames)["smp"] == smp


def test_beam_off_spells_carry_no_charge_and_the_target_station_veto():
    settings = DaeSettings(frame_rate_hz=100, events_per_frame=5, seed=5,
                           beam_off_every_s=0.05, beam_off_for_s=0.05)
    sent, _ = run_frames(settings, seconds=1.0)
    pulses = [deserialise_pu00(s.value) for s in sent if schema_id(s.value) == "pu00"]
    off = [p for p in pulses if p.vetos >> VETO_BITS[BEAM_OFF_VETO] & 1]
    assert off and all(p.proton_charge == 0 for p in off)
    assert all(p.proton_charge > 0 for p in pulses if not p.vetos)


@pytest.mark.parametrize("bad, match", [
    ({"beam_jitter": float("nan")}, "finite"), ({"beam_current_ua": -1}, "0 or more"),
    ({"vetoes": {"nosuch": 0.1}}, "one of"), ({"vetoes": {"smp": 2}}, "fraction"),
    ({"beam_off_every_s": 10}, "beam_off_for_s"), ({"max_events_per_message": 0}, "at least"),
])
def test_absurd_beam_settings_are_refused_with_the_reason(bad, match):
    with pytest.raises(ValueError, match=match):
        DaeSettings(**bad)


def test_pu00_and_un00_come_from_flatc_s_code_and_refuse_what_readers_cannot_use():
    pulse = deserialise_pu00(serialise_pu00("DAE", 1, 10**18, None, None, None))
    assert (pulse.vetos, pulse.period_number, pulse.proton_charge) == (None, None, None)
    assert deserialise_un00(serialise_un00("T", 5, "K")).units == "K"
    assert deserialise_un00(serialise_un00("T", 5, None)).units is None
    good = serialise_pu00("DAE", 1, 10**18, 0, 1, 0.5)
    for bad in (good[:10], good[:4] + b"ev44" + good[8:],
                serialise_pu00("DAE", 1, -5), serialise_pu00("DAE", 1, 5, proton_charge=-1.0),
                serialise_pu00("DAE", 1, 5, proton_charge=float("inf"))):
        with pytest.raises(MalformedMessage):
            deserialise_pu00(bad)


def test_the_generated_schema_code_is_flatc_s_unchanged(tmp_path):
    from datastream.schemas.isis import generate

    for made in generate.generate(tmp_path):
        kept = generate.HERE / "generated" / made.name
        assert kept.read_text() == made.read_text(), f"{kept} is not what flatc makes"


def test_beam_settings_are_a_value():
    assert BeamSettings(vetoes={"smp": 0.0}).vetoes == {"smp": 0.0}
