"""The live view in the whole instrument: its PVA counters follow the run and, at its end,
equal DAE:TOTALCOUNTS and the file's event count exactly, also when the live view was
restarted mid-run (it catches up from the run's start); just-bin-it's histogram of the run,
asked afterwards, counts the same; the live page, in a real headless chromium, follows a
run and ends showing LIVE:EVENTS, and a region dragged out over a bank's image holds that
bank's counts."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import h5py
import numpy as np
import pytest
from p4p.client.thread import Context

from tests.conftest import wait_until
from tests.system.conftest import (
    caget,
    instrument,  # noqa: F401 (the whole instrument, a fixture)
)
from tests.system.genie import Genie

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def pva():
    context = Context("pva")
    yield context
    context.close()


def live(pva, inst, name: str):
    try:
        return pva.get(inst.pv(f"LIVE:{name}"), timeout=2)
    except Exception:  # not served yet (a restarting live view)
        return None


def test_live_counts_equal_the_dae_and_the_file(instrument, pva):  # noqa: F811
    g = Genie(instrument.prefix)
    wait_until(lambda: live(pva, instrument, "EVENTS") is not None, 30, "the live view's PVs")
    g.begin()
    number = g.get("DAE:IRUNNUMBER")
    # (at start-up it showed the topic's last run, maybe another test's)
    started = g.text("DAE:START_TIME")[:19]  # ISO 8601, to the second
    wait_until(lambda: live(pva, instrument, "RUNNUMBER") == f"{number:08d}"
               and (live(pva, instrument, "START_TIME") or "")[:19] == started, 15,
               "the live view to follow the new run")
    wait_until(lambda: (live(pva, instrument, "EVENTS") or 0) > 0, 15, "live counts")
    # the DAE's pixels, and the geometry's monitor after them (spectrum 1025, as the file's
    # NSP1 counts it)
    assert live(pva, instrument, "NUMSPECTRA") == 1025
    instrument.restart("liveview")  # joins the run in progress and catches up
    time.sleep(1.5)
    g.end()
    total = g.get("DAE:TOTALCOUNTS")
    wait_until(lambda: live(pva, instrument, "EVENTS") == total, 20,
               f"LIVE:EVENTS to reach TOTALCOUNTS {total}")
    assert live(pva, instrument, "GOODFRAMES") == g.get("DAE:GOODFRAMES")
    # the counters over CA too, as the IBEX GUI and genie read them
    wait_until(lambda: caget(instrument.pv("LIVE:EVENTS")) == total, 10, "LIVE:EVENTS over CA")
    assert caget(instrument.pv("LIVE:RUNNUMBER"), as_string=True) == f"{number:08d}"
    assert live(pva, instrument, "STOP_TIME")
    with h5py.File(instrument.data_dir / f"SYS{number:08d}.nxs", "r") as f:
        assert len(f["raw_data_1/detector_1_events/event_id"]) == total
        monitor = f["raw_data_1/monitor_hist_1/data"][:]
        assert f["raw_data_1/monitor_hist_1/spectrum_index"][:].tolist() == [1025]
    # the monitor's DAE spectrum is the file's monitor histogram, period by period
    assert monitor.sum() > 0
    for period, counts in enumerate(monitor[:, 0], start=1):
        yc = caget(instrument.pv(f"DAE:SPEC:{period}:1025:YC"))[:len(counts)]
        assert np.asarray(yc).tolist() == counts.tolist()
    time.sleep(1.0)  # the run is closed: nothing after its stop is added
    assert live(pva, instrument, "EVENTS") == total
    # NICOS asks just-bin-it (the live view's) for the finished run's spectrum afterwards
    start_ms, stop_ms = run_window(instrument, f"{number:08d}")
    assert jbi_total(instrument, start_ms, stop_ms) == total


def run_window(instrument, run_name: str) -> tuple[int, int]:  # noqa: F811
    """The run's start and stop (ms) as run control sent them."""
    from streaming_data_types.run_start_pl72 import deserialise_pl72
    from streaming_data_types.run_stop_6s4t import deserialise_6s4t

    from datastream.schemas import schema_id
    from tests.integration.conftest import read_all

    messages = [m.value() for m in read_all(instrument.kafka, "SYS_runInfo")]
    start = next(deserialise_pl72(p) for p in reversed(messages)
                 if schema_id(p) == "pl72" and deserialise_pl72(p).run_name == run_name)
    stop = next(deserialise_6s4t(p) for p in reversed(messages)
                if schema_id(p) == "6s4t" and deserialise_6s4t(p).job_id == start.job_id)
    return start.start_time, stop.stop_time


