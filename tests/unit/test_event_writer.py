import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.schemas import MalformedMessage
from filewriter.modules.ev44 import EventWriter, decode_events
from filewriter.timing import Window


def ev44(times, index, n_events, first=0):
    tof = np.arange(first, first + n_events, dtype=np.int32)
    return decode_events(serialise_ev44("DAE", 1, np.array(times, np.int64),
                                      np.array(index, np.int32), tof, tof + 1000))


def test_events_of_pulses_inside_the_window_only(h5file):
    group = h5file.create_group("events")
    writer = EventWriter(group, {})
    window = Window(1000, 3000)
    writer.write(ev44([500, 1000, 2000], [0, 2, 5], 9), window)  # pulse at 500 is before start
    writer.write(ev44([2999, 3000], [0, 4], 6, first=100), window)  # 3000 is the stop
    writer.write(ev44([2500], [0], 0), window)  # an empty pulse is kept
    writer.close()
    assert group["event_time_zero"][:].tolist() == [1000, 2000, 2999, 2500]
    assert group["event_index"][:].tolist() == [0, 3, 7, 11]
    assert group["event_time_offset"][:].tolist() == [2, 3, 4, 5, 6, 7, 8, 100, 101, 102, 103]
    assert group["event_id"][:].tolist() == [t + 1000 for t in group["event_time_offset"][:]]
    assert group["event_time_zero"].attrs["units"] == "ns"
    assert group["event_time_zero"].attrs["offset"] == "1970-01-01T00:00:00Z"
    assert group["event_time_zero"].dtype == np.uint64
    assert group["event_index"].dtype == np.int64
    assert writer.total_events == 11


def test_many_flushes_append(h5file):
    writer = EventWriter(h5file.create_group("e"), {})
    for i in range(5):
        writer.write(ev44([10 + i], [0], 3), Window(0, None))
        writer.flush()
    assert h5file["e/event_index"][:].tolist() == [0, 3, 6, 9, 12]
    assert len(h5file["e/event_id"]) == 15


def test_inconsistent_message_is_malformed(h5file):
    writer = EventWriter(h5file.create_group("e"), {})
    with pytest.raises(MalformedMessage):
        writer.write(ev44([1, 2], [3, 1], 4), Window(0, None))
    with pytest.raises(MalformedMessage):
        decode_events(b"\x00\x00\x00\x00ev44garbage")


def test_a_message_sent_twice_is_written_once_and_counted(h5file):
    import numpy as np
    from streaming_data_types.eventdata_ev44 import deserialise_ev44, serialise_ev44

    from filewriter.modules.base import Decoded
    from filewriter.modules.ev44 import EventWriter
    from filewriter.timing import Window

    writer = EventWriter(h5file.create_group("events"), {})

    def message(message_id, t_ns):
        return Decoded("ev44", "DAE", deserialise_ev44(serialise_ev44(
            "DAE", message_id, np.array([t_ns], np.int64), np.array([0], np.int32),
            np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int32))))

    for mid, t in ((7, 100), (7, 100), (7, 200), (8, 300)):  # (7, 100) resent
        writer.write(message(mid, t), Window(0, None))
    writer.close()
    assert h5file["events/event_time_zero"][:].tolist() == [100, 200, 300]
    assert writer.counts["repeated"] == 1
