"""Each detector's parameters for the run file's isis_vms_compat (ioc.detector_parameters):
DEMO's geometry gives DEMO's DETECTOR.DAT to its five decimals; a table's columns are kept,
its user columns too; a table too large for a run start loses its user columns past φ,
then all of it, and says so."""

from __future__ import annotations

import json
import logging

import numpy as np

from datastream.geometry import load_geometry
from datastream.paths import IOCBOOT_DIR
from ioc.detector_parameters import detector_parameters, fitted, from_geometry, json_bytes
from ioc.isis_tables import parse_detectors

DEMO = IOCBOOT_DIR / "DEMO"


def _by_id(config: dict, column: str, user: int | None = None) -> np.ndarray:
    values = np.asarray(config["user"][user] if user is not None else config[column])
    return values[np.argsort(config["id"])]


def test_demo_s_geometry_gives_demo_s_detector_table():
    table = parse_detectors((DEMO / "tables/detector_DEMO.dat").read_text())
    from_table = detector_parameters(table, None)
    ours = from_geometry(load_geometry(DEMO / "geometry.toml"))
    assert sorted(ours["id"]) == sorted(from_table["id"])
    for column in ("delay_us", "l2_m", "code", "two_theta_deg"):
        np.testing.assert_allclose(_by_id(ours, column), _by_id(from_table, column),
                                   atol=1e-5, err_msg=column)
    np.testing.assert_allclose(_by_id(ours, "", 0), _by_id(from_table, "", 0), atol=1e-5)
    assert json_bytes(ours) >= len(json.dumps(ours))  # the estimate is an upper bound


def test_a_table_s_user_columns_are_kept():
    table = parse_detectors("DETECTOR.DAT\n2 3\nnames\n1 0.5 2.0 3 90 10 7 8\n"
                            "5 0.0 -1.0 1 180 0 1 2\n")
    config = detector_parameters(table, None)
    assert config == {"id": [1, 5], "delay_us": [0.5, 0.0], "l2_m": [2.0, -1.0],
                      "code": [3, 1], "two_theta_deg": [90.0, 180.0],
                      "user": [[10.0, 0.0], [7.0, 1.0], [8.0, 2.0]]}


def test_a_table_too_large_for_a_run_start_is_cut_and_said(caplog):
    config = {"id": list(range(1000)), "delay_us": [0.0] * 1000, "l2_m": [1.0] * 1000,
              "code": [3] * 1000, "two_theta_deg": [90.0] * 1000,
              "user": [[0.0] * 1000] * 10}
    with caplog.at_level(logging.WARNING):
        assert fitted(config, json_bytes(config)) == config
        phi_only = fitted(config, json_bytes(config) - 1)
        assert phi_only is not None and phi_only["user"] == config["user"][:1]
        assert "9 user columns past UT01 are left out" in caplog.text
        assert fitted(config, 1000) is None
        assert "(DELT, LEN2, TTHE, UT01) is left out" in caplog.text
    assert detector_parameters(None, None) is None
