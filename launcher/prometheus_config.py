"""A Prometheus configuration for one instrument's services and its broker: what `up` writes
to <data-dir>/prometheus/prometheus.yml, and what the monitoring test runs Prometheus with.
The rules and the dashboard (deploy/monitoring/) expect these job and label names."""

from __future__ import annotations

import json
from pathlib import Path

from datastream.paths import REPO_ROOT

MONITORING_DIR = REPO_ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING_DIR / "prometheus" / "rules.yml"
BROKER = "kafka-broker"


def prometheus_config(instrument: str, targets: dict[str, str], rules: Path = RULES_FILE,
                      interval: str = "5s",
                      broker_interval: str | None = None) -> dict[str, object]:
    """`targets`: service name -> host:port of its /metrics (the broker's JMX exporter
    under "kafka-broker"). `broker_interval`: the broker's own scrape interval (and timeout),
    when `interval` is too short for it: the JMX exporter walks every MBean of the broker,
    which takes a second or more on a loaded host, and a scrape that times out makes every
    broker series stale."""
    services = [{"targets": [address], "labels": {"service": name, "instrument": instrument}}
                for name, address in targets.items() if name != BROKER]
    jobs: list[dict[str, object]] = [{"job_name": "datastream", "static_configs": services}]
    if BROKER in targets:
        broker: dict[str, object] = {"job_name": "kafka",
                                     "static_configs": [{"targets": [targets[BROKER]]}]}
        if broker_interval:
            broker |= {"scrape_interval": broker_interval, "scrape_timeout": broker_interval}
        jobs.append(broker)
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(rules)], "scrape_configs": jobs}


def write_prometheus_config(path: Path, instrument: str, targets: dict[str, str],
                            interval: str = "5s", broker_interval: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: no YAML library needed, and nothing to quote by hand
    path.write_text(json.dumps(prometheus_config(instrument, targets, interval=interval,
                                                 broker_interval=broker_interval),
                               indent=2) + "\n")
    return path
