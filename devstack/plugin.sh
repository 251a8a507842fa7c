# shellcheck shell=bash
# plugin.sh - nova-rl-weigher's DevStack plugin, sourced by DevStack as
# ``plugin.sh <mode> [phase]`` (doc/source/plugins.rst in openstack/devstack)
# after devstack/settings:
#
#   stack install      setup_develop the weigher (and the trainer when
#                      RL_WEIGHER_INSTALL_TRAINER=True) where nova-scheduler
#                      runs from
#   stack post-config  RLWeigher after Nova's weighers in
#                      [filter_scheduler] weight_classes, [rl_weigher]
#                      options from the RL_WEIGHER_* settings
#   stack extra        the usage-snapshot timer, with Ceilometer and Gnocchi
#   unstack            stop and disable the timer
#   clean              remove what the stack phases added: unit files,
#                      nova.conf entries, $RL_WEIGHER_DATA_DIR, the packages
#
# Every phase runs under ``set -eu -o pipefail`` and is idempotent. stack.sh
# merges local.conf's [[post-config|$NOVA_CONF]] after this plugin's
# post-config, so a user's settings there win.

RL_WEIGHER_CLASS=nova_rl_weigher.weigher.RLWeigher
RL_WEIGHER_SNAPSHOT_UNITS=(nova-rl-snapshot.service nova-rl-snapshot.timer)
# What post-config changed in $NOVA_CONF, so that clean can undo exactly that.
RL_WEIGHER_STATE=$RL_WEIGHER_DATA_DIR/plugin-state
RL_WEIGHER_SNAPSHOT_ENV=$RL_WEIGHER_DATA_DIR/rl-snapshot.env


# Helpers
# -------

# rl_weigher_systemctl ARGS: DevStack's $SYSTEMCTL ("sudo systemctl", or
# "systemctl --user" with USER_UNITS=True), split into words on purpose.
function rl_weigher_systemctl {
    # shellcheck disable=SC2086
    $SYSTEMCTL "$@"
}