def jbi_total(instrument, start_ms: int, stop_ms: int) -> int:  # noqa: F811
    """A 1-D time-of-flight histogram over [start, stop) asked as NICOS asks; its final sum."""
    import uuid

    from streaming_data_types.histogram_hs00 import deserialise_hs00

    from datastream.kafka_client import deliver, make_producer
    from tests.integration.conftest import read_all

    hist_id = f"nicos-{uuid.uuid4().hex[:8]}"
    deliver(make_producer(instrument.kafka), "SYS_liveCommands", json.dumps({
        "cmd": "config", "msg_id": hist_id, "data_brokers": [instrument.kafka.bootstrap],
        "data_topics": ["SYS_events"], "start": start_ms, "stop": stop_ms,
        "histograms": [{"type": "hist1d", "tof_range": [0, 1_000_000_000], "num_bins": 100,
                        "topic": "SYS_liveHistograms", "id": hist_id,
                        "source": "DAE"}]}).encode())  # the detector, not the monitor

    def final():
        for m in reversed(read_all(instrument.kafka, "SYS_liveHistograms", timeout=2)):
            info = json.loads(deserialise_hs00(m.value())["info"])
            if info["id"] == hist_id and info["state"] == "FINISHED":
                return info
        return None

    return int(wait_until(final, 30, "the just-bin-it histogram of the run")["sum"])


