"""Fetch, format, start and stop a single-node KRaft Kafka broker on loopback.

The jars come from Maven Central through ``mvn`` (pom.xml beside this file); Java runs only
the broker. Topic auto-creation is off, as on production clusters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from datastream.kafka_client import MAX_MESSAGE_BYTES
from datastream.paths import CACHE_DIR

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("pom.xml")
KAFKA_VERSION = re.search(r"<kafka.version>(.+?)</kafka.version>", POM.read_text()).group(1)
LIBS_DIR = CACHE_DIR / f"kafka-{KAFKA_VERSION}" / "libs"


# the Prometheus JMX exporter, loaded as a javaagent when a BrokerConfig has a metrics_port
JMX_EXPORTER = "io.prometheus.jmx:jmx_prometheus_javaagent:1.0.1"
JMX_EXPORTER_JAR = CACHE_DIR / "jmx-exporter" / "jmx_prometheus_javaagent-1.0.1.jar"
JMX_EXPORTER_RULES = Path(__file__).with_name("jmx_exporter.yml")


class BrokerError(RuntimeError):
    pass


def _mvn(what: str, *args: str, quiet: bool, cwd: Path | None = None) -> None:
    """Run Maven (batch mode); BrokerError with its output if it fails."""
    if shutil.which("mvn") is None:
        raise BrokerError(f"mvn (Apache Maven) is not on PATH; it fetches {what}")
    cmd = ["mvn", "-B", *(["-q"] if quiet else []), *args]
    result = subprocess.run(cmd, capture_output=quiet, text=True, cwd=cwd)
    if result.returncode != 0:
        raise BrokerError(f"mvn could not fetch {what}:\n"
                          f"{(result.stdout or '')[-3000:]}{(result.stderr or '')[-2000:]}")


def fetch_jmx_exporter(jar: Path = JMX_EXPORTER_JAR, quiet: bool = True) -> Path:
    """The exporter's jar, kept apart from the broker's classpath (it is only an agent)."""
    if jar.exists():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    _mvn(JMX_EXPORTER, "dependency:copy", f"-Dartifact={JMX_EXPORTER}",
         f"-DoutputDirectory={jar.parent}", quiet=quiet, cwd=jar.parent)
    if not jar.exists():
        raise BrokerError(f"mvn fetched {JMX_EXPORTER} but {jar} is not there")
    return jar


def fetch_jars(libs_dir: Path = LIBS_DIR, quiet: bool = True) -> Path:
    """Download the broker's jars with Maven unless they are already there."""
    marker = libs_dir / ".complete"
    if marker.exists():
        return libs_dir
    if shutil.which("java") is None:
        raise BrokerError("java is not on PATH; the Kafka broker needs Java 17 or later")
    libs_dir.mkdir(parents=True, exist_ok=True)
    _mvn(f"Kafka {KAFKA_VERSION}", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs_dir}", "-DincludeScope=runtime", quiet=quiet)
    marker.write_text(KAFKA_VERSION)
    return libs_dir


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "1g"
    # a second listener with SASL (PLAIN and SCRAM-SHA-256/512) for these user -> password
    sasl_users: tuple[tuple[str, str], ...] = ()
    sasl_port: int | None = None
    # a third listener with TLS, its key and certificate in this PKCS12 keystore; with a
    # truststore (PKCS12, same password) it admits only clients whose certificate is in it
    ssl_port: int | None = None
    ssl_keystore: Path | None = None
    ssl_keystore_password: str = ""
    ssl_truststore: Path | None = None
    # a node of a cluster (cluster_nodes): its id, every controller as "id@host:port", the
    # cluster's one id, and the replication its internal topics get
    # the ACL profile, set by an admin password: the client listener on `port` takes SASL
    # only (PLAIN for "admin", the super user; SCRAM for sasl_users, the services), the
    # StandardAuthorizer allows what ACLs allow and nothing to anyone else
    admin_password: str = field(default="", repr=False)
    node_id: int = 1
    quorum_voters: str = ""
    cluster_id: str = ""
    replication: int = 1
    # the JMX exporter's /metrics on 127.0.0.1:metrics_port (per-topic rates, replication)
    metrics_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def console_log(self) -> Path:
        return self.data_dir / "broker.log"

    def admin_client_conf(self) -> dict[str, str]:
        """librdkafka settings of an admin client on the client listener."""
        conf = {"bootstrap.servers": self.bootstrap}
        if self.admin_password:
            conf |= {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                     "sasl.username": "admin", "sasl.password": self.admin_password}
        return conf

    def _acl_properties(self) -> dict[str, str]:
        address = f"SASL_PLAINTEXT://127.0.0.1:{self.port}"
        admin = self.admin_password
        plain_admin = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                       f'username="admin" password="{admin}" user_admin="{admin}";')
        return {
            "listeners": f"{address},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": address,
            # every listener authenticates: the controller's too (it serves CreateAcls and
            # more to any client that reaches it), where the brokers log in as the admin
            # with PLAIN (KRaft's controllers cannot take SCRAM: its credentials live in
            # the metadata log they serve); the password is only in this 0600 file
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                              "CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain_admin,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain_admin,
            "authorizer.class.name":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # the admin only: no anonymous principal is trusted on any listener
            "super.users": "User:admin",
            "allow.everyone.if.no.acl.found": "false",
        }

    def server_properties(self) -> str:
        replication = str(self.replication)
        # with three copies a write is acknowledged once two have it: one node may die
        min_isr = str(max(1, self.replication - 1))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters
            or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        if self.admin_password:
            props |= self._acl_properties()
        if self.sasl_port:
            props |= _add_listener(props, "SASL_PLAINTEXT", self.sasl_port)
            props |= self._sasl_properties()
        if self.ssl_port:
            if self.ssl_keystore is None:
                raise BrokerError("an SSL listener needs a keystore (ssl_keystore)")
            props |= _add_listener(props, "SSL", self.ssl_port)
            ssl = "listener.name.ssl.ssl"
            props |= {f"{ssl}.keystore.type": "PKCS12",
                      f"{ssl}.keystore.location": str(self.ssl_keystore),
                      f"{ssl}.keystore.password": self.ssl_keystore_password,
                      f"{ssl}.client.auth": "none"}
            if self.ssl_truststore:
                props |= {f"{ssl}.client.auth": "required",
                          f"{ssl}.truststore.type": "PKCS12",
                          f"{ssl}.truststore.location": str(self.ssl_truststore),
                          f"{ssl}.truststore.password": self.ssl_keystore_password}
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _sasl_properties(self) -> dict[str, str]:
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users)
        return {
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                f"{plain_users};",
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        }

