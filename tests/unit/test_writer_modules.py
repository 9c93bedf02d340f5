"""The writer modules beyond ev44 and the logs: ev42, se00, tdct, hs00/hs01, da00, and cues."""

import numpy as np
import pytest
import scippnexus as snx
from streaming_data_types.array_1d_se00 import serialise_se00
from streaming_data_types.dataarray_da00 import Variable, serialise_da00
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.fbschemas.array_1d_se00.Location import Location
from streaming_data_types.histogram_hs00 import serialise_hs00
from streaming_data_types.histogram_hs01 import serialise_hs01
from streaming_data_types.timestamps_tdct import serialise_tdct

from filewriter.modules import DECODERS, WRITERS
from filewriter.timing import Window

W = Window(1000, 5000)


def feed(writer, payload, window=W):
    writer.write(DECODERS[payload[4:8].decode()](payload), window)


def nx_group(h5file, name, nx_class):
    group = h5file.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def test_ev42_and_ev44_in_one_event_group_with_cues(h5file):
    group = nx_group(h5file, "events", "NXevent_data")
    writer = WRITERS["ev42"](group, {"cue_interval": 4})
    feed(writer, serialise_ev42("DAE", 1, 1000, np.arange(3), np.arange(3) + 10))
    feed(writer, serialise_ev44("DAE", 2, np.array([2000, 3000]), np.array([0, 2]),
                                np.arange(5), np.arange(5) + 20))
    feed(writer, serialise_ev42("DAE", 3, 6000, np.arange(2), np.arange(2)))  # after stop
    writer.flush()
    feed(writer, serialise_ev42("DAE", 4, 1500, np.arange(4), np.arange(4) + 30))  # late
    writer.close()
    assert group["event_time_zero"][:].tolist() == [1000, 2000, 3000, 1500]
    assert group["event_index"][:].tolist() == [0, 3, 5, 8]
    assert group["event_id"][:].tolist() == [10, 11, 12, 20, 21, 22, 23, 24, 30, 31, 32, 33]
    # a cue at events 0, 4 and 8: the pulse each lies in
    assert group["cue_index"][:].tolist() == [0, 4, 8]
    assert group["cue_timestamp_zero"][:].tolist() == [1000, 2000, 1500]
    assert writer.counts["out_of_order"] == 1
    with snx.File(h5file) as f:
        assert f["events"][...].bins.size().sum().value == 12


def test_se00_samples_get_their_own_times(h5file):
    group = nx_group(h5file, "adc", "NXlog")
    writer = WRITERS["se00"](group, {"dtype": "int16", "value_units": "mV"})
    # 6 samples 400 ns apart, stamped at the first: 600 and 5000+ fall outside the run
    feed(writer, serialise_se00("ADC", 0, 600, 400, 0, np.arange(6, dtype=np.int16),
                                ts_location=Location.Start))
    # stamped at the last sample
    feed(writer, serialise_se00("ADC", 0, 4000, 100, 1, np.array([7, 8], np.int16),
                                ts_location=Location.End))
    feed(writer, serialise_se00("ADC", 0, 0, 0, 2, np.array([9, 9], np.int16),
                                value_timestamps=np.array([4500, 4600])))
    # stamped in the middle: 4750 is halfway between the 2nd and 3rd of 4 samples
    feed(writer, serialise_se00("ADC", 0, 4750, 100, 3, np.arange(4, dtype=np.int16)))
    writer.close()
    assert group["time"][:].tolist() == [1000, 1400, 1800, 2200, 2600, 3900, 4000, 4500, 4600,
                                         4600, 4700, 4800, 4900]
    assert group["value"][:].tolist() == [1, 2, 3, 4, 5, 7, 8, 9, 9, 0, 1, 2, 3]
    assert group["value"].dtype == np.int16 and group["value"].attrs["units"] == "mV"
    with snx.File(h5file) as f:
        assert f["adc"][...].sizes == {"time": 13}