def test_the_live_page_in_a_real_browser(instrument, pva, tmp_path):  # noqa: F811
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    from tests.system_tools import headless_chromium

    driver = headless_chromium()
    def shown(element_id: str) -> str:
        # read in the page itself: an element found first and read after may have been
        # redrawn in between (the counters are redrawn twice a second)
        return driver.execute_script(
            "const e = document.getElementById(arguments[0]);"
            "return e ? e.textContent : '';", element_id)

    try:
        driver.get(f"http://127.0.0.1:{instrument.http_port}/")
        wait_until(lambda: int(shown("updates") or 0) > 0, 20, "the page's first update")
        g = Genie(instrument.prefix)
        g.begin()
        number = g.get("DAE:IRUNNUMBER")
        wait_until(lambda: shown("run-number") == f"{number:08d}"
                   and shown("state") == "RUNNING", 20, "the page to show the new run")
        tof = wait_until(lambda: int(shown("tof-sum")) or None, 20, "a spectrum")
        image = int(shown("image-sum"))
        wait_until(lambda: int(shown("tof-sum")) > tof and int(shown("image-sum")) > image, 10,
                   "the spectrum and the image to grow while the run counts")
        updates = int(shown("updates"))
        time.sleep(2.0)
        assert int(shown("updates")) >= updates + 3  # twice a second
        # the sample environment's logs, as the forwarder sends them
        wait_until(lambda: driver.execute_script(
            "return Object.keys(livePlots.logs).length"), 20,
            "sample-environment logs on the page")
        names = driver.execute_script(
            "return [...document.querySelectorAll('#logs .name')].map(e => e.textContent);")
        assert any("SE:TEMP" in name for name in names), names
        pixel = driver.find_element(By.ID, "pixel")
        pixel.send_keys("1")
        wait_until(lambda: int(shown("pixel-sum")) > 0, 10, "the chosen pixel's spectrum")
        # a region dragged out over the whole of the first bank's image, corner to corner
        driver.set_window_size(1400, 2600)  # the whole page in view, the drag's end too
        name = driver.execute_script("return Object.keys(livePlots.images)[0]")
        box = driver.execute_async_script(
            "frameBox(livePlots.images[arguments[0]]).then(arguments[arguments.length - 1])",
            name)
        driver.execute_script("window.scrollTo(0, 0)")
        drag = ActionBuilder(driver)
        drag.pointer_action.move_to_location(int(box["left"]) + 1, int(box["top"]) + 1)
        drag.pointer_action.pointer_down()
        drag.pointer_action.move_to_location(int(box["left"] + box["width"] / 2),
                                             int(box["top"] + box["height"] / 2))
        drag.pointer_action.move_to_location(int(box["left"] + box["width"]) - 1,
                                             int(box["top"] + box["height"]) - 1)
        drag.pointer_action.pointer_up()
        drag.perform()
        roi = wait_until(lambda: driver.find_element(By.ID, "roi").get_attribute("value"), 10,
                         "the dragged region")
        rows, cols = (int(v) + 1 for v in roi.split(":")[3:])  # first..last, from 0
        assert roi == f"{name}:0:0:{rows - 1}:{cols - 1}"
        wait_until(lambda: int(shown("roi-sum")) > 0, 10, "the region's spectrum")
        assert int(shown("roi-pixels")) == rows * cols
        g.end()
        total = g.get("DAE:TOTALCOUNTS")
        wait_until(lambda: live(pva, instrument, "EVENTS") == total
                   and shown("c-EVENTS") == str(total), 20,
                   f"the page and LIVE:EVENTS to show TOTALCOUNTS {total}")
        assert int(shown("tof-sum")) == total  # every event in the frame's time channels
        # the plot itself: its axes, and its curve summing to LIVE:EVENTS over PVA
        wait_until(lambda: driver.execute_script(
            "return livePlots.tof.sources['all pixels'].data.y.reduce((s, v) => s + v, 0)")
            == total, 5, "the TOF plot's curve to hold every event")
        labels = driver.execute_script(
            "const f = livePlots.tof.figure;"
            "return [f.below[0].axis_label, f.left[0].axis_label]")
        assert labels == ["time of flight (µs)", "counts"]
        ticks = driver.execute_async_script(
            "tickLabels(livePlots.tof).then(arguments[arguments.length - 1])")
        assert len(ticks) >= 3 and all(float(t) >= 0 for t in ticks), ticks
        # the bank's image: the JSON's counts, and its colour bar up to their highest
        with urllib.request.urlopen(f"http://127.0.0.1:{instrument.http_port}/api/live") as a:
            entry = next(i for i in json.load(a)["images"] if i["name"] == name)
        wait_until(lambda: driver.execute_script(
            "const p = livePlots.images[arguments[0]];"
            "return [Array.from(p.source.data.image[0]), p.bar.color_mapper.high]", name)
            == [entry["counts"], max(entry["counts"])], 5, f"the image of {name} as served")
        # the live reduction, where the instrument has one: I(d) over all banks as the page
        # plots it against d in Å, equal to LIVE:DSPACING:ALL:Y over PVA
        if live(pva, instrument, "DSPACING:EVENTS") is not None:
            import numpy as np

            y = np.asarray(pva.get(instrument.pv("LIVE:DSPACING:ALL:Y"), timeout=5))
            x = np.asarray(pva.get(instrument.pv("LIVE:DSPACING:ALL:X"), timeout=5))
            page_d = wait_until(lambda: (lambda d: d if d and d[2] == y.tolist() else None)(
                driver.execute_script(
                    "const p = livePlots.dspacing;"
                    "return p && [p.figure.below[0].axis_label, Array.from(p.sources.ALL.data.x),"
                    "             Array.from(p.sources.ALL.data.y)]")), 10,
                "the page's I(d) to equal LIVE:DSPACING:ALL:Y")
            assert page_d[0] == "d-spacing (Å)" and y.sum() > 0
            np.testing.assert_allclose(page_d[1], x)

        def bank_total() -> int | None:  # the region's sum is that bank's image's
            with urllib.request.urlopen(f"http://127.0.0.1:{instrument.http_port}/api/live?"
                                        + urllib.parse.urlencode({"roi": roi})) as answer:
                state = json.load(answer)
            image = next(i for i in state["images"] if i["name"] == name)
            in_roi = sum(state["roi"]["counts"])
            return in_roi if in_roi == sum(image["counts"]) > 0 else None

        in_bank = wait_until(bank_total, 10, f"the region over {name} to hold its image's counts")
        wait_until(lambda: int(shown("roi-sum")) == in_bank, 5, "the page's region sum")
    finally:
        # one screenshot a run, for a person to look at
        driver.save_screenshot(str(tmp_path / "live_page.png"))
        print(f"screenshot of the live page: {tmp_path / 'live_page.png'}")
        driver.quit()


