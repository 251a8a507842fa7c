#!/usr/bin/env bash
# The telemetry servers the tests in tests/telemetry start: Gnocchi 4.7.1
# (API under uWSGI, gnocchi-metricd) and Ceilometer 27's Gnocchi publisher,
# in their own virtualenv, .venv-telemetry (they do not resolve together with
# nova 34 in .venv), plus PostgreSQL from the machine's Debian packages.
#
# Idempotent and quiet on success: a second run with nothing changed takes
# under a second. pip's output goes to .venv-telemetry/pip.log, apt's to
# .venv-telemetry/apt.log; on failure their tail is printed.
#
#   bash tools/setup-telemetry-venv.sh
#
# Environment: PYTHON (default python3.11, else python3), TELEMETRY_VENV
# (default .venv-telemetry in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${TELEMETRY_VENV:-.venv-telemetry}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# What the tests run, pinned: the servers and Ceilometer's publisher.
# psycopg2-binary and the SQL packages stand for gnocchi[postgresql]
# (whose psycopg2 would need libpq's headers to build).
REQUIREMENTS="
gnocchi==4.7.1
ceilometer==27.0.0
uWSGI==2.0.31
psycopg2-binary==2.9.13
oslo.db==18.1.1
SQLAlchemy==2.1.9
SQLAlchemy-Utils==0.43.0
alembic==1.20.1
gnocchiclient==7.2.0
keystoneauth1==5.18.1
"
# Everything else they pull in, as resolved on 2026-12-01 (pip freeze), so
# that a fresh machine gets the same set.
CONSTRAINTS="
amqp==5.4.2
aodhclient==3.12.0
attrs==26.1.0
autopage==0.6.0
awscrt==0.38.1
awscurl==0.44
bcrypt==5.0.0
boto3==1.44.8
botocore==1.44.8
cachetools==8.0.2
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
cliff==4.17.0
cmd2==4.3.1
ConfigArgParse==1.9.0
configparser==7.3.0
cotyledon==2.2.0
cryptography==50.0.2
daiquiri==3.4.0
debtcollector==3.1.0
decorator==5.3.1
dnspython==2.9.2
dogpile.cache==1.5.0
eventlet==0.41.3
fasteners==0.20
futurist==3.5.0
greenlet==3.5.6
idna==3.20
iso8601==2.1.0
Jinja2==3.1.6
jmespath==1.1.0
jsonpatch==1.48
jsonpath-rw==1.4.0
jsonpath-rw-ext==1.2.2
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
kombu==5.7.0
lxml==6.1.3
lz4==4.4.5
Mako==1.4.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
msgpack==1.2.4
netaddr==1.3.0
numpy==2.4.6
openstacksdk==4.22.0
os-service-types==1.9.0
osc-lib==4.7.0
oslo.cache==4.3.0
oslo.concurrency==7.6.1
oslo.config==10.7.0
oslo.context==6.5.0
oslo.i18n==6.9.0
oslo.log==8.3.2
oslo.messaging==18.3.1
oslo.metrics==0.17.0
oslo.middleware==8.2.0
oslo.policy==6.0.1
oslo.privsep==3.12.0
oslo.reports==3.9.0
oslo.rootwrap==7.10.0
oslo.serialization==5.11.0
oslo.service==4.8.0
oslo.upgradecheck==2.8.0
oslo.utils==10.2.0
osprofiler==4.4.0
packaging==26.4
Paste==3.10.1
PasteDeploy==3.1.0
pbr==7.1.3
pecan==1.8.0
platformdirs==4.14.9
ply==3.11
prettytable==3.18.0
prometheus_client==0.26.0
prompt_toolkit==3.0.53
psutil==7.2.2
pycparser==3.12
Pygments==2.21.0
pyparsing==3.3.3
pyperclip==1.11.0
python-dateutil==2.9.0.post0
python-json-logger==4.2.0
python-novaclient==18.13.1
python-swiftclient==4.11.0
python-zaqarclient==4.7.0
pytimeparse==1.1.10
PyYAML==6.0.4
referencing==0.37.0
repoze-lru==0.8
requests==2.34.2
rfc3986==2.0.0
rich==15.0.0
rich-argparse==1.8.0
Routes==2.5.1
rpds-py==2026.9.1
s3transfer==0.19.3
setproctitle==1.3.8
six==1.17.0
statsd==4.0.1
stevedore==5.10.0
tenacity==9.2.1
testresources==2.1.2
testscenarios==0.7.0
tooz==9.1.0
typing_extensions==4.16.0
ujson==6.1.0
urllib3==2.8.0
vine==5.1.0
voluptuous==0.16.0
wcwidth==0.9.4
WebOb==1.8.11
Werkzeug==3.1.9
wrapt==2.5.2
xmltodict==1.0.4
yappi==1.7.6
"

fail() {
    echo "setup-telemetry-venv: $*" >&2
    exit 1
}

# PostgreSQL from Debian's packages: the tests run initdb/pg_ctl from
# /usr/lib/postgresql/*/bin as the postgres user.
mkdir -p "$VENV"
if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "PostgreSQL is not installed and this is not root: apt-get install postgresql"
    echo "installing PostgreSQL from Debian's packages (log: $VENV/apt.log) ..."
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends postgresql; } \
            > "$VENV/apt.log" 2>&1; then
        tail -30 "$VENV/apt.log" >&2
        fail "apt-get install postgresql failed"
    fi
fi

# The stamp holds what was installed: the same lists and interpreter mean
# nothing to do.
want=$(printf '%s\n%s\n%s\n' \
    "$("$PYTHON" -c 'import sys; print(sys.version)')" \
    "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)
stamp="$VENV/.installed"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && [ -x "$VENV/bin/uwsgi" ] && [ -x "$VENV/bin/gnocchi-metricd" ]; then
    exit 0
fi

echo "installing Gnocchi and Ceilometer into $VENV (log: $VENV/pip.log) ..."
rm -f "$stamp"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || fail "cannot create $VENV with $PYTHON"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$REQUIREMENTS" > "$tmp/requirements.txt"
printf '%s\n' "$CONSTRAINTS" > "$tmp/constraints.txt"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check \
        -r "$tmp/requirements.txt" -c "$tmp/constraints.txt" \
        > "$VENV/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$VENV/pip.log" | tail -40 >&2
    fail "pip install failed"
fi
for tool in uwsgi gnocchi-upgrade gnocchi-metricd ceilometer-upgrade; do
    [ -x "$VENV/bin/$tool" ] || fail "$VENV/bin/$tool missing after install"
done
echo "$want" > "$stamp"
