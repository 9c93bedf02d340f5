"""Run control with ISIS's tables: a spectra table named in DAESETTINGS is the run's
detector-spectrum map (the pl72's, which the ICP file's histogram takes), fixed at BEGINRUN;
a DAESETTINGS put naming a table that cannot be taken fails with the reason and changes
nothing; tables that broke while the IOC was down hold runs back until fixed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re

import h5py
import numpy as np
import pytest
from caproto import AlarmSeverity
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_start_pl72 import deserialise_pl72

from datastream.geometry import load_geometry
from datastream.kafka_client import KafkaSettings
from datastream.paths import IOCBOOT_DIR
from datastream.run_window import Window
from datastream.schemas.pu00 import serialise_pu00
from filewriter.commands import parse_start
from filewriter.job import JobSettings, WriteJob
from ioc.dae_settings import DaeConfig, DaeConfigStore, Tcb, TimeRow
from ioc.forwarder_status import ForwarderStatus
from ioc.pvgroups import RunControlIOC
from ioc.run_control import RunControlError
from ioc.runstate import CommandRefused, RunState
from ioc.writer_status import WriterStatus
from tests.unit.test_dae_config import PeriodsDae
from tests.unit.test_run_control import control  # noqa: F401  (the fixture)

DEMO = IOCBOOT_DIR / "DEMO"
MS = 1_000_000
PAIRS = "tables/spectra_DEMO_backscatter_pairs.dat"


@pytest.fixture
def demo(control, tmp_path):  # noqa: F811
    """Run control over DEMO's geometry and tables directory."""
    control.dae = PeriodsDae(control.dae)
    control.geometry = load_geometry(DEMO / "geometry.toml")
    control.tables_dir = DEMO
    control.config_store = DaeConfigStore(tmp_path / "dae.json")
    return control


def _with_tables(config: DaeConfig, **tables: str) -> DaeConfig:
    return dataclasses.replace(config, setup=dataclasses.replace(config.setup, **tables))


def _run_start(run_control):
    return deserialise_pl72(run_control.producer.topics("TST_runInfo")[-1].value)


