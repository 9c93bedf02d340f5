"""Each detector's parameters as the ICP writes them to a run file's isis_vms_compat (DELT,
LEN2, CODE, TTHE and the user tables UT01, UT02, ..., in UDET's order): the DAE's detector
table when one is set, as the ICP copies DETECTOR.DAT, else the instrument's geometry.

Mantid's UpdateInstrumentFromFile reads UDET, LEN2, TTHE and UT01 (φ) of a NeXus file as
each detector's spherical position about the sample, when the instrument's parameters say
det-pos-source="datafile" (MARI's do); without these arrays that instrument's load fails.
They travel to the file writer in the isis_histogram module's config ("detectors"), which
writes them beside UDET (filewriter.modules.isis_histogram)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datastream.geometry import Geometry
from ioc.isis_tables import MONITOR_CODE, DetectorTable

log = logging.getLogger(__name__)

# what the table may add to a run start (pl72), whose topic takes 64 MiB: room for the
# geometry's pixel offsets and the rest beside it
MAX_JSON_BYTES = 24 << 20
# a position-sensitive gas tube: the code DETECTOR.DAT gives a pixel of the geometry's banks
PIXEL_CODE = 3
# six decimals: micrometres and microdegrees, past what float32 (the file's type) holds of a
# few metres or degrees; a shorter run start than full float64 reprs
DECIMALS = 6


def _config(ids: np.ndarray, delay_us: np.ndarray, l2_m: np.ndarray, code: np.ndarray,
            two_theta_deg: np.ndarray, user: np.ndarray) -> dict[str, Any]:
    """The module config's form: a list a column, user as a list of columns (φ first)."""
    def reals(values: np.ndarray) -> list[float]:
        return np.round(np.asarray(values, np.float64), DECIMALS).tolist()

    return {"id": np.asarray(ids, np.int64).tolist(), "delay_us": reals(delay_us),
            "l2_m": reals(l2_m), "code": np.asarray(code, np.int64).tolist(),
            "two_theta_deg": reals(two_theta_deg),
            "user": [reals(column) for column in np.asarray(user, np.float64).T]}


def from_table(table: DetectorTable) -> dict[str, Any]:
    return _config(table.detectors, table.delays_us, table.l2_m, table.codes,
                   table.two_theta_deg, table.user)


def from_geometry(geometry: Geometry) -> dict[str, Any]:
    """The geometry's pixels about the sample (at the origin, as the run file places it): L2,
    2θ from the beam, φ about it from +x (0..360), no delay; a monitor at its distance along
    the beam, upstream negative with 2θ 180, as ISIS's DETECTOR.DAT gives one."""
    pos = geometry.pixel_positions()
    phi = np.degrees(np.arctan2(pos[:, 1], pos[:, 0])) % 360.0
    z = np.array([m.z_m for m in geometry.monitors], np.float64)
    n = len(pos) + len(z)
    return _config(
        np.concatenate([geometry.pixel_ids(), [m.id for m in geometry.monitors]]),
        np.zeros(n),
        np.concatenate([np.linalg.norm(pos, axis=1), z]),
        np.concatenate([np.full(len(pos), PIXEL_CODE), np.full(len(z), MONITOR_CODE)]),
        np.concatenate([np.degrees(geometry.scattering_angle()),
                        np.where(z < 0, 180.0, 0.0)]),
        np.concatenate([phi, np.zeros(len(z))])[:, None])


def json_bytes(config: dict[str, Any]) -> int:
    """About what the config adds to the run start's JSON: a number is at most ~14
    characters at six decimals (and an id 11), with its separator."""
    return 14 * len(config["id"]) * (4 + len(config["user"]))


def fitted(config: dict[str, Any], budget: int = MAX_JSON_BYTES) -> dict[str, Any] | None:
    """The config within the run start's budget: the user columns past φ dropped first, then
    none at all (a 64-column DETECTOR.DAT of 1,000,000 detectors is ~900 MB of JSON, past
    any Kafka message); said in the log."""
    if json_bytes(config) <= budget:
        return config
    phi_only = config | {"user": config["user"][:1]}
    if json_bytes(phi_only) <= budget:
        log.warning("the detector table's %d user columns past UT01 are left out of the run "
                    "file: %d detectors' worth is more than the run start holds",
                    len(config["user"]) - 1, len(config["id"]))
        return phi_only
    log.warning("the detector table (DELT, LEN2, TTHE, UT01) is left out of the run file: "
                "%d detectors' worth is more than the run start holds", len(config["id"]))
    return None


def detector_parameters(table: DetectorTable | None,
                        geometry: Geometry | None) -> dict[str, Any] | None:
    """The table's, else the geometry's, as the run start holds them; None with neither (the
    file has no such arrays)."""
    if table is not None:
        return fitted(from_table(table))
    if geometry is not None:
        return fitted(from_geometry(geometry))
    return None
