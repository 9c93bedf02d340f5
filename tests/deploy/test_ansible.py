"""The Ansible playbook (deploy/ansible) for real, on this machine: it installs Kafka, an
instrument's services and the monitoring files into a temporary prefix (connection local;
there is no systemd here, so the test starts each installed unit's ExecStart itself, with
the unit's environment, at the point of the run where systemd would), the services then run
and a run gives a file; a further run of the playbook, while they run, changes nothing;
ansible-lint is clean."""

from __future__ import annotations

import base64
import configparser
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import pytest
import yaml
from caproto import CaprotoError, ChannelType
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from datastream.epics_network import EpicsPorts
from datastream.paths import REPO_ROOT
from launcher.broker import embedded
from tests.conftest import free_port, http_get, wait_until
from tests.system_tools import require

pytestmark = pytest.mark.deploy

ANSIBLE = REPO_ROOT / "deploy" / "ansible"
# what git ignores (.gitignore) and git itself
SKIP = {".venv", ".git", "var", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache",
        "dist", "build", "datastream.egg-info"}


def source_archive(path: Path) -> Path:
    """The working tree as the playbook installs it (what `git archive` gives, plus any
    uncommitted change being tested)."""
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if set(Path(info.name).parts) & SKIP else info

    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(REPO_ROOT.iterdir()):
            if item.name not in SKIP:
                tar.add(item, arcname=item.name, filter=keep)
    return path


