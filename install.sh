#!/usr/bin/env bash
# Installs everything the project needs, idempotently: the Debian packages the tests and
# operations use (prometheus and promtool, ansible and ansible-lint, procServ, chromium and
# chromedriver for the live page's browser test, systemd's systemd-analyze for the deployed
# units' sandbox), a virtual environment in .venv/ with the datastream package (editable) and
# its test tools, and the Kafka broker's jars and the Prometheus JMX exporter from Maven
# Central. Needs python3 (3.11), Java 17+ and Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")"

command -v python3 >/dev/null || { echo "install.sh: python3 is required" >&2; exit 1; }
command -v java >/dev/null || { echo "install.sh: Java 17+ is required for the Kafka broker" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install.sh: Maven (mvn) is required to fetch Kafka" >&2; exit 1; }

# Debian packages, by the command each provides
declare -A PACKAGES=([prometheus]=prometheus [promtool]=prometheus
                     [ansible-playbook]=ansible [ansible-lint]=ansible-lint [procServ]=procserv
                     [chromium]=chromium [chromedriver]=chromium-driver
                     [systemd-analyze]=systemd)
missing=()
for tool in "${!PACKAGES[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${PACKAGES[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # the packages' own services (a system Prometheus on :9090) are not started: the
        # project runs what it needs itself, on loopback
        policy=/usr/sbin/policy-rc.d
        own_policy=no
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=yes
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
        [ "$own_policy" = yes ] && rm -f "$policy"
    else
        echo "install.sh: not root; install the system packages with:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/datastream broker fetch
