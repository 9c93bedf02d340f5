"""The instrument geometry file: what it means (positions, angles, flight paths), what it
refuses, and the DEMO instrument's as shipped."""

from __future__ import annotations

import numpy as np
import pytest

from datastream.geometry import GeometryError, load_geometry
from datastream.paths import IOCBOOT_DIR
from ioc.nexus_template import RunMetadata, nexus_structure
from ioc.simulated_dae import DaeSettings, PowderGenerator

GOOD = """
[source]
distance_m = 10.0
[[banks]]
name = "a"
first_id = 1
rows = 2
columns = 3
pixel_size_m = 0.1
distance_m = 2.0
two_theta_deg = 90.0
[[monitors]]
name = "m1"
id = 99
z_m = -1.0
"""


def test_a_bank_faces_the_sample_at_its_angle(tmp_path):
    (tmp_path / "g.toml").write_text(GOOD)
    g = load_geometry(tmp_path / "g.toml")
    assert g.pixel_ids().tolist() == [1, 2, 3, 4, 5, 6]
    pos = g.pixel_positions()
    # at 90° the panel's centre is 2 m along +x; its columns run along -z, rows along y
    np.testing.assert_allclose(pos.mean(axis=0), [2.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pos[:3, 2], [0.1, 0.0, -0.1], atol=1e-12)
    np.testing.assert_allclose(pos[[0, 3], 1], [-0.05, 0.05])
    np.testing.assert_allclose(np.degrees(g.two_theta()[1]), 90.0)  # the middle column
    np.testing.assert_allclose(g.flight_path_m()[1], 10.0 + np.hypot(2.0, 0.05))
    assert g.monitors[0].id == 99


@pytest.mark.parametrize(("change", "reason"), [
    (("two_theta_deg = 90.0", "two_theta_deg = 200.0"), "two_theta_deg"),
    (("rows = 2", "rows = 0"), "rows"),
    (('name = "a"', 'name = "a/b"'), "plain identifier"),
    (("distance_m = 10.0", "distance_m = -1"), "distance_m"),
    (("z_m = -1.0", 'z_m = "far"'), "z_m"),
])
def test_a_bad_geometry_says_where(tmp_path, change, reason):
    (tmp_path / "g.toml").write_text(GOOD.replace(*change, 1))
    with pytest.raises(GeometryError, match=reason):
        load_geometry(tmp_path / "g.toml")


def test_banks_may_not_share_ids(tmp_path):
    second = GOOD.split("[[monitors]]")[0].split("[[banks]]")[1]
    (tmp_path / "g.toml").write_text(GOOD + "[[banks]]" + second.replace('"a"', '"b"'))
    with pytest.raises(GeometryError, match="share pixel ids"):
        load_geometry(tmp_path / "g.toml")


def test_demo_geometry_in_the_run_file_and_the_powder():
    g = load_geometry(IOCBOOT_DIR / "DEMO" / "geometry.toml")
    assert len(g.pixel_ids()) == 4096
    structure = nexus_structure(RunMetadata("DEMO", 1, "t", (), ""), "DEMO_events", "DAE",
                                [], [], g)
    entry = {c["name"]: c for c in structure["children"][0]["children"] if "name" in c}
    instrument = {c["name"]: c for c in entry["instrument"]["children"] if "name" in c}
    assert {"source", "panel", "backscatter"} <= set(instrument)
    assert "sample" in entry and "monitor_1" in entry
    panel = {c.get("name") or c["config"]["name"]: c for c in instrument["panel"]["children"]}
    assert panel["events"]["config"]["source"] == "/raw_data_1/detector_1_events"
    assert np.shape(panel["detector_number"]["config"]["values"]) == (48, 64)
    settings = DaeSettings(events_per_frame=20_000, seed=2)
    tof, pixel = PowderGenerator(settings, g).frame()
    assert set(np.unique(pixel)) <= set(g.pixel_ids().tolist())
    assert tof.min() >= 0 and tof.max() < settings.frame_period_ns