class Unit:
    """An installed systemd unit, run the way systemd would run it."""

    def __init__(self, path: Path) -> None:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # keys as written
        parser.read(path)
        self.name = path.stem
        service = parser["Service"]
        self.argv = shlex.split(service["ExecStart"])
        self.env = dict(os.environ)
        # every EnvironmentFile= in order, as systemd reads them ("-": may be missing)
        for entry in path.read_text().splitlines():
            if not entry.startswith("EnvironmentFile="):
                continue
            name = entry.partition("=")[2].strip()
            env_file = Path(name.lstrip("-"))
            if name.startswith("-") and not env_file.exists():
                continue
            for line in env_file.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    self.env[key] = value
        self.cwd = service.get("WorkingDirectory")
        self.stop_timeout = float(service.get("TimeoutStopSec", 90))
        self.proc: subprocess.Popen | None = None

    def start(self, log_dir: Path) -> None:
        with open(log_dir / f"{self.name}.out", "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the unit's control group, as systemd
        try:
            self.proc.wait(min(self.stop_timeout, 60))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def site(tmp_path_factory):
    playbook = require("ansible-playbook")
    work = tmp_path_factory.mktemp("ansible")
    prefix = work / "root"
    ports = {"kafka_port": free_port(), "kafka_controller_port": free_port(),
             "kafka_metrics_port": free_port(), "instrument_ca_port": free_port(),
             "instrument_repeater_port": free_port(), "instrument_se_ca_port": free_port(),
             "instrument_pva_port": free_port(), "instrument_pva_broadcast_port": free_port(),
             "instrument_liveview_pva_port": free_port(),
             "instrument_liveview_pva_search_port": free_port(),
             "instrument_liveview_ca_port": free_port(),
             "instrument_liveview_http_port": free_port(),
             "instrument_procserv_runcontrol_port": free_port(),
             "instrument_procserv_sampleenv_port": free_port()}
    variables = {
        "deploy_prefix": str(prefix), "datastream_become": False, "datastream_systemd": False,
        "datastream_user": "root", "datastream_create_user": False,
        "datastream_archive": str(source_archive(work / "datastream.tar.gz")),
        "datastream_python": str(Path(sys.base_prefix) / "bin" / "python3"),
        "kafka_cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "kafka_listen_host": "127.0.0.1", "kafka_advertised_host": "127.0.0.1",
        "kafka_metrics_host": "127.0.0.1", "kafka_heap": "512m",
        "kafka_java": os.path.realpath(require("java")),
        "instrument_name": "ANS", "instrument_prefix": "TE:ANS:",
        "instrument_dae": {"frame_rate_hz": 10.0, "events_per_frame": 100, "pixels": 256},
        "instrument_metrics_base": free_port(block=5), "instrument_metrics_host": "127.0.0.1",
        "monitoring_install_packages": False, "monitoring_promtool": require("promtool"),
        # the cluster's secrets (made by the kafka role) in this test's folder
        "kafka_credentials_dir": str(work / "credentials"), "kafka_no_log": False,
        **ports}
    (work / "vars.json").write_text(json.dumps(variables))
    local = {"localhost": {"ansible_connection": "local", "kafka_node_id": 1,
                           "ansible_python_interpreter": "/usr/bin/python3"}}
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {
        group: {"hosts": local} for group in ("kafka_brokers", "instruments", "monitoring")}}}))

    env = os.environ | {
        "ANSIBLE_NOCOLOR": "1",
        # its lines as it prints them (play() acts on them): piped, Python would hold them
        "PYTHONUNBUFFERED": "1",
        # facts gathered once, by the first play, and then read from this cache by the other
        # plays and runs (each of the 4 plays of the 3 runs gathered them again): the roles
        # use no fact, and the host's do not change during the test
        "ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(work / "facts"),
        # `datastream broker fetch` runs Maven twice, a JVM that is over before its JIT's
        # optimising tier pays off: without it each takes half the time (the same jars)
        "MAVEN_OPTS": f"{os.environ.get('MAVEN_OPTS', '')} -XX:TieredStopAtLevel=1".strip()}

    def play(*extra: str, when: dict[str, Callable[[], object]] | None = None
             ) -> subprocess.CompletedProcess[str]:
        """A run of the playbook. `when`: line start -> what to do as soon as the playbook
        prints such a line (a play's start: the plays before it are done, where systemd
        would start their units), or at the end if it printed none."""
        pending = dict(when or {})
        t0 = time.monotonic()
        args = [playbook, "-i", str(work / "inventory.yml"), str(ANSIBLE / "site.yml"),
                "-e", f"@{work / 'vars.json'}", *extra]
        with (tempfile.TemporaryFile("w+") as stderr,
              subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True,
                               cwd=ANSIBLE, env=env, start_new_session=True) as proc):

            def kill() -> None:  # the playbook and the modules it runs
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)

            timeout = threading.Timer(900, kill)
            timeout.start()
            try:
                lines = []
                for line in proc.stdout:
                    lines.append(line)
                    for start in [start for start in pending if line.startswith(start)]:
                        pending.pop(start)()
                proc.wait()
            finally:
                timeout.cancel()
                kill()  # a `when` failed: the test ends, the playbook with it
            stderr.seek(0)
            done = subprocess.CompletedProcess(args, proc.returncode, "".join(lines),
                                               stderr.read())
        print(f"ansible-playbook {' '.join(extra)}: {time.monotonic() - t0:.0f} s")
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        for action in pending.values():
            action()
        return done

    units: list[Unit] = []
    try:
        yield play, prefix, variables, units, work
    finally:
        # the services together (each its own process group), then the broker they use
        try:
            with ThreadPoolExecutor() as stopping:
                list(stopping.map(Unit.stop, [u for u in units if u.name != "kafka"]))
        finally:
            for unit in units:
                if unit.name == "kafka":
                    unit.stop()


def recap(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("localhost"))


def ca_text(pv: str) -> str:
    try:
        value = ca_read(pv, timeout=2, data_type=ChannelType.STRING).data[0]
    except (TimeoutError, CaprotoError):
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def play_after(name: str) -> str:
    """The line the playbook prints when the play after site.yml's play `name` starts."""
    names = [play["name"] for play in yaml.safe_load((ANSIBLE / "site.yml").read_text())]
    return f"PLAY [{names[names.index(name) + 1]}]"


