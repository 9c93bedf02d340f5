#!/usr/bin/env bash
# Installs everything the project needs, idempotently: a virtual environment in .venv/ with the
# datastream package (editable) and its test tools, and the Kafka broker's jars from Maven
# Central. Needs python3 (3.11), Java 17+ and Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")"

command -v python3 >/dev/null || { echo "install.sh: python3 is required" >&2; exit 1; }
command -v java >/dev/null || { echo "install.sh: Java 17+ is required for the Kafka broker" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install.sh: Maven (mvn) is required to fetch Kafka" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/datastream broker fetch
