"""The DAE's settings documents, read and written by ibex_bluesky_core's own converters (the
judge of the format), and checked whole on a put."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from ioc.dae import PeriodPlan
from ioc.dae_settings import MAX_PERIODS, DaeSetup, Periods, Tcb, TimeRow, Updates
from ioc.labview_xml import SettingsError, compress_hex, dehex_decompress

# ibex_bluesky_core's converters, run in a process of their own: importing them loads
# epicscorelibs' libca (through ophyd-async and aioca) beside pyepics' in this process,
# which breaks the CA monitors of later tests
_CONVERT = """
import json, sys
from ibex_bluesky_core.devices.dae._period_settings import (
    DaePeriodSettingsData, _convert_period_settings_to_xml, _convert_xml_to_period_settings)
from ibex_bluesky_core.devices.dae._settings import (
    DaeSettingsData, _convert_dae_settings_to_xml, _convert_xml_to_dae_settings)
from ibex_bluesky_core.devices.dae._tcb_settings import (
    DaeTCBSettingsData, TimeRegime, TimeRegimeMode, TimeRegimeRow,
    _convert_tcb_settings_to_xml, _convert_xml_to_tcb_settings)
docs = json.load(sys.stdin)
read = _convert_xml_to_dae_settings(docs["setup"])
tcb = _convert_xml_to_tcb_settings(docs["tcb"]).tcb_tables[1].rows[1]
print(json.dumps({
    "monitor": [read.mon_spect, read.mon_from, read.mon_to],
    "setup": _convert_dae_settings_to_xml(docs["setup"], DaeSettingsData(mon_spect=4,
                                                                         smp_veto=True)),
    "tcb_to": tcb.to,
    "tcb": _convert_tcb_settings_to_xml(docs["tcb"], DaeTCBSettingsData(tcb_tables={1:
        TimeRegime(rows={1: TimeRegimeRow(from_=10.0, to=20_010.0, steps=20.0,
                                          mode=TimeRegimeMode.DT)})})),
    "soft_periods": _convert_xml_to_period_settings(docs["periods"]).periods_soft_num,
    "periods": _convert_period_settings_to_xml(docs["periods"],
                                               DaePeriodSettingsData(periods_soft_num=5)),
}))
"""


@pytest.fixture(scope="module")
def bluesky(tmp_path_factory) -> dict:
    setup = DaeSetup(monitor_spectrum=2, monitor_from_us=1000.0, monitor_to_us=5000.0)
    docs = {"setup": setup.xml(), "tcb": dehex_decompress(compress_hex(Tcb().xml())),
            "periods": Periods().xml()}
    # its log goes to C:\instrument\var\logs\bluesky, a folder of that name under the
    # working directory on Linux, unless told otherwise
    logs = tmp_path_factory.mktemp("bluesky-logs")
    out = subprocess.run([sys.executable, "-c", _CONVERT], input=json.dumps(docs), text=True,
                         capture_output=True, timeout=120, check=True, cwd=logs,
                         env=os.environ | {"IBEX_BLUESKY_CORE_LOGS": str(logs)})
    return json.loads(out.stdout)


def test_ibex_bluesky_core_reads_and_writes_the_dae_settings(bluesky: dict) -> None:
    assert bluesky["monitor"] == [2, 1000, 5000]
    new = DaeSetup(monitor_spectrum=2).updated(bluesky["setup"])
    assert new.monitor_spectrum == 4 and new.flags["SMP (Chopper) Veto"] == 1


def test_ibex_bluesky_core_sets_the_time_channels(bluesky: dict) -> None:
    tcb = Tcb()
    assert tcb.channels() == (0.0, 100_000_000.0, 1000, False)
    assert bluesky["tcb_to"] == 100_000
    assert tcb.updated(bluesky["tcb"]).channels() == (10_000.0, 20_010_000.0, 1000, False)
    log = Tcb((TimeRow(100.0, 20_000.0, 0.01, 2),)).channels()
    assert log[2] == math.ceil(math.log(200) / math.log(1.01)) and log[3]


def test_ibex_bluesky_core_sets_the_periods(bluesky: dict) -> None:
    assert bluesky["soft_periods"] == 1
    assert Periods().updated(bluesky["periods"]).number == 5


@pytest.mark.parametrize("bad", [
    ("TR1 From 1", "nan"), ("TR1 To 1", "inf"), ("TR1 Steps 1", "0"), ("TR1 From 1", "-5"),
    ("TR1 In Mode 1", "7"), ("TR2 In Mode 1", "1"), ("TR1 Steps 1", "1e-9"),
])
def test_a_bad_tcb_is_refused_with_the_reason(bad: tuple[str, str]) -> None:
    name, value = bad
    tcb = Tcb()
    xml = tcb.xml().replace(f"<Name>{name}</Name><Val>", f"<Name>{name}</Name><Val>{value}<!--")
    xml = xml.replace("<!--", "</Val><Skip>", 1)  # the old value goes into an unread element
    with pytest.raises(SettingsError):
        tcb.updated(xml)


def test_documents_that_are_not_settings_are_refused() -> None:
    for text in ("", "<Cluster><Name>Other</Name></Cluster>", "<not xml", "x" * 2_000_000):
        with pytest.raises(SettingsError):
            Tcb().updated(text)
    with pytest.raises(SettingsError):
        dehex_decompress("zz")
    with pytest.raises(SettingsError):  # a compressed bomb is not inflated past the bound
        import zlib
        dehex_decompress(zlib.compress(b"<" * 50_000_000).hex())
    assert Updates().updated(Updates(42).xml()).frequency == 42


@pytest.mark.parametrize("periods", [0, -1, -2**31, MAX_PERIODS + 1])
def test_a_number_of_periods_out_of_range_is_refused(periods) -> None:
    # NUMPERIODS:SP replaces the number alone, past the document's checks
    with pytest.raises(SettingsError, match="software periods"):
        dataclasses.replace(Periods(), soft_periods=periods)
    with pytest.raises(ValueError):
        PeriodPlan(periods if periods < 1 else 1, ((periods, 1, False),))
