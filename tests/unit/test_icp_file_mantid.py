"""A written run file read the way Mantid's ISIS loaders read it (LoadISISNexus2's VMS
path, LoadEventNexus, LoadNexusLogs: each entry they need, its shape, exact dtype, units
and attributes), and loaded with scippnexus. `check_mantid_file` is also the integration
test's checker."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import scipp as sc
import scippnexus as snx

from tests.unit.test_icp_file_modules import isis_stream, write_file

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _text(dset: h5py.Dataset) -> str:
    value = dset[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _nx_class(obj: h5py.Group) -> str:
    value = obj.attrs.get("NX_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _int32_1(e: h5py.Group, name: str, scalar_too: bool = False) -> int:
    """int32 of shape (1,); a scalar too where asked (napi reads one as rank 1, length 1)."""
    shapes = ((1,), ()) if scalar_too else ((1,),)
    assert e[name].dtype == np.int32 and e[name].shape in shapes, name
    return int(e[name][()].reshape(-1)[0])


def _float32_1(e: h5py.Group, name: str) -> float:
    assert e[name].dtype == np.float32 and e[name].shape == (1,), name
    assert e[name].attrs.get("units"), f"{name} has no units"
    return float(e[name][0])


def _no_array_attributes(dset: h5py.Dataset) -> None:
    for key, value in dset.attrs.items():
        if isinstance(value, np.ndarray) and value.dtype.kind not in "SUO":
            assert value.size == 1, f"{dset.name}@{key} is an array"


def _check_log(log: h5py.Group) -> int:
    """An NXlog LoadNexusLogs loads: time in seconds after `start`, value of a type it
    takes, of the same length."""
    assert _nx_class(log) == "NXlog", log.name
    time, value = log["time"], log["value"]
    assert time.attrs["units"] in ("s", "second", "seconds"), log.name
    assert ISO.match(str(time.attrs["start"])), log.name
    assert time.dtype in (np.float32, np.float64), log.name
    assert value.dtype.kind == "S" or value.dtype in (
        np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.float32, np.float64)
    assert len(value) == len(time), log.name
    # value@units is optional; when there, text (a number or array attribute: no units)
    units = value.attrs.get("units", "")
    assert isinstance(units, str | bytes), log.name
    return len(time)


def _check_log_groups(e: h5py.Group) -> dict[str, h5py.Group]:
    """runlog and selog as LoadNexusLogs finds them, by class: IXrunlog's NXlog children,
    IXselog's IXseblock children with their NXlog value_log (the property names of the
    logs Mantid makes -> their NXlog)."""
    logs: dict[str, h5py.Group] = {}
    if "runlog" in e:
        assert _nx_class(e["runlog"]) == "IXrunlog"
        for name, log in e["runlog"].items():
            _check_log(log)
            assert log["value"].ndim == 1, f"{log.name}: not a time series Mantid loads"
            logs[name] = log
    if "selog" in e:
        assert _nx_class(e["selog"]) == "IXselog"
        for name, block in e["selog"].items():
            assert _nx_class(block) == "IXseblock", block.name
            _check_log(block["value_log"])
            # a waveform PV's log is 2-D (time, element): LoadNexusLogs warns and passes
            # over a log it cannot make a time series of, the load goes on
            assert block["value_log/value"].ndim in (1, 2), block.name
            logs[f"selog_{name}" if name in logs else name] = block["value_log"]
    return logs


def check_mantid_file(path: Path) -> None:
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        assert _nx_class(e) == "NXentry"
        assert _text(e["name"]) and _nx_class(e["instrument"]) == "NXinstrument"
        # a scalar in the template: run control's users read it as one
        _int32_1(e, "run_number", scalar_too=True)
        for name in ("start_time", "end_time"):
            assert len(_text(e[name])) >= 19 and ISO.match(_text(e[name])), name
        _text(e["experiment_identifier"])
        assert _nx_class(e["sample"]) == "NXsample"
        # run details (no-VMS path needs these; the VMS path reads IRPB / RRPB)
        for name in ("proton_charge", "proton_charge_raw", "duration"):
            _float32_1(e, name)
        good, raw = _int32_1(e, "good_frames"), _int32_1(e, "raw_frames")
        assert 0 <= good <= raw
        # histograms
        det = e["detector_1"]
        assert _nx_class(det) == "NXdata"
        counts, spectra, tof = det["counts"], det["spectrum_index"], det["time_of_flight"]
        assert counts.dtype == np.int32 and counts.ndim == 3
        assert counts.attrs["signal"] == 1
        assert spectra.dtype == np.int32 and spectra.shape == (counts.shape[1],)
        assert np.all(np.diff(spectra[:]) > 0)
        assert tof.dtype == np.float32 and tof.shape == (counts.shape[2] + 1,)
        assert tof.attrs["units"] == "microsecond"
        n_periods = counts.shape[0]
        monitor_spectra = []
        for name, group in e.items():
            if isinstance(group, h5py.Group) and _nx_class(group) == "NXmonitor":
                index = group["spectrum_index"]
                assert index.dtype == np.int32 and index.shape == (1,), name
                if index[0] > 0:
                    data = group["data"]
                    assert data.dtype == np.int32 and data.attrs["signal"] == 1
                    assert data.shape == (n_periods, 1, counts.shape[2]), name
                    assert group["time_of_flight"].dtype == np.float32
                    monitor_spectra.append(int(index[0]))
        for dset in (counts, spectra, tof):
            _no_array_attributes(dset)
        # isis_vms_compat: the VMS path and LoadEventNexus's spectrum mapping
        vms = e["isis_vms_compat"]
        assert _nx_class(vms) == "IXvms"
        for name, dtype, least in (("NSP1", np.int32, 1), ("UDET", np.int32, 1),
                                   ("SPEC", np.int32, 1), ("SPB", np.int32, 3),
                                   ("RSPB", np.float32, 6), ("IRPB", np.int32, 22),
                                   ("RRPB", np.float32, 9)):
            assert vms[name].dtype == dtype and len(vms[name]) >= least, name
        assert vms["UDET"].shape == vms["SPEC"].shape
        if "LEN2" in vms:
            # UpdateInstrumentFromFile (det-pos-source="datafile"): UDET int32, LEN2, TTHE
            # and UT01 float32 (its reader takes no other type), a value each UDET entry
            for name in ("LEN2", "TTHE", "UT01", "DELT"):
                assert vms[name].dtype == np.float32, name
                assert vms[name].shape == vms["UDET"].shape, name
            assert vms["CODE"].dtype == np.int32 and vms["NUSE"][0] >= 1
        nsp1 = int(vms["NSP1"][0])
        every = sorted({*spectra[:].tolist(), *monitor_spectra})
        assert nsp1 == len(every) == every[-1] - every[0] + 1  # contiguous, as it checks
        assert vms["IRPB"][9] == good and vms["IRPB"][10] == raw
        assert np.isclose(vms["RRPB"][7], e["proton_charge"][0])
        # event data: one NXevent_data, one entry a pulse
        banks = [g for g in e.values()
                 if isinstance(g, h5py.Group) and _nx_class(g) == "NXevent_data"]
        assert len(banks) == 1
        ev = banks[0]
        assert ev["event_id"].dtype in (np.int32, np.uint32)
        assert ev["event_time_offset"].attrs["units"] in ("ns", "microsecond")
        assert ISO.match(str(ev["event_time_zero"].attrs["offset"]))
        assert len(ev["event_index"]) == len(ev["event_time_zero"])
        if ev.name.endswith("detector_1_events"):
            assert _text(ev["event_time_offset_shift"]) == "random"
        # logs: framelog by name, one value a pulse; period_log from 1, within periods
        frames = e["framelog"]
        lengths = {_check_log(frames[name]) for name in frames
                   if isinstance(frames[name], h5py.Group)}
        assert lengths == {len(ev["event_time_zero"])}
        period_log = frames["period_log/value"][:]
        periods = e["periods"]
        assert _nx_class(periods) == "IXperiods"
        number = int(periods["number"][0])
        assert periods["number"].dtype == np.int32
        assert len(period_log) == 0 or 1 <= period_log.min() <= period_log.max() <= number
        assert number == n_periods
        assert len(periods["proton_charge"]) == number
        logs = [log.name.removeprefix(e.name + "/") for log in _check_log_groups(e).values()]
    with snx.File(path) as f:
        entry = f["raw_data_1"]
        counts = entry["detector_1"][...]
        assert counts.dims == ("period_index", "spectrum_index", "time_of_flight")
        loaded = entry["detector_1_events"][...]
        assert loaded.bins.size().sum().value == len(ev_ids(path))
        assert entry["framelog"][...]["period_log"].sizes["time"] == len(period_log)
        for log in logs:  # seconds after `start`: times of day
            loaded = entry[log][...]
            if isinstance(loaded, sc.DataGroup):  # with its alarm_* / connection_status_*
                loaded = loaded["value"]
            assert loaded.coords["time"].dtype == "datetime64", log


def ev_ids(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["raw_data_1/detector_1_events/event_id"][:]


def test_a_written_run_file_is_what_mantid_s_isis_loaders_read(tmp_path):
    path, _ = write_file(tmp_path, isis_stream())
    check_mantid_file(path)