def test_spectrum_and_image_pvs(instrument, pva):  # noqa: F811
    import numpy as np

    g = Genie(instrument.prefix)
    wait_until(lambda: live(pva, instrument, "EVENTS") is not None, 30, "the live view's PVs")
    spectrum = instrument.pv("LIVE:SPEC:1:5:")
    x, xe = pva.get(spectrum + "X", timeout=5), pva.get(spectrum + "XE", timeout=5)
    assert len(xe) == len(x) + 1 == 1001  # centres and edges of the 1,000 channels, in µs
    assert xe.raw.display.units == "us" and np.all(np.diff(xe) > 0)
    with pytest.raises(TimeoutError):
        pva.get(instrument.pv("LIVE:SPEC:9:5:X"), timeout=1)  # periods 1 to max_periods
    counts: list = []
    watch = pva.monitor(spectrum + "YC", counts.append)  # computed only while watched
    try:
        g.begin()
        number = g.get("DAE:IRUNNUMBER")
        wait_until(lambda: live(pva, instrument, "RUNNUMBER") == f"{number:08d}", 15,
                   "the live view to follow the run")
        # counts of this run: the spectrum posted before may still hold the last run's
        seen = len(counts)
        wait_until(lambda: len(counts) > seen + 1 and counts[-1].sum() > 0, 20,
                   "counts in spectrum 5")
        g.end()
        total = g.get("DAE:TOTALCOUNTS")
        wait_until(lambda: live(pva, instrument, "EVENTS") == total, 20, "the run's end")
        with h5py.File(instrument.data_dir / f"SYS{number:08d}.nxs", "r") as f:
            in_file = int(np.count_nonzero(f["raw_data_1/detector_1_events/event_id"][:] == 5))
        wait_until(lambda: counts[-1].sum() == in_file, 10,
                   f"spectrum 5 to hold the file's {in_file} events of pixel 5")
        final = counts[-1]  # (a closed monitor delivers its end too, as a last item)
        y = pva.get(spectrum + "Y", timeout=5)
        np.testing.assert_allclose(y * np.diff(xe), final, rtol=1e-5)
    finally:
        watch.close()
    image = pva.get(instrument.pv("LIVE:IMAGE"), timeout=5)
    assert image.shape == (32, 32) and int(image.sum()) == total  # 1,024 pixels
    panel = pva.get(instrument.pv("LIVE:PANEL:IMAGE"), timeout=5)  # each bank in its shape
    back = pva.get(instrument.pv("LIVE:BACKSCATTER:IMAGE"), timeout=5)
    assert panel.shape == (24, 32) and back.shape == (8, 32)
    assert int(panel.sum()) + int(back.sum()) == total
    # up to the end of the first channel pixel 5 counted in: some counts in, some out
    first = int(np.flatnonzero(final)[0])
    pva.put(instrument.pv("LIVE:IMAGE:TOF_MAX:SP"), float(xe[first + 1]))
    try:
        wait_until(lambda: 0 < int(pva.get(instrument.pv("LIVE:IMAGE"), timeout=5).sum())
                   < total, 10, "the image limited to a time-of-flight range")
    finally:
        pva.put(instrument.pv("LIVE:IMAGE:TOF_MAX:SP"), float(xe[-1]))
    # the time channels from the TCB setpoints: the run binned again from its start
    from p4p.client.thread import RemoteError

    with pytest.raises(RemoteError, match="logarithmic"):
        pva.put(instrument.pv("LIVE:TCB:LOG:SP"), 1)  # from 0 µs: refused, with the reason
    with pytest.raises(RemoteError, match="outside 1 to 1e"):  # 2G channels: absurd
        pva.put(instrument.pv("LIVE:TCB:CHANNELS:SP"), 2_000_000_000)
    pva.put(instrument.pv("LIVE:TCB:CHANNELS:SP"), 500)
    try:
        wait_until(lambda: live(pva, instrument, "NUMTIMECHANNELS") == 500
                   and len(pva.get(spectrum + "XE", timeout=5)) == 501
                   and live(pva, instrument, "EVENTS") == total, 20,
                   "the run binned again in 500 channels")
        # the arrays follow at the next publish (every 0.5 s)
        wait_until(lambda: (lambda yc: len(yc) == 500 and yc.sum() == in_file)(
            pva.get(spectrum + "YC", timeout=5)), 5, "spectrum 5 binned again")
    finally:
        pva.put(instrument.pv("LIVE:TCB:CHANNELS:SP"), 1000)
