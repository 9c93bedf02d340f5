"""The shipped Grafana dashboard and provisioning: Grafana cannot be installed here, so its
JSON is checked for the structure Grafana loads (the expressions themselves run against a
real Prometheus in tests/system/test_monitoring.py)."""

from __future__ import annotations

import json

import yaml

from launcher.prometheus_config import MONITORING_DIR, prometheus_config

BOARD = json.loads((MONITORING_DIR / "grafana" / "dashboards" / "datastream.json").read_text())


def test_the_dashboard_has_what_grafana_needs():
    assert BOARD["uid"] and BOARD["title"] and BOARD["schemaVersion"] >= 36
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        cell = (grid["x"], grid["y"])
        assert cell not in cells, f"{panel['title']} overlaps another panel"
        cells.add(cell)
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])


def test_the_dashboard_shows_what_the_facility_watches():
    exprs = " ".join(t["expr"] for p in BOARD["panels"] for t in p["targets"])
    for wanted in ("kafka_server_brokertopicmetrics_bytesin_total",
                   "kafka_server_brokertopicmetrics_messagesin_total",
                   "filewriter_lag_messages", "forwarder_pvs_connected", "forwarder_dropped_total",
                   "worker_state", "filewriter_bytes_read_total",
                   "kafka_server_replicamanager_underreplicatedpartitions"):
        assert wanted in exprs, wanted
    annotations = {a["name"]: a["expr"] for a in BOARD["annotations"]["list"]}
    assert "runcontrol_runs_begun_total" in annotations["Run starts"]
    assert "runcontrol_runs_ended_total" in annotations["Run ends"]


def test_the_provisioning_files():
    provisioning = MONITORING_DIR / "grafana" / "provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "datastream.yml")
                                .read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml")
                              .read_text())["datasources"]
    assert source["type"] == "prometheus"


def test_the_prometheus_config_labels_what_the_rules_expect():
    config = prometheus_config("LOQ", {"forwarder": "127.0.0.1:9402",
                                       "kafka-broker": "127.0.0.1:9405"})
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    [service] = jobs["datastream"]["static_configs"]
    assert service["labels"] == {"service": "forwarder", "instrument": "LOQ"}
    assert jobs["kafka"]["static_configs"] == [{"targets": ["127.0.0.1:9405"]}]
