"""The cluster's principals and ACLs (run by the kafka role once the brokers serve): each
principal's SCRAM-SHA-512 credential, set unless it already logs in with its password (so a
new password in its file, rotate.yml's, is set too), the ACLs of each instrument's principals
on its own topics that are missing, and the removal of retired principals (their ACLs and
credentials). Its settings, passwords included, come on standard input as JSON in base64
(never on a command line); prints {"changed": ...} as JSON."""

from __future__ import annotations

import base64
import json
import sys

from datastream.kafka_client import KafkaSettings
from datastream.topics import InstrumentTopics
from launcher.kafka_acls import (
    Principals,
    ensure_acls,
    ensure_scram_users,
    instrument_acls,
    retire_principals,
)


def main() -> int:
    given = json.loads(base64.b64decode(sys.stdin.read()))
    admin = KafkaSettings(given["bootstrap"], security_protocol="SASL_SSL",
                          sasl_mechanism="PLAIN", sasl_username=given["admin_user"],
                          sasl_password=given["admin_password"], ssl_cafile=given["cafile"])
    users = ensure_scram_users(admin, given.get("users", {}))
    # instrument -> {service: principal}: each instrument's services log in as their own
    acls = sum(ensure_acls(admin, instrument_acls(InstrumentTopics(name), Principals(
        run_control=names["runcontrol"], filewriter=names["filewriter"],
        forwarder=names["forwarder"], liveview=names["liveview"])))
        for name, names in given.get("instruments", {}).items())
    retired = retire_principals(admin, given.get("retired", []))
    print(json.dumps({"changed": bool(users or acls or retired), "users": users, "acls": acls,
                      "retired": retired}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