def test_the_playbook_deploys_an_instrument_that_writes_a_run(site, monkeypatch):
    play, prefix, variables, units, work = site
    unit_dir = prefix / "etc" / "systemd" / "system"

    def start(name: str) -> None:
        unit = Unit(unit_dir / f"{name}.service")
        units.append(unit)
        unit.start(work)

    # Kafka is installed but not running: no systemd here. The test starts the broker where
    # systemd would (the Kafka play done), while the playbook goes on with the instrument
    play("--skip-tags", "topics", when={play_after("Kafka brokers"): lambda: start("kafka")})
    wait_until(lambda: embedded.port_open(variables["kafka_port"]), 90, "the deployed broker")
    # the instrument's services start where systemd would start them too: the instruments'
    # play done (their topics and logins made), before the retired principals go
    services = [f"datastream-ans-{name}"
                for name in ("sampleenv", "runcontrol", "forwarder", "filewriter", "liveview")]

    def start_services() -> None:
        for name in services:
            start(name)

    first = play(when={play_after("Instruments"): start_services})
    assert "changed=0" not in recap(first.stdout)  # the topics were made
    # a further run changes nothing, while the deployment it re-applies runs a run (as a
    # site's re-run would: its services up); it is checked at the end
    with ThreadPoolExecutor(1) as further:
        again = further.submit(play)
        # the units' EPICS environment (templated) is the one the launcher gives its services
        ports = EpicsPorts(
            run_control_ca=variables["instrument_ca_port"],
            sample_env_ca=variables["instrument_se_ca_port"],
            repeater=variables["instrument_repeater_port"],
            pva_server=variables["instrument_pva_port"],
            pva_broadcast=variables["instrument_pva_broadcast_port"],
            liveview_pva=variables["instrument_liveview_pva_port"],
            liveview_pva_broadcast=variables["instrument_liveview_pva_search_port"],
            liveview_ca=variables["instrument_liveview_ca_port"])
        templated = units[-1].env
        assert {k: templated.get(k) for k in ports.client_env()} == ports.client_env()
        # the file writer's readiness, then a run from the PVs
        ready = f"http://127.0.0.1:{variables['instrument_metrics_base'] + 3}/readyz"
        wait_until(lambda: http_get(ready)[0] == 200, 90,
                   "the deployed file writer to be ready")
        # this test's CA client finds the deployed IOCs as the units' own clients do
        for key in ("EPICS_CA_ADDR_LIST", "EPICS_CA_AUTO_ADDR_LIST"):
            monkeypatch.setenv(key, units[-1].env[key])
        wait_until(lambda: ca_text("TE:ANS:FILEWRITER:STATE") == "IDLE", 60,
                   "the deployed run-control IOC")
        page = f"http://127.0.0.1:{variables['instrument_liveview_http_port']}/api/live"

        def live_events() -> int | None:
            status, body = http_get(page)
            return json.loads(body)["counters"].get("EVENTS") if status == 200 else None

        ca_write("TE:ANS:DAE:BEGINRUN", 1, notify=True, timeout=10)
        # the run ends once it has events (the live view counts the run's only)
        wait_until(lambda: (live_events() or 0) > 0, 30, "the run's first events")
        ca_write("TE:ANS:DAE:ENDRUN", 1, notify=True, timeout=30)
        data = Path(variables["deploy_prefix"]) / "var" / "lib" / "datastream" / "ANS"
        wait_until(lambda: ca_text("TE:ANS:DAE:RUNSTATE") == "SETUP", 60, "the run to end")
        [nexus] = sorted(data.glob("ANS*.nxs"))
        with h5py.File(nexus, "r") as f:
            in_file = len(f["raw_data_1/detector_1_events/event_id"])
        assert in_file > 0
        # the deployed live view's page counted the same run
        wait_until(lambda: live_events() == in_file, 30,
                   f"the live page to show {in_file} events")
        procserv = next(u for u in units if u.name.endswith("runcontrol"))
        assert procserv.argv[0].endswith("procServ")
        assert (prefix / "etc" / "prometheus" / "prometheus.yml").exists()
        assert (prefix / "var" / "lib" / "grafana" / "dashboards" / "datastream" /
                "datastream.json").exists()
        assert "changed=0" in recap(again.result().stdout), recap(again.result().stdout)


def test_ansible_lint_is_clean():
    lint = require("ansible-lint")
    done = subprocess.run([lint, "--offline", "-q", "site.yml", "rotate.yml"], cwd=ANSIBLE,
                          capture_output=True, text=True, timeout=600,
                          env=os.environ | {"ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]


def test_the_kafka_role_installs_the_version_the_project_fetches():
    defaults = yaml.safe_load((ANSIBLE / "roles" / "kafka" / "defaults" / "main.yml")
                              .read_text())
    assert defaults["kafka_version"] == embedded.KAFKA_VERSION