# rl_weigher_list_has LIST ITEM: whether comma-separated LIST holds ITEM
# (elements compared without surrounding spaces).
function rl_weigher_list_has {
    local item items
    IFS=, read -ra items <<< "$1"
    for item in "${items[@]}"; do
        item=${item// /}
        if [[ "$item" == "$2" ]]; then
            return 0
        fi
    done
    return 1
}

# rl_weigher_list_without LIST ITEM: LIST without ITEM, others untouched.
function rl_weigher_list_without {
    local item items kept=()
    IFS=, read -ra items <<< "$1"
    for item in "${items[@]}"; do
        if [[ "${item// /}" != "$2" ]]; then
            kept+=("$item")
        fi
    done
    local IFS=,
    echo "${kept[*]}"
}

# rl_weigher_has_section FILE SECTION
function rl_weigher_has_section {
    grep -q "^\[$2\]" "$1"
}

# rl_weigher_state_get KEY: the value post-config recorded for KEY; fails
# when it recorded none.
function rl_weigher_state_get {
    [[ -f "$RL_WEIGHER_STATE" ]] || return 1
    grep -q "^$1=" "$RL_WEIGHER_STATE" || return 1
    sed -ne "s/^$1=//p" "$RL_WEIGHER_STATE"
}

# rl_weigher_state_set KEY VALUE (atomically: a new file renamed over).
function rl_weigher_state_set {
    local tmp
    mkdir -p "$RL_WEIGHER_DATA_DIR"
    tmp=$(mktemp "$RL_WEIGHER_STATE.XXXXXX")
    if [[ -f "$RL_WEIGHER_STATE" ]]; then
        grep -v "^$1=" "$RL_WEIGHER_STATE" > "$tmp" || true
    fi
    printf '%s=%s\n' "$1" "$2" >> "$tmp"
    mv -f "$tmp" "$RL_WEIGHER_STATE"
}

# rl_weigher_drop_empty_section FILE SECTION: remove SECTION's header, and
# the blank line iniset wrote before it, when the section holds no line at
# all (clean emptied a section post-config created). The file keeps its
# mode and is replaced atomically.
function rl_weigher_drop_empty_section {
    local file=$1 section=$2 tmp
    [[ -f "$file" ]] || return 0
    rl_weigher_has_section "$file" "$section" || return 0
    if sed -ne "/^\[$section\]/,/^\[.*\]/ { /^\[/d; /^[[:space:]]*$/d; p; }" \
            "$file" | grep -q .; then
        return 0
    fi
    tmp=$(mktemp "$file.XXXXXX")
    awk -v header="[$section]" '
        held && $0 == header { held = 0; next }
        held { print blank; held = 0 }
        $0 == header { next }
        /^[ \t]*$/ { held = 1; blank = $0; next }
        { print }
        END { if (held) print blank }
    ' "$file" > "$tmp"
    chmod --reference="$file" "$tmp"
    mv -f "$tmp" "$file"
}

# rl_weigher_check_settings: one clear error for a bad RL_WEIGHER_* value,
# before nova.conf is touched.
function rl_weigher_check_settings {
    case "$RL_WEIGHER_MODE" in
        off|shadow|gated) ;;
        *) die $LINENO "RL_WEIGHER_MODE=$RL_WEIGHER_MODE: must be off, shadow or gated" ;;
    esac
    local name
    for name in RL_WEIGHER_CONFIDENCE_THRESHOLD RL_WEIGHER_CANARY_PERCENT \
            RL_WEIGHER_WEIGHT_MULTIPLIER; do
        if [[ -n "${!name}" && ! "${!name}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
            die $LINENO "$name=${!name}: must be a non-negative number"
        fi
    done
    if [[ ! -f "$NOVA_CONF" ]]; then
        die $LINENO "$NOVA_CONF not found: post-config needs Nova configured"
    fi
}

# rl_weigher_telemetry_enabled: Ceilometer's agents and Gnocchi, as
# Ceilometer's own DevStack plugin enables them.
function rl_weigher_telemetry_enabled {
    is_service_enabled ceilometer-acompute ceilometer-acentral \
        ceilometer-anotification && is_service_enabled gnocchi-api
}

# rl_weigher_snapshot_timer_wanted: the timer runs nova-rl-trainer, so it
# also needs the trainer.
function rl_weigher_snapshot_timer_wanted {
    [[ "$RL_WEIGHER_SNAPSHOT_TIMER" == "True" ]] \
        && [[ "$RL_WEIGHER_INSTALL_TRAINER" == "True" ]] \
        && rl_weigher_telemetry_enabled
}


# stack install
# -------------

function install_rl_weigher {
    setup_develop "$RL_WEIGHER_DIR"
    if [[ "$RL_WEIGHER_INSTALL_TRAINER" == "True" ]]; then
        setup_develop "$RL_WEIGHER_DIR/trainer"
    fi
}


# stack post-config
# -----------------

# configure_rl_weigher_weight_classes: append RLWeigher to whatever
# weight_classes holds (Nova's weighers when nothing does), never twice.
function configure_rl_weigher_weight_classes {
    local current
    current=$(iniget "$NOVA_CONF" filter_scheduler weight_classes)
    if rl_weigher_list_has "$current" "$RL_WEIGHER_CLASS"; then
        return 0
    fi
    # Recorded afresh each time RLWeigher is added: stack.sh writes a new
    # nova.conf on every run.
    if rl_weigher_has_section "$NOVA_CONF" filter_scheduler; then
        rl_weigher_state_set filter_scheduler_created 0
    else
        rl_weigher_state_set filter_scheduler_created 1
    fi
    if ini_has_option "$NOVA_CONF" filter_scheduler weight_classes; then
        rl_weigher_state_set weight_classes_absent 0
    else
        rl_weigher_state_set weight_classes_absent 1
    fi
    rl_weigher_state_set weight_classes_before "$current"
    if [[ -z "$current" ]]; then
        current=$RL_WEIGHER_NOVA_WEIGHERS
    fi
    iniset "$NOVA_CONF" filter_scheduler weight_classes \
        "$current,$RL_WEIGHER_CLASS"
    rl_weigher_state_set weight_classes_after \
        "$(iniget "$NOVA_CONF" filter_scheduler weight_classes)"
}

# rl_weigher_set_or_delete OPTION VALUE: [rl_weigher] OPTION = VALUE, or no
# OPTION (the weigher's default) when VALUE is empty.
function rl_weigher_set_or_delete {
    if [[ -n "$2" ]]; then
        iniset "$NOVA_CONF" rl_weigher "$1" "$2"
    else
        inidelete "$NOVA_CONF" rl_weigher "$1"
    fi
}

function configure_rl_weigher {
    rl_weigher_check_settings
    configure_rl_weigher_weight_classes
    if ! rl_weigher_has_section "$NOVA_CONF" rl_weigher; then
        rl_weigher_state_set rl_weigher_created 1
    fi
    iniset "$NOVA_CONF" rl_weigher mode "$RL_WEIGHER_MODE"
    iniset "$NOVA_CONF" rl_weigher policy_path "$RL_WEIGHER_POLICY_PATH"
    rl_weigher_set_or_delete decision_log_dir "$RL_WEIGHER_DECISION_LOG_DIR"
    rl_weigher_set_or_delete confidence_threshold \
        "$RL_WEIGHER_CONFIDENCE_THRESHOLD"
    rl_weigher_set_or_delete canary_percent "$RL_WEIGHER_CANARY_PERCENT"
    rl_weigher_set_or_delete weight_multiplier "$RL_WEIGHER_WEIGHT_MULTIPLIER"
    if rl_weigher_snapshot_timer_wanted; then
        rl_weigher_set_or_delete usage_snapshot_path \
            "$RL_WEIGHER_USAGE_SNAPSHOT"
    else
        rl_weigher_set_or_delete usage_snapshot_path ""
    fi
    if [[ -n "$RL_WEIGHER_DECISION_LOG_DIR" ]]; then
        mkdir -p "$RL_WEIGHER_DECISION_LOG_DIR"
    fi
}


# stack extra
# -----------

# rl_weigher_render_unit NAME: etc/systemd/NAME with DevStack's user, paths
# and environment file instead of the packaged ones; the packaged header
# (manual installation steps) is left out.
function rl_weigher_render_unit {
    local template=$RL_WEIGHER_DIR/etc/systemd/$1 line body=0 group
    [[ -f "$template" ]] || die $LINENO "$template not found"
    group=$(id -gn "$STACK_USER")
    echo "# $1, rendered by nova-rl-weigher's DevStack plugin from"
    echo "# etc/systemd/$1 (clean.sh removes it)."
    while IFS= read -r line; do
        if [[ "$line" == \[* ]]; then
            body=1
        fi
        if (( body == 0 )); then
            continue
        fi
        case "$line" in
            User=nova) line="User=$STACK_USER" ;;
            Group=nova) line="Group=$group" ;;
            EnvironmentFile=/etc/nova/rl-snapshot.env)
                line="EnvironmentFile=$RL_WEIGHER_SNAPSHOT_ENV" ;;
            ReadWritePaths=/var/lib/nova)
                line="ReadWritePaths=$(dirname "$RL_WEIGHER_USAGE_SNAPSHOT")" ;;
            ExecStart=*)
                line=${line/--out \/var\/lib\/nova\/rl-usage.json/--out $RL_WEIGHER_USAGE_SNAPSHOT} ;;
        esac
        if [[ "$line" == *"/etc/nova/"* || "$line" == *"/var/lib/nova"* \
                || "$line" == *=nova ]]; then
            die $LINENO "etc/systemd/$1 changed: cannot render '$line' for DevStack"
        fi
        echo "$line"
    done < "$template"
}

