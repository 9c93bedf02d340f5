"""The cluster's principals and ACLs (run by the kafka role once the brokers serve): each
service's SCRAM-SHA-512 credential, set unless it already logs in with its password, and
the instruments' ACLs that are missing. Its settings, passwords included, come on standard
input as JSON in base64 (never on a command line); prints {"changed": ...} as JSON."""

from __future__ import annotations

import base64
import json
import sys

from datastream.kafka_client import KafkaSettings
from datastream.topics import InstrumentTopics
from launcher.kafka_acls import ensure_acls, ensure_scram_users, instrument_acls


def main() -> int:
    given = json.loads(base64.b64decode(sys.stdin.read()))
    admin = KafkaSettings(given["bootstrap"], security_protocol="SASL_SSL",
                          sasl_mechanism="PLAIN", sasl_username=given["admin_user"],
                          sasl_password=given["admin_password"], ssl_cafile=given["cafile"])
    users = ensure_scram_users(admin, given["users"])
    acls = sum(ensure_acls(admin, instrument_acls(InstrumentTopics(name)))
               for name in given["instruments"])
    print(json.dumps({"changed": bool(users or acls), "users": users, "acls": acls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
