"""The deployed units' sandbox: the playbook's unit templates (Kafka's and the instrument's
services'), rendered by Ansible's `template` module with the roles' variables as a real host
gets them (deploy_prefix "", the default accounts), carry the hardening directives, and
`systemd-analyze security --offline=true` rates each at most THRESHOLD. The scores are printed
(`pytest -s`) and listed in deploy/ansible/README.md."""

from __future__ import annotations

import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from datastream.paths import REPO_ROOT
from tests.system_tools import require

pytestmark = pytest.mark.deploy

ANSIBLE = REPO_ROOT / "deploy" / "ansible"
# measured 1.3 ("OK") for every unit with Debian 12's systemd 252; "OK" ends at 3.9
THRESHOLD = 2.0
INSTRUMENT = ("sampleenv", "runcontrol", "forwarder", "filewriter", "liveview")
UNITS = ("kafka", *(f"datastream-demo-{name}" for name in INSTRUMENT))
# directive -> the value every unit has
REQUIRED = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
    "ProtectHome": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "PrivateDevices": "yes", "PrivateMounts": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "RestrictNamespaces": "yes",
    "LockPersonality": "yes", "SystemCallArchitectures": "native", "UMask": "0027",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK"}
SCORE = re.compile(r"Overall exposure level for (\S+): ([0-9.]+) (\w+)")


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> dict[str, Path]:
    """The unit files as the roles render them (a few seconds: only the templates)."""
    playbook = require("ansible-playbook")
    work = tmp_path_factory.mktemp("units")
    out = work / "system"
    roles = ANSIBLE / "roles"
    render = [{
        "name": "The units of the playbook's roles", "hosts": "localhost",
        "connection": "local", "gather_facts": False,
        "vars_files": [str(ANSIBLE / "group_vars" / "all.yml"),
                       str(roles / "kafka" / "defaults" / "main.yml"),
                       str(roles / "instrument" / "defaults" / "main.yml"),
                       str(roles / "instrument" / "vars" / "main.yml")],
        "vars": {"kafka_node_id": 1},
        "tasks": [
            {"ansible.builtin.file": {"path": str(out), "state": "directory",
                                      "mode": "0755"}},
            {"ansible.builtin.template": {
                "src": str(roles / "kafka" / "templates" / "kafka.service.j2"),
                "dest": f"{out}/kafka.service", "mode": "0644"}},
            {"ansible.builtin.template": {
                "src": str(roles / "instrument" / "templates" / "service.j2"),
                "dest": f"{out}/{{{{ item.unit }}}}.service", "mode": "0644"},
             "loop": "{{ instrument_units }}"}]}]
    (work / "render.yml").write_text(yaml.safe_dump(render, sort_keys=False))
    done = subprocess.run(
        [playbook, "-i", "localhost,", str(work / "render.yml")], capture_output=True,
        text=True, timeout=300, cwd=work,
        env=os.environ | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": str(roles)})
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    return {path.stem: path for path in sorted(out.glob("*.service"))}


def service(path: Path) -> dict[str, list[str]]:
    """The [Service] section's directives, each with its values in order."""
    section, found = "", defaultdict(list)
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()].append(value.strip())
    return found


def test_every_unit_is_sandboxed(units):
    assert sorted(units) == sorted(UNITS)
    defaults = yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text())
    for name, path in units.items():
        directives = service(path)
        for key, value in REQUIRED.items():
            assert directives.get(key) == [value], (name, key, directives.get(key))
        assert directives["SystemCallFilter"] == ["@system-service",
                                                  "~@privileged @resources"], name
        # numba's and Java's JIT compilers write code into memory they then run
        assert "MemoryDenyWriteExecute" not in directives, name
        assert directives["MemoryMax"][0][:-1].isdigit(), name
        [user] = directives["User"]
        [writable] = directives["ReadWritePaths"]
        if name == "kafka":
            assert user == defaults["kafka_user"] == "kafka"
            assert writable.split() == ["/var/lib/kafka"]
        else:
            assert user == defaults["datastream_user"] == "datastream"
            assert writable.split() == ["/var/lib/datastream/DEMO",
                                        "/var/cache/datastream/DEMO", "/var/log/datastream"]
            assert directives["Environment"] == [
                "NUMBA_CACHE_DIR=/var/cache/datastream/DEMO"]


def test_every_unit_exposure_is_low(units):
    analyze = require("systemd-analyze")
    scores: dict[str, tuple[float, str]] = {}
    for name, path in units.items():
        done = subprocess.run([analyze, "security", "--offline=true", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # a misspelt directive is only a warning to systemd, and ignored
        assert done.stderr.strip() == "", done.stderr
        [(unit, score, level)] = SCORE.findall(done.stdout)
        assert unit == path.name
        scores[name] = (float(score), level)
    print("\nsystemd-analyze security --offline=true (exposure, 0 best, 10 worst)")
    for name, (score, level) in scores.items():
        print(f"  {name + '.service':<38} {score:4.1f} {level}")
    assert all(score <= THRESHOLD for score, _ in scores.values()), scores