# rl_weigher_install_unit NAME: rendered into $SYSTEMD_DIR, atomically.
function rl_weigher_install_unit {
    local dest=$SYSTEMD_DIR/$1 unit
    # Rendered in full first: a template it cannot render leaves no file.
    unit=$(rl_weigher_render_unit "$1")
    printf '%s\n' "$unit" | sudo tee "$dest.rl-new" > /dev/null
    sudo chmod 0644 "$dest.rl-new"
    sudo mv -f "$dest.rl-new" "$dest"
}

function install_rl_weigher_snapshot_timer {
    local unit
    mkdir -p "$RL_WEIGHER_DATA_DIR" "$(dirname "$RL_WEIGHER_USAGE_SNAPSHOT")"
    # The service's credentials: a clouds.yaml cloud, no password here.
    (
        umask 027
        printf '%s\n' \
            "# nova-rl-snapshot.service's environment (DevStack plugin)" \
            "PATH=$(get_python_exec_prefix):/usr/local/bin:/usr/bin:/bin" \
            "OS_CLOUD=$RL_WEIGHER_SNAPSHOT_CLOUD" \
            > "$RL_WEIGHER_SNAPSHOT_ENV.new"
    )
    mv -f "$RL_WEIGHER_SNAPSHOT_ENV.new" "$RL_WEIGHER_SNAPSHOT_ENV"
    sudo mkdir -p "$SYSTEMD_DIR"
    for unit in "${RL_WEIGHER_SNAPSHOT_UNITS[@]}"; do
        rl_weigher_install_unit "$unit"
    done
    rl_weigher_systemctl daemon-reload
    rl_weigher_systemctl enable nova-rl-snapshot.timer
    rl_weigher_systemctl start nova-rl-snapshot.timer
}

function init_rl_weigher {
    if rl_weigher_snapshot_timer_wanted; then
        install_rl_weigher_snapshot_timer
    elif [[ "$RL_WEIGHER_SNAPSHOT_TIMER" == "True" ]] \
            && rl_weigher_telemetry_enabled; then
        warn $LINENO "nova-rl-weigher: usage-snapshot timer not installed: it runs nova-rl-trainer, set RL_WEIGHER_INSTALL_TRAINER=True"
    fi
}


# unstack, clean
# --------------

