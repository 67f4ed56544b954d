#!/bin/sh
# tunnel-agent.sh: starts localproxy-rs as the destination of an AWS IoT secure tunnel when
# the service announces one, with no C++ Device Client on the box.
#
# It loops forever: `mosquitto_sub -C 1` (mutual TLS with the device's certificate, key and
# CA) waits for one message on $aws/things/THING/tunnels/notify; the document is written to
# a file readable only by the proxy's user (umask 077, RUN_DIR on a tmpfs by default);
# `localproxy --notification FILE --check` vets it (a bad document is one log line and a
# working tunnel stays up); then the proxy of an older notification is stopped (one tunnel
# at a time per device) and `localproxy --notification FILE -d SERVICES` starts, as
# PROXY_USER when set. The token never appears on a command line or in a log line. Broker
# errors restart the subscription with a backoff (1 s doubling to BACKOFF_MAX); messages
# sent meanwhile wait in the broker (persistent session, QoS 1). Log lines go to syslog
# through `logger` when it exists (tags tunnel-agent and localproxy), else to stderr.
#
# Usage: tunnel-agent.sh [CONFIG]    (default /etc/tunnel-agent.conf, a sh fragment of
# NAME=value lines, see cross/agent/tunnel-agent.conf). POSIX sh; BusyBox ash is enough.
# Start it from inittab: ::respawn:/usr/sbin/tunnel-agent /etc/tunnel-agent.conf
# SIGTERM stops the subscription and leaves a running tunnel alone (it ends with its
# tunnel; the next agent replaces it on the next notification).

set -u
set -f # PROXY_ARGS and MQTT_ARGS are split on spaces, never globbed