def _add_listener(props: dict[str, str], name: str, port: int) -> dict[str, str]:
    """A listener named as its security protocol, on loopback."""
    address = f"{name}://127.0.0.1:{port}"
    return {"listeners": f"{props['listeners']},{address}",
            "advertised.listeners": f"{props['advertised.listeners']},{address}",
            "listener.security.protocol.map":
                f"{props['listener.security.protocol.map']},{name}:{name}"}


def self_signed_keystore(directory: Path, password: str, name: str = "broker",
                         days: int = 2) -> tuple[Path, Path]:
    """A PKCS12 keystore with a new key and a certificate for 127.0.0.1 and localhost signed
    by itself, made with the JDK's keytool (Java being there for the broker), and that
    certificate in PEM for the other side to trust: (keystore, certificate)."""
    keystore, certificate = directory / f"{name}.p12", directory / f"{name}.pem"
    store = ["-alias", name, "-keystore", str(keystore), "-storetype", "PKCS12",
             "-storepass", password]
    _keytool(["-genkeypair", "-keyalg", "RSA", "-keysize", "2048", "-validity", str(days),
              "-dname", f"CN={name}", "-ext", "SAN=ip:127.0.0.1,dns:localhost", *store])
    _keytool(["-exportcert", "-rfc", "-file", str(certificate), *store])
    return keystore, certificate


