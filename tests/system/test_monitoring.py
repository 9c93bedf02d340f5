"""Monitoring of the whole instrument with a real Prometheus (Debian's): every service serves
/metrics, /healthz and /readyz; Prometheus scrapes the services and the broker's JMX exporter
during runs; every PromQL expression of the shipped dashboard and every recorded rule returns
data through Prometheus's HTTP API, every alert expression evaluates; promtool accepts the
rules and the generated configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

from datastream.topics import InstrumentTopics
from launcher.prometheus_config import MONITORING_DIR, RULES_FILE, write_prometheus_config
from launcher.topic_ensure import ensure_topics
from tests.conftest import BROKER_METRICS_PORT, free_port, wait_until
from tests.conftest import http_get as get
from tests.integration.test_topic_table import set_by_hand
from tests.system.conftest import (
    INSTRUMENT,
    instrument,  # noqa: F401 (the whole instrument, a fixture)
)
from tests.system.genie import Genie
from tests.system_tools import require

pytestmark = pytest.mark.system

DASHBOARD = MONITORING_DIR / "grafana" / "dashboards" / "datastream.json"
# what Grafana puts in place of its variables
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$instrument": ".*"}


@pytest.fixture(scope="module")
def prometheus(instrument, tmp_path_factory):  # noqa: F811
    binary = require("prometheus")
    d = tmp_path_factory.mktemp("prometheus")
    targets = {name: f"127.0.0.1:{port}" for name, port in instrument.metrics.items()}
    targets["kafka-broker"] = f"127.0.0.1:{BROKER_METRICS_PORT}"
    # the services every second; the broker's JMX exporter, slower to walk, every 3 s
    config = write_prometheus_config(d / "prometheus.yml", INSTRUMENT, targets, interval="1s",
                                     broker_interval="3s")
    port = free_port()
    with open(d / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={config}",
                                 f"--storage.tsdb.path={d / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(base + "/-/ready")[0] == 200, 30, "Prometheus to be ready")
        yield base, config
    except BaseException:
        print((d / "prometheus.log").read_text()[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(20)


def query(base: str, expr: str) -> list:
    status, body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    reply = json.loads(body)
    assert status == 200 and reply["status"] == "success", f"{expr}: {body}"
    return reply["data"]["result"]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    out = []
    for expr in exprs:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        out.append(expr)
    return out


def rules(kind: str) -> list[dict]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if kind in r]


def test_every_service_serves_metrics_health_and_readiness(instrument):  # noqa: F811
    expected = {"forwarder": "pvs_subscribed", "filewriter": "worker_state",
                "run-control-ioc": "runcontrol_run_state", "liveview": "liveview_events_binned"}
    for name, port in instrument.metrics.items():
        base = f"http://127.0.0.1:{port}"
        status, text = get(base + "/metrics")
        assert status == 200 and expected[name] in text, name
        assert 'datastream_service_info{instrument="SYS"' in text
        assert get(base + "/healthz") == (200, "ok\n")
        wait_until(lambda b=base: get(b + "/readyz")[0] == 200, 20, f"{name} ready")
        assert get(base + "/nothing")[0] == 404


def test_prometheus_sees_runs_and_every_expression_returns_data(instrument, prometheus):  # noqa: F811
    base, config = prometheus
    g = Genie(instrument.prefix)
    # scraped before the runs: a counter's first sample is no increase
    wait_until(lambda: len(query(base, 'up == 1')) == len(instrument.metrics) + 1, 30,
               "every target scraped")
    g.begin()
    time.sleep(4)
    g.end()
    g.begin()  # a run in progress while the expressions are asked
    try:
        time.sleep(6)  # rates over a few scrapes
        empty = []
        for expr in dashboard_expressions() + [r["expr"] for r in rules("record")]:
            if not query(base, expr):
                empty.append(expr)
        assert empty == [], ("expressions without data", query(
            base, 'max_over_time(scrape_duration_seconds{job="kafka"}[1m])'),
            query(base, 'min_over_time(up{job="kafka"}[1m])'))
        for rule in rules("alert"):
            query(base, rule["expr"])  # evaluates (empty: nothing to alert about)
        assert query(base, "datastream:under_replicated_partitions")[0]["value"][1] == "0"
        [writing] = query(base, 'worker_state{instrument="SYS"}')
        assert writing["value"][1] == "1"
        events = query(base, 'sum(rate(kafka_server_brokertopicmetrics_messagesin_total'
                             '{topic="SYS_events"}[1m]))')
        assert float(events[0]["value"][1]) > 0
    finally:
        g.end()
    promtool = require("promtool")
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_accepts_the_rules():
    promtool = require("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES_FILE)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def doctor(instrument, *extra: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    services = [f"--service={name}=127.0.0.1:{port}" for name, port in
                instrument.metrics.items()]
    return subprocess.run(
        [sys.executable, "-m", "launcher", "doctor", "--config", str(instrument.config_path),
         "--broker", instrument.kafka.bootstrap, *services, *extra],
        capture_output=True, text=True, timeout=120)


def test_doctor_passes_a_healthy_instrument_and_names_what_is_wrong(instrument):  # noqa: F811
    ok = doctor(instrument)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "broker", "topics", "clock", *instrument.metrics, "data", "supervisor"]
    assert all(line.startswith(("OK", "WARN")) for line in lines), ok.stdout
    clock = next(line for line in lines if " clock " in line)
    assert "broker minus this host" in clock
    set_by_hand(instrument.kafka, f"{INSTRUMENT}_runLog", "retention.ms", "1000")
    try:
        bad = doctor(instrument, "--service=ghost=127.0.0.1:1")
        assert bad.returncode == 1
        assert "FAIL topics" in bad.stdout and "retention.ms 1000 ->" in bad.stdout
        assert "FAIL ghost" in bad.stdout and "no answer" in bad.stdout
    finally:
        ensure_topics(instrument.kafka, InstrumentTopics(INSTRUMENT))
