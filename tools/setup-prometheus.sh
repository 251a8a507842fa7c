#!/usr/bin/env bash
# Prometheus from Debian's packages for the tests in tests/telemetry: the
# tests run /usr/bin/prometheus themselves (127.0.0.1, a random port, their
# own storage directory) over data backfilled with /usr/bin/promtool. No
# system service is wanted: the package is installed without starting one
# (and without its recommended node exporter), and a prometheus service that
# is running or enabled anyway is stopped and disabled.
#
# Idempotent and quiet on success: with promtool present it only makes sure
# no system prometheus service runs. apt's output goes to a log whose tail is
# printed on failure. Needs root when something has to be installed or
# stopped.
#
#   bash tools/setup-prometheus.sh
#
# Environment: PROMETHEUS_APT_LOG (default /tmp/setup-prometheus-apt.log).
set -euo pipefail

LOG=${PROMETHEUS_APT_LOG:-/tmp/setup-prometheus-apt.log}

fail() {
    echo "setup-prometheus: $*" >&2
    exit 1
}

as_root() {
    [ "$(id -u)" = 0 ] || fail "$1 needs root (run as root, or: sudo bash $0)"
}

# The distribution's service, stopped and disabled, quietly, whatever the
# init system.
no_service() {
    local unit=prometheus.service init=/etc/init.d/prometheus
    if [ -d /run/systemd/system ] && command -v systemctl > /dev/null; then
        if systemctl is-active --quiet "$unit" 2> /dev/null \
                || systemctl is-enabled --quiet "$unit" 2> /dev/null; then
            as_root "stopping the prometheus service"
            systemctl disable --now "$unit" > /dev/null 2>&1 \
                || fail "cannot stop and disable $unit"
        fi
    elif [ -x "$init" ]; then
        if "$init" status > /dev/null 2>&1; then
            as_root "stopping the prometheus service"
            "$init" stop > /dev/null 2>&1 \
                || fail "cannot stop the prometheus service ($init stop)"
        fi
        if command -v update-rc.d > /dev/null \
                && ls /etc/rc[2-5].d/S*prometheus > /dev/null 2>&1; then
            as_root "disabling the prometheus service"
            update-rc.d prometheus disable > /dev/null 2>&1 || true
        fi
    fi
}

if [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; then
    no_service
    exit 0
fi

as_root "installing Prometheus (apt-get install prometheus)"
command -v apt-get > /dev/null \
    || fail "no apt-get: install /usr/bin/prometheus and /usr/bin/promtool"
echo "installing Prometheus from Debian's packages (log: $LOG) ..."
: > "$LOG"

# Services must not start during the installation: a policy-rc.d refusing
# every start, unless the machine already has one (then it decides, and
# no_service below stops whatever it let through).
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# %s: no service starts\nexit 101\n' \
        tools/setup-prometheus.sh > "$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if [ -n "$own_policy" ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        prometheus >> "$LOG" 2>&1
}

# apt-get update only when the package lists do not know prometheus (a fresh
# image) or are too old to fetch it.
candidate=$(apt-cache policy prometheus 2> /dev/null \
    | awk '/Candidate:/ {print $2}')
ok=
if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
    apt_install && ok=1
fi
if [ -z "$ok" ]; then
    if ! { apt-get update >> "$LOG" 2>&1 && apt_install; }; then
        tail -30 "$LOG" >&2
        fail "apt-get install prometheus failed"
    fi
fi
for tool in prometheus promtool; do
    [ -x "/usr/bin/$tool" ] \
        || fail "/usr/bin/$tool missing after installing prometheus"
done
no_service