def truststore(path: Path, password: str, certificates: list[Path]) -> Path:
    """A PKCS12 truststore holding these PEM certificates."""
    for i, certificate in enumerate(certificates):
        _keytool(["-importcert", "-noprompt", "-alias", f"trusted{i}", "-file", str(certificate),
                  "-keystore", str(path), "-storetype", "PKCS12", "-storepass", password])
    return path


def _keytool(args: list[str]) -> None:
    result = subprocess.run([_keytool_path(), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"keytool {args[0]} failed:\n{result.stdout}{result.stderr}")


def _keytool_path() -> str:
    found = shutil.which("keytool")
    java = shutil.which("java")
    if found is None and java is not None:  # a JDK whose bin/ is not on PATH, java linked in
        beside = Path(os.path.realpath(java)).with_name("keytool")
        found = str(beside) if beside.exists() else None
    if found is None:
        raise BrokerError("keytool (part of the JDK that runs the broker) was not found")
    return found


def _log4j_config(path: Path) -> Path:
    path.write_text(
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        "appender.stdout.type = Console\n"
        "appender.stdout.name = STDOUT\n"
        "appender.stdout.layout.type = PatternLayout\n"
        "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
        "logger.kafka.name = kafka.server.KafkaRaftServer\n"
        "logger.kafka.level = INFO\n"
    )
    return path


def _java(config: BrokerConfig, libs: Path, main: str, *args: str,
          agents: tuple[str, ...] = ()) -> list[str]:
    log4j = _log4j_config(config.data_dir / "log4j2.properties")
    return ["java", "-Xms256m", f"-Xmx{config.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", *agents,
            "-cp", f"{libs}/*", main, *args]


def _agents(config: BrokerConfig) -> tuple[str, ...]:
    if config.metrics_port is None:
        return ()
    if port_open(config.metrics_port):
        raise BrokerError(f"metrics port {config.metrics_port} is taken by another process")
    jar = fetch_jmx_exporter()
    return (f"-javaagent:{jar}=127.0.0.1:{config.metrics_port}:{JMX_EXPORTER_RULES}",)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _is_live_broker(pid: int, config: BrokerConfig) -> bool:
    """The pid is a running (not zombie) Kafka broker of this config: a pid file can outlive
    its broker, and its pid be reused by another process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)  # a broker this process started and that died: reap it
        return False
    return b"kafka.Kafka" in cmdline and str(config.properties_file).encode() in cmdline


def running_pid(config: BrokerConfig) -> int | None:
    """The pid of this config's running broker, or None (a stale pid file is removed)."""
    try:
        pid = int(config.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not _is_live_broker(pid, config):
        log.info("removing the stale pid file %s (pid %d is no running broker)",
                 config.pid_file, pid)
        config.pid_file.unlink(missing_ok=True)
        return None
    return pid


def _write_private(path: Path, text: str) -> None:
    """A file only its owner reads: broker properties may hold passwords."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def new_cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(config: BrokerConfig, libs: Path) -> None:
    if (config.log_dir / "meta.properties").exists():
        return
    config.log_dir.mkdir(parents=True, exist_ok=True)
    _write_private(config.properties_file, config.server_properties())
    cid = config.cluster_id or new_cluster_id()
    result = subprocess.run(
        _java(config, libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cid}",
              "-c", str(config.properties_file)),
        capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"formatting the KRaft storage failed:\n{result.stdout}{result.stderr}")


def start(config: BrokerConfig, timeout: float = 90.0) -> int:
    """Start the broker in the background (idempotent); returns its pid once it accepts clients."""
    pid = running_pid(config)
    if pid is not None:
        wait_ready(config, timeout)
        return pid
    proc = launch(config)
    try:
        wait_ready(config, timeout, proc)
        add_scram_users(config)
    except BrokerError:
        stop(config)
        raise
    return proc.pid


def add_scram_users(config: BrokerConfig, timeout: float = 30.0) -> None:
    """SCRAM credentials of the SASL listener's users, set through the Admin API on the
    PLAINTEXT listener: not on a command line, where any user's `ps` would show them."""
    if not config.sasl_users:
        return
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(config.admin_client_conf())
    # a request may alter each user once: one request per mechanism
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 8192),
                                                password.encode())
                   for user, password in config.sasl_users]
        for user, future in admin.alter_user_scram_credentials(
                upserts, request_timeout=timeout).items():
            try:
                future.result(timeout)
            except Exception as exc:
                raise BrokerError(f"could not set the SCRAM credentials of {user}: {exc}"
                                  ) from exc


