import numpy as np
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.schemas.f142 import serialise_f142
from filewriter.modules import DECODERS
from filewriter.modules.log import LogWriter
from filewriter.timing import Window

W = Window(1000, 5000)


def feed(writer, payload):
    writer.write(DECODERS[payload[4:8].decode()](payload), W)


def test_values_alarms_connections_and_statistics(h5file):
    group = h5file.create_group("temp")
    writer = LogWriter(group, {"units": "K"})
    feed(writer, serialise_ep01(500, ConnectionInfo.CONNECTED, "T"))
    feed(writer, serialise_f142(10.0, "T", 900))  # the value at start
    feed(writer, serialise_f142(12.0, "T", 2000))
    feed(writer, serialise_al00("T", 2000, Severity.MAJOR, "HIHI"))
    feed(writer, serialise_f142(14.0, "T", 3000))
    feed(writer, serialise_ep01(4000, ConnectionInfo.DISCONNECTED, "T"))
    feed(writer, serialise_f142(99.0, "T", 6000))  # after the stop
    writer.close()
    assert group["value"][:].tolist() == [10.0, 12.0, 14.0]
    assert group["time"][:].tolist() == [900, 2000, 3000]
    assert group["value"].attrs["units"] == "K"
    assert (group["minimum_value"][()], group["maximum_value"][()]) == (10.0, 14.0)
    assert group["average_value"][()] == 12.0
    assert group["alarm_time"][:].tolist() == [2000]
    assert [s.decode() for s in group["alarm_severity"][:]] == ["MAJOR"]
    assert [s.decode() for s in group["alarm_message"][:]] == ["HIHI"]
    assert group["connection_status_time"][:].tolist() == [500, 4000]
    assert [s.decode() for s in group["connection_status"][:]] == ["CONNECTED", "DISCONNECTED"]


def test_f144_arrays_and_strings(h5file):
    arrays = LogWriter(h5file.create_group("a"), {"dtype": "double", "array_size": 3})
    feed(arrays, serialise_f144("A", np.array([1.0, 2.0, 3.0]), 2000))
    feed(arrays, serialise_f144("A", np.array([4.0, 5.0]), 2500))  # shorter: padded
    arrays.close()
    assert h5file["a/value"][:].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]]
    assert arrays.counts["truncated"] == 1
    assert "minimum_value" not in h5file["a"]
    strings = LogWriter(h5file.create_group("s"), {"type": "string"})
    feed(strings, serialise_f142("idle", "S", 1500))
    strings.close()
    assert [s.decode() for s in h5file["s/value"][:]] == ["idle"]
    # no alarm or connection change: the datasets are there, empty, in every log alike
    assert len(h5file["s/alarm_time"]) == 0 and len(h5file["s/connection_status"]) == 0


def test_values_are_converted_to_the_configured_dtype(h5file):
    group = h5file.create_group("i")
    writer = LogWriter(group, {"dtype": "int32"})
    feed(writer, serialise_f142(3.0, "I", 2000))
    feed(writer, serialise_f142("7", "I", 2100))  # a number in a string converts
    feed(writer, serialise_f142("busy", "I", 2200))  # this cannot: counted, skipped
    feed(writer, serialise_f144("I", np.array([5, 6]), 2300))  # first element, counted
    writer.close()
    assert group["value"].dtype == np.int32
    assert group["value"][:].tolist() == [3, 7, 5]
    assert group["time"][:].tolist() == [2000, 2100, 2300]
    assert writer.counts == {"truncated": 1, "unconvertible": 1, "out_of_order": 0}


def test_out_of_order_updates_are_written_and_counted_and_cues_placed(h5file):
    group = h5file.create_group("t")
    writer = LogWriter(group, {"cue_interval": 2})
    for t in (2000, 3000, 2500, 3500, 4000):
        feed(writer, serialise_f144("T", float(t), t))
        if t == 3000:
            writer.flush()
    writer.close()
    assert group["time"][:].tolist() == [2000, 3000, 2500, 3500, 4000]
    assert writer.counts["out_of_order"] == 1
    assert group["cue_index"][:].tolist() == [0, 2, 4]
    assert group["cue_timestamp_zero"][:].tolist() == [2000, 2500, 4000]