def test_tdct_timestamps(h5file):
    group = nx_group(h5file, "chopper_tdc", "NXlog")
    writer = WRITERS["tdct"](group, {})
    feed(writer, serialise_tdct("CHOPPER", np.array([500, 1000, 2000, 7000])))
    writer.close()
    assert group["time"][:].tolist() == [1000, 2000]


def _hist(schema_version, t, data, edges):
    hist = {"source": "MON1", "timestamp": t, "current_shape": [len(data)],
            "dim_metadata": [{"length": len(data), "unit": "us", "label": "tof",
                              "bin_boundaries": edges}],
            "data": data, "errors": np.sqrt(data)}
    return (serialise_hs00 if schema_version == 0 else serialise_hs01)(hist)


@pytest.mark.parametrize("version", [0, 1])
def test_monitor_histograms(h5file, version):
    group = nx_group(h5file, "monitor_1", "NXdata")
    dtype = "uint64" if version == 0 else "int64"
    writer = WRITERS[f"hs0{version}"](group, {
        "data_type": dtype, "shape": [{"size": 4, "label": "tof", "unit": "us"}]})
    edges = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    np_dtype = np.uint64 if version == 0 else np.int64
    for t, scale in ((500, 1), (800, 2), (2000, 3), (6000, 4)):
        feed(writer, _hist(version, t, np.arange(4, dtype=np_dtype) * scale, edges))
    feed(writer, _hist(version, 2500, np.arange(5, dtype=np_dtype), np.arange(6.0)))
    writer.close()
    # the histogram the run began with, the one inside it; the wrong shape is counted
    assert group["time"][:].tolist() == [800, 2000]
    assert group["histograms"][:].tolist() == [[0, 2, 4, 6], [0, 3, 6, 9]]
    assert group["tof"][:].tolist() == edges.tolist()
    assert writer.counts["wrong_shape"] == 1
    with snx.File(h5file) as f:
        loaded = f["monitor_1"][...]
        assert loaded.sizes == {"time": 2, "tof": 4}
        assert str(loaded.coords["tof"].unit) in ("us", "µs")


def test_floating_histograms_keep_their_errors(h5file):
    group = nx_group(h5file, "monitor_2", "NXdata")
    writer = WRITERS["hs00"](group, {"shape": [{"size": 2, "label": "tof",
                                                "edges": [0.0, 1.0, 2.0]}]})
    feed(writer, _hist(0, 2000, np.array([4.0, 9.0]), np.array([0.0, 1.0, 2.0])))
    writer.close()
    assert group["errors"][:].tolist() == [[2.0, 3.0]]
    with snx.File(h5file) as f:
        assert f["monitor_2"][...].variances.tolist() == [[4.0, 9.0]]


def test_da00_variables(h5file):
    group = nx_group(h5file, "image", "NXdata")
    writer = WRITERS["da00"](group, {"variables": [
        {"name": "signal", "data_type": "int32", "shape": [2, 2], "unit": "counts"}]})
    feed(writer, serialise_da00("CAM", 2000, [
        Variable("signal", np.array([[1, 2], [3, 4]], np.int32), axes=["x", "y"], shape=(2, 2)),
        Variable("extra", np.array([1.0]))]))
    writer.close()
    assert group["signal"][:].tolist() == [[[1, 2], [3, 4]]]
    assert group["time"][:].tolist() == [2000]
    assert group["signal"].attrs["units"] == "counts"
    assert writer.counts["unlisted_variables"] == 1


def test_module_configs_that_cannot_be_built(h5file):
    with pytest.raises(ValueError, match="shape"):
        WRITERS["hs00"](h5file.create_group("h"), {})
    with pytest.raises(ValueError, match="variables"):
        WRITERS["da00"](h5file.create_group("d"), {"variables": []})
    with pytest.raises(ValueError, match="dtype"):
        WRITERS["f144"](h5file.create_group("l"), {"dtype": "quaternion"})
