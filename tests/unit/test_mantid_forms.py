"""What Mantid's live listener (Framework/LiveData, KafkaEventStreamDecoder) reads, checked
against the schemas it reads them with, since Mantid cannot be installed here:

- the pl72: instrument_name, a digits-only run_name (its run number), nexus_structure, and
  a detector-spectrum map of equal-length arrays (it throws otherwise);
- the events: ev42 only (the DAE's `event_schema = "ev42"`), pulse_time in ns, and ISIS's
  is84 facility data (period, run state, proton charge per frame) for its proton_charge log.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from streaming_data_types.eventdata_ev42 import deserialise_ev42
from streaming_data_types.fbschemas.eventdata_ev42.EventMessage import EventMessage
from streaming_data_types.fbschemas.eventdata_ev42.FacilityData import FacilityData
from streaming_data_types.fbschemas.isis_event_info_is84.ISISData import ISISData
from streaming_data_types.fbschemas.isis_event_info_is84.RunState import RunState as IsisState
from streaming_data_types.fbschemas.run_start_pl72.RunStart import RunStart

from datastream.run_window import Window
from ioc.event_count import RunCounter
from ioc.simulated_dae import DaeSettings, SimulatedDae
from tests.fakes import FakeProducer
from tests.unit.test_run_control import control  # noqa: F401 (a fixture)


def test_the_pl72_carries_what_mantid_reads(control):  # noqa: F811
    control.spectra = (1, 1024)
    control.begin()
    [sent] = control.producer.topics("TST_runInfo")
    start = RunStart.GetRootAsRunStart(sent.value, 0)  # generated code, as Mantid reads it
    assert start.InstrumentName() == b"TST"
    assert start.RunName().decode().isdigit()
    assert start.NexusStructure()
    spectra = start.DetectorSpectrumMap()
    assert spectra.NSpectra() == 1024
    assert spectra.SpectrumLength() == spectra.DetectorIdLength() == 1024
    np.testing.assert_array_equal(spectra.SpectrumAsNumpy(), np.arange(1, 1025))
    np.testing.assert_array_equal(spectra.DetectorIdAsNumpy(), np.arange(1, 1025))


def test_the_dae_can_send_ev42_with_isis_data():
    producer = FakeProducer()
    settings = DaeSettings(frame_rate_hz=50, events_per_frame=20, seed=1, event_schema="ev42",
                           beam_current_ua=36.0)
    dae = SimulatedDae(producer, "X_events", settings)
    dae.start()
    try:
        start = time.time_ns() - 100_000_000
        dae.begin(start)
        time.sleep(0.2)
        counters = dae.end(time.time_ns())
    finally:
        dae.close()
    frames = [deserialise_ev42(s.value) for s in producer.sent]
    assert len(frames) == counters.good_frames > 0
    assert all(f.pulse_time >= start for f in frames)  # ns, as Mantid's DateAndTime takes it
    assert sum(len(f.detector_id) for f in frames) == counters.total_counts
    message = EventMessage.GetRootAsEventMessage(producer.sent[0].value, 0)
    assert message.FacilitySpecificDataType() == FacilityData.ISISData
    isis = ISISData()
    table = message.FacilitySpecificData()
    isis.Init(table.Bytes, table.Pos)
    assert isis.PeriodNumber() == 0 and isis.RunState() == IsisState.RUNNING
    assert isis.ProtonCharge() == pytest.approx(36.0 / 50 / 3600)  # µAh a frame
    # a restarted IOC counts ev42 frames as it counts ev44 ones
    counter = RunCounter("DAE", Window(start, None))
    assert counter.count(producer.sent[0].value) == 20
    assert counter.book.totals.good_frames == 1
    assert RunCounter("OTHER", Window(start, None)).count(producer.sent[0].value) == 0


def test_an_unknown_event_schema_is_refused():
    with pytest.raises(ValueError, match="ev44 or ev42"):
        DaeSettings(event_schema="ev43")


def test_hardware_periods_go_round_frame_by_frame():
    producer = FakeProducer()
    settings = DaeSettings(frame_rate_hz=100, events_per_frame=5, seed=2, event_schema="ev42",
                           periods=3)
    dae = SimulatedDae(producer, "X_events", settings)
    assert dae.periods == 3
    dae.start()
    try:
        dae.begin(time.time_ns() - 100_000_000)  # ten frames at once, then one in 10 ms
        time.sleep(0.1)
        dae.end(time.time_ns())
    finally:
        dae.close()
    periods = [deserialise_ev42(s.value).specific_data["period_number"] for s in producer.sent]
    assert len(periods) >= 6
    assert periods == [k % 3 for k in range(len(periods))]  # from 0 at the run's first frame


def test_periods_need_a_whole_number():
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="at least 1"):
            DaeSettings(periods=bad, event_schema="ev42")