CONF=${1:-/etc/tunnel-agent.conf}
case $CONF in */*) ;; *) CONF=./$CONF ;; esac

# Defaults; the config file overrides them.
THING_NAME=
MQTT_HOST=
MQTT_PORT=8883
MQTT_CLIENT_ID=
MQTT_ARGS=
CA_FILE=/etc/tunnel-agent/AmazonRootCA1.pem
CERT_FILE=/etc/tunnel-agent/device.pem.crt
KEY_FILE=/etc/tunnel-agent/private.pem.key
SERVICES=SSH=22
LOCALPROXY=/usr/bin/localproxy
PROXY_USER=
PROXY_ARGS=
CLIENT_TOKEN=auto
RUN_DIR=/var/run/tunnel-agent
LOG=auto
BACKOFF_MAX=60
STOP_TIMEOUT=10

exec 4>&2 # the agent's own stderr, for log lines from inside redirected groups

log() {
    if [ "$LOG" = syslog ]; then
        logger -t tunnel-agent -p daemon.notice "$*" 2>/dev/null || echo "tunnel-agent: $*" >&4
    else
        echo "tunnel-agent: $*" >&4
    fi
}
# A configuration error: one line, then a pause so a respawn from inittab does not spin.
die() {
    log "$*; stopping"
    sleep 30
    exit 2
}

[ -r "$CONF" ] || die "cannot read the config file $CONF"
# shellcheck disable=SC1090
. "$CONF"

if [ "$LOG" = auto ]; then
    # logger without a syslog daemon (/dev/log) would swallow every line.
    if command -v logger >/dev/null 2>&1 && [ -S /dev/log ]; then LOG=syslog; else LOG=stderr; fi
fi
[ -n "$THING_NAME" ] || die "THING_NAME is not set in $CONF"
[ -n "$MQTT_HOST" ] || die "MQTT_HOST is not set in $CONF (aws iot describe-endpoint --endpoint-type iot:Data-ATS)"
[ -n "$MQTT_CLIENT_ID" ] || MQTT_CLIENT_ID=$THING_NAME
for f in "$CA_FILE" "$CERT_FILE" "$KEY_FILE"; do
    [ -r "$f" ] || die "cannot read $f (CA_FILE, CERT_FILE, KEY_FILE in $CONF)"
done
[ -x "$LOCALPROXY" ] || die "LOCALPROXY=$LOCALPROXY is not an executable"
command -v mosquitto_sub >/dev/null 2>&1 ||
    die "mosquitto_sub not found; install mosquitto-clients (OpenWrt: mosquitto-client-ssl)"
case $BACKOFF_MAX in '' | *[!0-9]*) die "BACKOFF_MAX=$BACKOFF_MAX is not a number of seconds" ;; esac
case $STOP_TIMEOUT in '' | *[!0-9]*) die "STOP_TIMEOUT=$STOP_TIMEOUT is not a number of seconds" ;; esac
[ "$BACKOFF_MAX" -ge 1 ] || BACKOFF_MAX=1

# How the proxy is started as PROXY_USER: util-linux setpriv, else start-stop-daemon
# (BusyBox and Debian both have one). Both exec, so the pid stays the proxy's.
RUN_AS=
if [ -n "$PROXY_USER" ]; then
    id "$PROXY_USER" >/dev/null 2>&1 || die "PROXY_USER=$PROXY_USER is not a user"
    if setpriv --help 2>&1 | grep -q -- --reuid; then
        RUN_AS=setpriv
    elif command -v start-stop-daemon >/dev/null 2>&1; then
        RUN_AS=start-stop-daemon
    else
        die "PROXY_USER needs setpriv (util-linux) or start-stop-daemon"
    fi
fi

TOPIC="\$aws/things/$THING_NAME/tunnels/notify"
umask 077
mkdir -p "$RUN_DIR" || die "cannot create RUN_DIR=$RUN_DIR"
chmod 700 "$RUN_DIR"
if [ -n "$PROXY_USER" ]; then
    chown "$PROXY_USER" "$RUN_DIR" || die "cannot give $RUN_DIR to $PROXY_USER"
fi

# The proxy reads its token from the notification, never from the agent's environment.
unset AWSIOT_TUNNEL_ACCESS_TOKEN AWSIOT_TUNNEL_CLIENT_TOKEN
if [ "$LOG" = syslog ]; then
    LOCALPROXY_LOG_TIMESTAMPS=0 # syslog stamps lines itself
    export LOCALPROXY_LOG_TIMESTAMPS
fi

cmdline() { tr '\000' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# One agent per RUN_DIR: two would fight over the MQTT client id.
if [ -s "$RUN_DIR/agent.pid" ]; then
    other=$(cat "$RUN_DIR/agent.pid")
    if [ "$other" != $$ ] && kill -0 "$other" 2>/dev/null &&
        cmdline "$other" | grep -q tunnel-agent; then
        die "another tunnel-agent (pid $other) uses $RUN_DIR"
    fi
fi
echo $$ >"$RUN_DIR/agent.pid"
rm -f "$RUN_DIR/incoming" "$RUN_DIR"/proxy.*.rc

# Execs localproxy for the notification in $1, with any further arguments, as PROXY_USER
# when set. Call it only in a subshell (background job or command substitution).
exec_proxy() {
    doc=$1
    shift
    # shellcheck disable=SC2086
    set -- "$LOCALPROXY" --notification "$doc" -d "$SERVICES" $PROXY_ARGS "$@"
    case $RUN_AS in
    setpriv)
        exec setpriv --reuid="$PROXY_USER" --regid="$(id -g "$PROXY_USER")" --init-groups -- "$@"
        ;;
    start-stop-daemon)
        # -p names no file, so a proxy still running is never mistaken for this one.
        prog=$1
        shift
        exec start-stop-daemon -S -p "$RUN_DIR/none.pid" -c "$PROXY_USER" -x "$prog" -- "$@"
        ;;
    *) exec "$@" ;;
    esac
}

# The proxy's output: syslog (tag localproxy) or the agent's stderr.
sink() {
    if [ "$LOG" = syslog ]; then logger -t localproxy -p daemon.info; else cat >&4; fi
}

exit_meaning() {
    case $1 in
    0) echo "tunnel closed" ;;
    2) echo "configuration error" ;;
    3) echo "rejected by the service" ;;
    4) echo "gave up after retries" ;;
    *) echo "failed" ;;
    esac
}

# Whether pid $1 is a proxy this agent started (the pid file may be stale).
is_proxy() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/cmdline" ] || return 0
    cmdline "$1" | grep -qF -- "--notification $RUN_DIR/notification."
}

WRAPPER=
# Starts the proxy for document $1 (notification number $2) in the background. A wrapper
# subshell waits for it, logs its exit code and removes the document.
start_proxy() {
    doc=$1
    n=$2
    ct=
    if [ "$CLIENT_TOKEN" = auto ] && [ -r /proc/sys/kernel/random/uuid ]; then
        # A fresh client token per tunnel lets the proxy reconnect after a network drop
        # with the same (otherwise single-use) access token.
        ct=$(cat /proc/sys/kernel/random/uuid)
    fi
    (
        {
            (
                if [ -n "$ct" ]; then
                    AWSIOT_TUNNEL_CLIENT_TOKEN=$ct
                    export AWSIOT_TUNNEL_CLIENT_TOKEN
                fi
                exec_proxy "$doc"
            ) </dev/null 2>&1 4>&- &
            pid=$!
            echo "$pid" >"$RUN_DIR/proxy.pid"
            log "localproxy started (pid $pid) for notification $n"
            wait "$pid"
            echo "$? $pid" >"$RUN_DIR/proxy.$n.rc"
        } | sink
        read -r rc pid <"$RUN_DIR/proxy.$n.rc" || rc=unknown
        log "localproxy (pid ${pid:-?}) for notification $n exited with code $rc ($(exit_meaning "$rc"))"
        rm -f "$doc" "$RUN_DIR/proxy.$n.rc"
    ) &
    WRAPPER=$!
}

# Stops the running proxy, if any: SIGTERM (it closes the tunnel cleanly), SIGKILL after
# STOP_TIMEOUT seconds.
stop_proxy() {
    [ -s "$RUN_DIR/proxy.pid" ] || return 0
    old=$(cat "$RUN_DIR/proxy.pid")
    rm -f "$RUN_DIR/proxy.pid"
    is_proxy "$old" || return 0
    log "stopping localproxy (pid $old): a new notification replaces its tunnel"
    kill -TERM "$old" 2>/dev/null
    if [ -n "$WRAPPER" ] && kill -0 "$WRAPPER" 2>/dev/null; then
        (
            sleep "$STOP_TIMEOUT"
            kill -KILL "$old" 2>/dev/null
        ) 4>&- &
        guard=$!
        wait "$WRAPPER"
        kill "$guard" 2>/dev/null
    else
        # Started by an earlier agent: not our child, so poll.
        t=0
        while kill -0 "$old" 2>/dev/null && [ "$t" -lt "$STOP_TIMEOUT" ]; do
            sleep 1
            t=$((t + 1))
        done
        kill -KILL "$old" 2>/dev/null
    fi
    WRAPPER=
}

SUB=
PAUSE=
on_term() {
    trap - TERM INT HUP
    [ -n "$SUB" ] && kill "$SUB" 2>/dev/null
    [ -n "$PAUSE" ] && kill "$PAUSE" 2>/dev/null
    rm -f "$RUN_DIR/incoming" "$RUN_DIR/agent.pid"
    log "stopped (a running localproxy keeps its tunnel)"
    exit 0
}
trap on_term TERM INT HUP

# Sleeps $1 seconds in a way a signal interrupts.
pause() {
    sleep "$1" 4>&- &
    PAUSE=$!
    wait "$PAUSE"
    PAUSE=
}

# Waits for one message; its payload lands in RUN_DIR/incoming. Returns mosquitto_sub's
# exit code (0: a message came).
subscribe() {
    rm -f "$RUN_DIR/incoming"
    # shellcheck disable=SC2086
    mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -i "$MQTT_CLIENT_ID" -c -q 1 -C 1 -N \
        --cafile "$CA_FILE" --cert "$CERT_FILE" --key "$KEY_FILE" -t "$TOPIC" $MQTT_ARGS \
        </dev/null >"$RUN_DIR/incoming" 2>"$RUN_DIR/sub.err" 4>&- &
    SUB=$!
    wait "$SUB"
    rc=$?
    SUB=
    return "$rc"
}

# Vets notification number $1 (in RUN_DIR/incoming) and starts its proxy.
handle() {
    n=$1
    doc="$RUN_DIR/notification.$n.json"
    if [ ! -s "$RUN_DIR/incoming" ]; then
        log "notification $n ignored: the message is empty"
        return
    fi
    mv -f "$RUN_DIR/incoming" "$doc"
    if [ -n "$PROXY_USER" ]; then chown "$PROXY_USER" "$doc"; fi
    log "notification $n received ($(wc -c <"$doc" | tr -d ' ') bytes)"
    # Check before stopping anything: a bad document must not end a working tunnel.
    if ! err=$(exec_proxy "$doc" --check 2>&1 >/dev/null 4>&-); then
        line=$(printf '%s\n' "$err" | grep '^localproxy: ' | head -n 1)
        [ -n "$line" ] || line=$(printf '%s\n' "$err" | head -n 1)
        log "notification $n rejected: ${line#localproxy: }"
        rm -f "$doc"
        return
    fi
    stop_proxy
    start_proxy "$doc" "$n"
}

log "waiting for tunnel notifications on $TOPIC at $MQTT_HOST:$MQTT_PORT (client id $MQTT_CLIENT_ID, services $SERVICES)"
delay=1
n=0
while :; do
    if subscribe; then
        delay=1
        n=$((n + 1))
        handle "$n"
    else
        rc=$?
        err=$(head -n 1 "$RUN_DIR/sub.err" 2>/dev/null)
        log "subscription ended with code $rc (${err:-no message}); subscribing again in $delay s"
        pause "$delay"
        delay=$((delay * 2))
        [ "$delay" -le "$BACKOFF_MAX" ] || delay=$BACKOFF_MAX
    fi
done
