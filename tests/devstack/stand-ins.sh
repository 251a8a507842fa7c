# shellcheck shell=bash
# Stand-ins for the DevStack functions devstack/plugin.sh and
# devstack/settings call, written for the sandbox tests (not DevStack's
# code). They follow DevStack's documented behaviour where the plugin can
# notice it: iniset creates the file and section, adds a new option right
# after the section header, replaces an existing one in place, and passes
# the value through an unquoted echo (repeated spaces collapse, a glob
# expands); iniget echoes the value unquoted too.
#
# What a real DevStack would do to the machine is recorded in
# $SANDBOX_RECORD/calls.log instead (sudo, systemctl, setup_develop,
# pip_uninstall), and the packages setup_develop "installs" are marker files
# under $DEVSTACK_VENV/installed, which pip_uninstall removes.
#
# Expected from the environment: SANDBOX_RECORD (a directory outside the
# compared tree), DEVSTACK_VENV, ENABLED_SERVICES (DISABLED_SERVICES: what
# local.conf's disable_service lines left, which enable_service skips).

SYSTEMCTL=${SYSTEMCTL:-sudo systemctl}
GLOBAL_VENV=${GLOBAL_VENV:-True}

function _stand_in_record {
    printf '%s\n' "$*" >> "$SANDBOX_RECORD/calls.log"
}

function die {
    local line=$1
    shift
    echo "[ERROR] line $line: $*" >&2
    exit 1
}

function warn {
    local line=$1
    shift
    echo "[WARNING] line $line: $*" >&2
    _stand_in_record "warn $*"
}

function echo_summary {
    echo "$*"
}

function define_plugin {
    _stand_in_record "define_plugin $*"
}

function trueorfalse {
    local default=$1 value=${!2:-}
    case "$value" in
        1|[yY]es|YES|[tT]rue|TRUE) echo True ;;
        0|[nN]o|NO|[fF]alse|FALSE) echo False ;;
        *) echo "$default" ;;
    esac
}

# is_service_enabled SERVICE...: any of them in ENABLED_SERVICES, or an
# is_<service>_enabled function saying so.
function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ",$ENABLED_SERVICES," == *",$service,"* ]]; then
            return 0
        fi
        if declare -F "is_${service}_enabled" > /dev/null \
                && "is_${service}_enabled"; then
            return 0
        fi
    done
    return 1
}

function enable_service {
    local service
    for service in "$@"; do
        if [[ ",${DISABLED_SERVICES:-}," == *",$service,"* ]]; then
            continue
        fi
        if ! is_service_enabled "$service"; then
            ENABLED_SERVICES="${ENABLED_SERVICES:+$ENABLED_SERVICES,}$service"
        fi
    done
}

function get_python_exec_prefix {
    if [[ "$GLOBAL_VENV" == "True" ]]; then
        echo "$DEVSTACK_VENV/bin"
    else
        echo /usr/local/bin
    fi
}

# The package name pip would install from DIR (its setup.cfg).
function _stand_in_package_name {
    sed -ne 's/^name[[:space:]]*=[[:space:]]*//p' "$1/setup.cfg" | head -1
}

function setup_develop {
    local name
    [[ -f "$1/setup.cfg" ]] || die $LINENO "setup_develop: no project in $1"
    name=$(_stand_in_package_name "$1")
    _stand_in_record "setup_develop $1"
    mkdir -p "$DEVSTACK_VENV/installed"
    echo "$1" > "$DEVSTACK_VENV/installed/$name"
}

function pip_uninstall {
    _stand_in_record "pip_uninstall $1"
    rm -f "$DEVSTACK_VENV/installed/$1"
}

# sudo CMD...: recorded, then run as the caller (the sandbox is theirs).
function sudo {
    _stand_in_record "sudo $*"
    "$@"
}

# systemctl ARGS: recorded; units enabled and started are remembered in
# $SANDBOX_RECORD/units so tests can tell what is left running.
function systemctl {
    local verb=$1 units="$SANDBOX_RECORD/units" unit
    _stand_in_record "systemctl $*"
    shift
    touch "$units"
    for unit in "$@"; do
        case "$verb" in
            enable) echo "enabled $unit" >> "$units" ;;
            start) echo "active $unit" >> "$units" ;;
            disable) sed -i "/^enabled $unit\$/d" "$units" ;;
            stop) sed -i "/^active $unit\$/d" "$units" ;;
        esac
    done
}

function ini_has_option {
    local file=$1 section=$2 option=$3
    [[ -f "$file" ]] || return 1
    sed -ne "/^\[$section\]/,/^\[.*\]/ { /^${option}[ \t]*=/ p; }" "$file" \
        | grep -q .
}

function iniget {
    local file=$1 section=$2 option=$3 line
    line=$(sed -ne "/^\[$section\]/,/^\[.*\]/ { /^${option}[ \t]*=/ p; }" \
        "$file")
    # Unquoted on purpose: DevStack's iniget collapses whitespace.
    # shellcheck disable=SC2086
    echo ${line#*=}
}

function inidelete {
    local file=$1 section=$2 option=$3
    [[ -f "$file" ]] || return 0
    sed -i -e "/^\[$section\]/,/^\[.*\]/ { /^${option}[ \t]*=/ d; }" "$file"
}

function iniset {
    local file=$1 section=$2 option=$3 value
    # Unquoted on purpose: DevStack's iniset collapses whitespace and
    # expands globs in the value.
    # shellcheck disable=SC2086,SC2116
    value=$(echo $4)
    value=${value//\\/\\\\}
    value=${value//&/\\&}
    if ! grep -q "^\[$section\]" "$file" 2> /dev/null; then
        printf '\n[%s]\n' "$section" >> "$file"
    fi
    if ini_has_option "$file" "$section" "$option"; then
        sed -i -e "/^\[$section\]/,/^\[.*\]/ s|^\(${option}[ \t]*=[ \t]*\).*\$|\1${value//|/\\|}|" \
            "$file"
    else
        sed -i -e "/^\[$section\]/ a\\
$option = $value
" "$file"
    fi
}

# merge_post_config LOCAL_CONF: what stack.sh does with local.conf's
# [[post-config|$NOVA_CONF]] blocks after the plugins' post-config: every
# option line, in order, through iniset.
function merge_post_config {
    local line section="" in_block=0 option value
    while IFS= read -r line; do
        if [[ "$line" =~ ^\[\[(.*)\|(.*)\]\]$ ]]; then
            in_block=0
            if [[ "${BASH_REMATCH[1]}" == post-config \
                    && "${BASH_REMATCH[2]}" == "\$NOVA_CONF" ]]; then
                in_block=1
            fi
            continue
        fi
        [[ "$in_block" == 1 ]] || continue
        if [[ "$line" =~ ^\[(.*)\]$ ]]; then
            section=${BASH_REMATCH[1]}
        elif [[ "$line" =~ ^([^#[:space:]][^=]*)=(.*)$ ]]; then
            option=${BASH_REMATCH[1]%"${BASH_REMATCH[1]##*[![:space:]]}"}
            value=${BASH_REMATCH[2]#"${BASH_REMATCH[2]%%[![:space:]]*}"}
            iniset "$NOVA_CONF" "$section" "$option" "$value"
        fi
    done < "$1"
}