def launch(config: BrokerConfig) -> subprocess.Popen:
    """Start the broker process and return at once: a node of a cluster serves only once a
    majority of the controllers is up, so every node is launched before any is waited for."""
    if port_open(config.port) or port_open(config.controller_port):
        raise BrokerError(f"port {config.port} or {config.controller_port} is taken by another "
                          "process; pass --port/--controller-port or --broker for that cluster")
    libs = fetch_jars()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    format_storage(config, libs)
    _write_private(config.properties_file, config.server_properties())
    with open(config.console_log, "ab") as out:
        proc = subprocess.Popen(
            _java(config, libs, "kafka.Kafka", str(config.properties_file),
                  agents=_agents(config)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    config.pid_file.write_text(str(proc.pid))
    return proc


def wait_ready(config: BrokerConfig, timeout: float, proc: subprocess.Popen | None = None) -> None:
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = None  # created once the port answers, or librdkafka logs every refused connect
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = config.console_log.read_text(errors="replace")[-3000:]
            raise BrokerError(f"the broker exited with code {proc.returncode}:\n{tail}")
        if port_open(config.port):
            admin = admin or AdminClient(config.admin_client_conf())
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception as exc:  # not ready yet: keep polling until the deadline
                log.debug("broker not ready: %s", exc)
        time.sleep(0.3)
    raise BrokerError(f"the broker did not accept clients on {config.bootstrap} "
                      f"within {timeout:.0f}s; see {config.console_log}")


def stop(config: BrokerConfig, timeout: float = 30.0) -> bool:
    """Stop the broker cleanly (SIGTERM, then SIGKILL); returns False if none was running."""
    pid = running_pid(config)
    if pid is None:
        config.pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        log.warning("broker pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    config.pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def cluster_nodes(data_dir: Path, nodes: int, port: int = 9092, heap: str = "1g",
                  ) -> list[BrokerConfig]:
    """A KRaft cluster of `nodes` combined broker-controllers on loopback: node i listens on
    port + 2(i-1) and its controller on the port after. Replication is 3 (or the node count
    if less), min.insync.replicas one less; the cluster id is made once and kept."""
    data_dir.mkdir(parents=True, exist_ok=True)
    id_file = data_dir / "cluster.id"
    if not id_file.exists():
        id_file.write_text(new_cluster_id())
    cluster_id = id_file.read_text().strip()
    ports = [(port + 2 * i, port + 2 * i + 1) for i in range(nodes)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    return [BrokerConfig(data_dir / f"node-{i + 1}", port=p, controller_port=c, heap=heap,
                         node_id=i + 1, quorum_voters=voters, cluster_id=cluster_id,
                         replication=min(3, nodes))
            for i, (p, c) in enumerate(ports)]


def bootstrap_list(configs: list[BrokerConfig]) -> str:
    return ",".join(c.bootstrap for c in configs)


def start_cluster(configs: list[BrokerConfig], timeout: float = 120.0) -> list[int]:
    """Start every node not running, then wait for all; returns their pids."""
    procs = {c.node_id: launch(c) for c in configs if running_pid(c) is None}
    try:
        for config in configs:
            wait_ready(config, timeout, procs.get(config.node_id))
    except BrokerError:
        for config in configs:
            stop(config)
        raise
    return [running_pid(c) or 0 for c in configs]


def stop_cluster(configs: list[BrokerConfig], timeout: float = 30.0) -> bool:
    """Stop every node at once (one by one, each would wait for the others to take over its
    partitions); returns False if none was running."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(configs) or 1) as pool:
        return any(pool.map(lambda c: stop(c, timeout), configs))