def test_a_run_s_pl72_carries_the_spectra_table_s_map(demo):
    demo.configure(_with_tables(demo.dae_config, spectra_table=PAIRS,
                                wiring_table="tables/wiring_DEMO.dat",
                                detector_table="tables/detector_DEMO.dat"))
    demo.begin()
    start = _run_start(demo)
    sent = start.detector_spectrum_map
    assert sent.detector_ids.tolist() == list(range(1, 4097))
    # the backscatter bank's pixels summed in pairs: 3072 + 512 spectra
    assert sent.spectrum_numbers[3072:].tolist() == [3073 + k // 2 for k in range(1024)]
    assert sent.n_spectra == 3584
    # the monitor's histogram takes the table's spectrum for it
    histogram = next(m["config"] for m in json.loads(start.nexus_structure)["children"][0][
        "children"] if m.get("module") == "isis_histogram")
    assert histogram["monitors"][0]["spectrum"] == 3585
    # as the ICP: no new tables while a run counts; the run keeps its map
    with pytest.raises(CommandRefused, match="run state is RUNNING"):
        demo.configure(_with_tables(demo.dae_config, spectra_table=""))
    demo.abort()
    demo.configure(_with_tables(demo.dae_config, spectra_table=""))
    demo.begin()
    sent = _run_start(demo).detector_spectrum_map
    # no spectra table: the geometry's one-to-one map, as before tables
    assert np.array_equal(sent.spectrum_numbers, sent.detector_ids)
    assert sent.n_spectra == 4096


def test_a_daesettings_put_naming_a_bad_table_is_refused_and_changes_nothing(demo, tmp_path):
    instrument = tmp_path / "inst"
    (instrument / "tables").mkdir(parents=True)
    (instrument / "tables" / "bad.dat").write_text(
        "NDET :\n2\nDETECTOR SPECTRUM\n1 1\n1 2\n")
    demo.tables_dir = instrument
    before = demo.dae_config
    ioc = RunControlIOC(prefix="TST:", control=demo, writer_status=WriterStatus(),
                        forwarder_status=ForwarderStatus(), standalone_job=None)
    put = _with_tables(before, spectra_table="tables/bad.dat").setup.xml()

    async def put_settings() -> None:
        await ioc.dae.show_settings()
        shown = ioc.dae.daesettings.value
        with pytest.raises(ValueError, match="line 5: detector 1 is already on line 4"):
            await ioc.dae.daesettings_sp.write(put)
        assert ioc.dae.daesettings.value == shown
        assert ioc.dae.daesettings_sp.alarm.severity != AlarmSeverity.NO_ALARM  # genie reads it
        assert ioc.dae.errmsgs.value == (
            "DAE settings refused: spectra table 'tables/bad.dat': line 5: detector 1 is "
            "already on line 4: a detector counts in one spectrum only")

    asyncio.run(put_settings())
    assert demo.dae_config == before and not (tmp_path / "dae.json").exists()
    assert demo.dae.plans == []  # the DAE was not given the settings either
    demo.begin()  # runs go on with the map they had
    assert _run_start(demo).detector_spectrum_map.n_spectra == 4096


def test_tables_broken_while_the_ioc_was_down_hold_runs_back_until_fixed(demo, tmp_path):
    instrument = tmp_path / "inst"
    (instrument / "tables").mkdir(parents=True)
    table = instrument / "tables" / "spectra.dat"
    table.write_text("NDET :\n1\nDETECTOR SPECTRUM\n1 1\n")
    demo.tables_dir = instrument
    demo.configure(_with_tables(demo.dae_config, spectra_table="tables/spectra.dat"))
    table.unlink()
    demo.load_config()  # the IOC restarted: the stored settings name a table now gone
    assert "spectra table 'tables/spectra.dat': no such file" in demo.error_message()
    with pytest.raises(RunControlError, match=re.escape(
            "BEGINRUN refused: spectra table 'tables/spectra.dat': no such file")):
        demo.begin()
    assert demo.state is RunState.SETUP and not demo.producer.topics("TST_runInfo")
    demo.configure(_with_tables(demo.dae_config, spectra_table=""))
    demo.begin()
    assert demo.state is RunState.RUNNING


def test_the_icp_file_sums_each_spectrum_s_detectors_as_the_table_groups_them(demo, tmp_path):
    """Run control's pl72 with DEMO's backscatter pairs, through the file writer's job as it
    takes a run start (parse_start, WriteJob): the histogram's rows are the table's
    spectra, and isis_vms_compat's UDET/SPEC say which detectors each one sums."""
    config = dataclasses.replace(demo.dae_config, tcb=Tcb((TimeRow(0, 1000, 100, 1),)))
    demo.configure(_with_tables(config, spectra_table=PAIRS))
    demo.begin()
    start = parse_start(demo.producer.topics("TST_runInfo")[-1].value)
    topic = demo.topics.events
    job = WriteJob(start, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    assert job.open() == []
    t = start.start_ns + 5 * MS
    stop_ns = t + 100 * MS
    job.request_stop(stop_ns)
    pixels = np.array([3073, 3074, 3074, 3075, 1, 4096], np.int32)
    messages = [serialise_pu00("DAE", 1, t, 0, 0, np.float32(1.0)),
                serialise_ev44("DAE", 2, np.array([t], np.int64), np.zeros(1, np.int32),
                               np.full(len(pixels), 150_000, np.int32), pixels),
                serialise_ev44("monitor_1", 3, np.array([t], np.int64), np.zeros(1, np.int32),
                               np.full(2, 50_000, np.int32), np.full(2, 100001, np.int32))]
    for offset, payload in enumerate(messages):
        job._dispatch(topic, payload, Window(start.start_ns, stop_ns), offset)
    job._close_file()
    with h5py.File(job.path) as f:
        e = f["raw_data_1"]
        counts = e["detector_1/counts"][0]
        assert counts.shape == (3584, 10)
        spectra = e["detector_1/spectrum_index"][:]
        assert spectra[0] == 1 and spectra[-1] == 3584
        per_spectrum = dict(zip(spectra.tolist(), counts.sum(axis=1).tolist(), strict=True))
        # 3073 and 3074 are spectrum 3073's, 3075 spectrum 3074's, 4096 the last one's
        assert {s: n for s, n in per_spectrum.items() if n} == {1: 1, 3073: 3, 3074: 1,
                                                                 3584: 1}
        assert counts[3072, 1] == 3  # 150 µs: the second 100 µs channel
        vms = e["isis_vms_compat"]
        spec_of = dict(zip(vms["UDET"][:].tolist(), vms["SPEC"][:].tolist(), strict=True))
        assert spec_of[3073] == spec_of[3074] == 3073 and spec_of[4096] == 3584
        assert spec_of[100001] == 3585 and vms["NSP1"][0] == 3585
        assert e["monitor_hist_1/spectrum_index"][:].tolist() == [3585]
        assert e["monitor_hist_1/data"][:].sum() == 2


def _empty_run_file(run_control, tmp_path) -> h5py.File:
    """The file the writer makes of run control's last pl72, with no events (open)."""
    start = parse_start(run_control.producer.topics("TST_runInfo")[-1].value)
    job = WriteJob(start, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    assert job.open() == []
    job.request_stop(start.start_ns + 100 * MS)
    job._close_file()
    return h5py.File(job.path)


def _spherical(r: np.ndarray, theta_deg: np.ndarray, phi_deg: np.ndarray) -> np.ndarray:
    """Mantid's V3D::spherical (z along the beam), as UpdateInstrumentFromFile places a
    detector from LEN2, TTHE and UT01."""
    t, p = np.radians(theta_deg), np.radians(phi_deg)
    return np.column_stack([r * np.sin(t) * np.cos(p), r * np.sin(t) * np.sin(p),
                            r * np.cos(t)])


def test_without_a_detector_table_the_file_places_the_geometry_s_detectors(demo, tmp_path):
    """No detector table: isis_vms_compat's LEN2, TTHE and UT01 (φ) are the geometry's, so
    that Mantid's det-pos-source="datafile" puts every pixel where the geometry has it."""
    demo.begin()
    with _empty_run_file(demo, tmp_path) as f:
        vms = f["raw_data_1/isis_vms_compat"]
        udet = vms["UDET"][:]
        for name in ("LEN2", "TTHE", "UT01", "DELT"):
            assert vms[name].dtype == np.float32 and vms[name].shape == udet.shape, name
        assert vms["CODE"].dtype == np.int32 and vms["NUSE"][:].tolist() == [1]
        geometry = demo.geometry
        pixels = np.isin(udet, geometry.pixel_ids())
        placed = _spherical(vms["LEN2"][:][pixels], vms["TTHE"][:][pixels],
                            vms["UT01"][:][pixels])
        order = np.searchsorted(geometry.pixel_ids(), udet[pixels])
        np.testing.assert_allclose(placed, geometry.pixel_positions()[order], atol=2e-5)
        assert set(vms["CODE"][:][pixels].tolist()) == {3}
        monitor = udet == 100001
        assert vms["CODE"][:][monitor].tolist() == [1]
        assert vms["LEN2"][:][monitor][0] == pytest.approx(geometry.monitors[0].z_m)
        assert not vms["DELT"][:].any()


def test_the_file_holds_the_detector_table_in_use_in_udet_s_order(demo, tmp_path):
    """With a detector table, isis_vms_compat holds its columns as the ICP copies
    DETECTOR.DAT: each detector's delay, L2, code, 2θ and user columns, a UDET entry each."""
    tables = tmp_path / "inst" / "tables"
    tables.mkdir(parents=True)
    for table in (DEMO / "tables").iterdir():
        (tables / table.name).write_bytes(table.read_bytes())
    lines = (DEMO / "tables/detector_DEMO.dat").read_text().splitlines()
    # a delay, and a second user column, per detector: told apart from the geometry's
    body = [f"{f[0]} {int(f[0]) % 7 * 0.25:.3f} {f[2]} {f[3]} {f[4]} {f[5]} {int(f[0]) % 5}"
            for f in (line.split() for line in lines[3:])]
    (tables / "detector_USER.dat").write_text("\n".join(
        [lines[0], lines[1].split()[0] + " 2", lines[2] + " user2", *body]) + "\n")
    demo.tables_dir = tmp_path / "inst"
    demo.configure(_with_tables(demo.dae_config, detector_table="tables/detector_USER.dat"))
    demo.begin()
    table = {int(f[0]): f for f in (line.split() for line in body)}
    out = tmp_path / "out"
    out.mkdir()
    with _empty_run_file(demo, out) as f:
        vms = f["raw_data_1/isis_vms_compat"]
        udet = vms["UDET"][:].tolist()
        assert vms["NUSE"][:].tolist() == [2]
        for name, column in (("DELT", 1), ("LEN2", 2), ("TTHE", 4), ("UT01", 5),
                             ("UT02", 6)):
            expected = np.array([float(table[d][column]) for d in udet], np.float32)
            assert vms[name][:].tolist() == expected.tolist(), name
        assert vms["CODE"][:].tolist() == [int(table[d][3]) for d in udet]
