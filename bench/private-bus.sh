# Sourced by the service benchmarks: start_private_bus DIR starts a system-type dbus-daemon
# listening on DIR/bus that lets everyone own and call anything (the benchmarks run as root and
# need no polkit), waits for its socket, and sets `bus_pid` and `addr`.
start_private_bus() {
    local dir=$1
    cat > "$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
CONF
    dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile >/dev/null 2>&1 &
    bus_pid=$!
    addr="unix:path=$dir/bus"
    for _ in $(seq 50); do [ -S "$dir/bus" ] && return 0; sleep 0.1; done
    echo "bench: the private bus did not start" >&2
    return 1
}