function stop_rl_weigher {
    if [[ -f "$SYSTEMD_DIR/nova-rl-snapshot.timer" ]]; then
        rl_weigher_systemctl stop "${RL_WEIGHER_SNAPSHOT_UNITS[@]}"
        rl_weigher_systemctl disable nova-rl-snapshot.timer
    fi
}

# cleanup_rl_weigher_nova_conf: undo post-config. weight_classes gets its
# earlier value back when nothing changed it since; otherwise only RLWeigher
# leaves the list.
function cleanup_rl_weigher_nova_conf {
    local current rest option
    [[ -f "$NOVA_CONF" ]] || return 0
    current=$(iniget "$NOVA_CONF" filter_scheduler weight_classes)
    if rl_weigher_state_get weight_classes_after > /dev/null \
            && [[ "$current" == "$(rl_weigher_state_get weight_classes_after)" ]]; then
        if [[ "$(rl_weigher_state_get weight_classes_absent)" == 1 ]]; then
            inidelete "$NOVA_CONF" filter_scheduler weight_classes
        else
            iniset "$NOVA_CONF" filter_scheduler weight_classes \
                "$(rl_weigher_state_get weight_classes_before)"
        fi
    elif rl_weigher_list_has "$current" "$RL_WEIGHER_CLASS"; then
        rest=$(rl_weigher_list_without "$current" "$RL_WEIGHER_CLASS")
        if [[ -n "${rest// /}" ]]; then
            iniset "$NOVA_CONF" filter_scheduler weight_classes "$rest"
        else
            inidelete "$NOVA_CONF" filter_scheduler weight_classes
        fi
    fi
    for option in mode policy_path decision_log_dir confidence_threshold \
            canary_percent weight_multiplier usage_snapshot_path; do
        inidelete "$NOVA_CONF" rl_weigher "$option"
    done
    if [[ "$(rl_weigher_state_get filter_scheduler_created || true)" == 1 ]]; then
        rl_weigher_drop_empty_section "$NOVA_CONF" filter_scheduler
    fi
    if [[ "$(rl_weigher_state_get rl_weigher_created || true)" == 1 ]]; then
        rl_weigher_drop_empty_section "$NOVA_CONF" rl_weigher
    fi
}

function cleanup_rl_weigher {
    local unit removed=0
    stop_rl_weigher
    for unit in "${RL_WEIGHER_SNAPSHOT_UNITS[@]}"; do
        if [[ -e "$SYSTEMD_DIR/$unit" ]]; then
            sudo rm -f "$SYSTEMD_DIR/$unit"
            removed=1
        fi
    done
    if (( removed )); then
        rl_weigher_systemctl daemon-reload
    fi
    cleanup_rl_weigher_nova_conf
    # A decision log directory the user put elsewhere may hold more than
    # the weigher's files: only the weigher's are removed there.
    if [[ -n "$RL_WEIGHER_DECISION_LOG_DIR" && -d "$RL_WEIGHER_DECISION_LOG_DIR" \
            && "$RL_WEIGHER_DECISION_LOG_DIR" != "$RL_WEIGHER_DATA_DIR"/* ]]; then
        find "$RL_WEIGHER_DECISION_LOG_DIR" -maxdepth 1 -type f \
            -name 'decisions-*.jsonl*' -delete
        rmdir "$RL_WEIGHER_DECISION_LOG_DIR" 2> /dev/null || true
    fi
    rm -f "$RL_WEIGHER_USAGE_SNAPSHOT"
    rm -rf "$RL_WEIGHER_DATA_DIR"
    if [[ "$RL_WEIGHER_INSTALL_TRAINER" == "True" ]]; then
        pip_uninstall nova-rl-trainer
    fi
    pip_uninstall nova-rl-weigher
}


# Dispatch
# --------

if is_service_enabled rl-weigher; then
    if [[ "$1" == "stack" ]] && ! is_service_enabled n-sch; then
        echo_summary "nova-rl-weigher: n-sch is not enabled here, nothing to do"
    elif [[ "$1" == "stack" && "${2:-}" == "install" ]]; then
        echo_summary "Installing nova-rl-weigher"
        install_rl_weigher
    elif [[ "$1" == "stack" && "${2:-}" == "post-config" ]]; then
        echo_summary "Configuring nova-rl-weigher in $NOVA_CONF"
        configure_rl_weigher
    elif [[ "$1" == "stack" && "${2:-}" == "extra" ]]; then
        echo_summary "nova-rl-weigher: $RL_WEIGHER_CLASS in mode $RL_WEIGHER_MODE, decisions in ${RL_WEIGHER_DECISION_LOG_DIR:-(no log)}"
        init_rl_weigher
    elif [[ "$1" == "unstack" ]]; then
        stop_rl_weigher
    elif [[ "$1" == "clean" ]]; then
        cleanup_rl_weigher
    fi
fi
