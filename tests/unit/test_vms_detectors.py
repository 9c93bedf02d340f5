"""isis_histogram's "detectors" config (filewriter.modules.vms_detectors): the detector
table written beside UDET in its order, a detector it lacks written as a dummy and said; a
config that is not a detector table refused with the reason, the histograms still written."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from filewriter.modules import vms_detectors
from tests.unit.test_icp_file_mantid import check_mantid_file
from tests.unit.test_icp_file_modules import isis_stream, structure, write_file

GOOD = {"id": [3, 1, 2], "delay_us": [0.5, 0.0, 1.0], "l2_m": [2.0, 1.5, -1.0],
        "code": [3, 3, 1], "two_theta_deg": [90.0, 45.0, 180.0],
        "user": [[10.0, 20.0, 0.0], [1, 2, 3]]}


def _written(udet: list[int], config: dict) -> tuple[dict[str, list], list[str]]:
    with h5py.File("vms.h5", "w", driver="core", backing_store=False) as f:
        said = vms_detectors.write(f, np.array(udet, np.int64), vms_detectors.parse(config))
        return {name: f[name][:].tolist() for name in f}, said


def test_the_table_is_written_in_udet_s_order():
    arrays, said = _written([1, 2, 3], GOOD)
    assert said == []
    assert arrays["LEN2"] == [1.5, -1.0, 2.0]
    assert arrays["TTHE"] == [45.0, 180.0, 90.0]
    assert arrays["DELT"] == [0.0, 1.0, 0.5]
    assert arrays["CODE"] == [3, 1, 3]
    assert arrays["UT01"] == [20.0, 0.0, 10.0] and arrays["UT02"] == [2.0, 3.0, 1.0]
    assert arrays["NUSE"] == [2]


def test_a_detector_the_table_lacks_is_a_dummy_and_said():
    arrays, said = _written([2, 9, 3, -4], GOOD)
    assert arrays["LEN2"] == [-1.0, 0.0, 2.0, 0.0] and arrays["CODE"] == [1, 0, 3, 0]
    assert len(said) == 1 and "2 of UDET's detectors (first [9, -4])" in said[0]


@pytest.mark.parametrize(("change", "reason"), [
    ({"id": [1, 1, 2]}, "an id has more than one line"),
    ({"id": []}, "0 ids"),
    ({"id": "1,2,3"}, "id is not a list"),
    ({"id": [1, 2, 2**31]}, "id holds a value that is not a whole number"),
    ({"id": [1, 2, True]}, "id holds a value that is not a whole number"),
    ({"l2_m": [1.0, math.nan, 2.0]}, "l2_m holds a value that is not a finite number"),
    ({"two_theta_deg": [1.0, math.inf, 2.0]}, "two_theta_deg holds a value"),
    ({"delay_us": [1.0, 1e300, 2.0]}, "delay_us holds a value that is not a finite"),
    ({"l2_m": [1.0, 10**400, 2.0]}, "l2_m holds a value that is not a finite"),
    ({"delay_us": [1.0, "2", 2.0]}, "delay_us holds a value"),
    ({"l2_m": [1.0]}, "l2_m has 1 values, id 3"),
    ({"code": None}, "code is not a list"),
    ({"code": [1, 2.5, 3]}, "code holds a value that is not a whole number"),
    ({"user": [[1, 2]]}, "user column 1 has 2 values"),
    ({"user": [[0, 0, 0]] * 100}, "100 user columns, more than 99"),
])
def test_a_config_that_is_not_a_detector_table_is_refused_with_the_reason(change, reason):
    with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
        vms_detectors.parse(GOOD | change)


def test_a_bad_table_leaves_the_histograms_written_and_says_why(tmp_path, monkeypatch):
    def with_bad_table(*args, **kwargs):
        s = structure(*args, **kwargs)
        histogram = next(c for c in s["children"][0]["children"]
                         if c.get("module") == "isis_histogram")
        histogram["config"]["detectors"] = GOOD | {"l2_m": [1.0, math.nan, 2.0]}
        return s

    monkeypatch.setattr("tests.unit.test_icp_file_modules.structure", with_bad_table)
    path, warnings = write_file(tmp_path, isis_stream())
    assert warnings == ["isis_histogram: the detector table is not written: detectors: "
                        "l2_m holds a value that is not a finite number"]
    check_mantid_file(path)
    with h5py.File(path) as f:
        assert "LEN2" not in f["raw_data_1/isis_vms_compat"]
        assert f["raw_data_1/detector_1/counts"][:].sum() > 0
