#!/usr/bin/env bash
# The Debian package, end to end, as root on this machine: build it with dpkg-buildpackage,
# install it with apt-get, check what it installed (man pages, completions, the store made by
# tmpfiles), let osbuildctl reach an osbuildd that a private system-type bus starts from the
# INSTALLED activation file and bus policy, build the installed sample manifest and run every
# EXAMPLES line of the installed `man osbuildctl`, then purge the package and check that
# nothing of it is left: the listing of /usr, /etc and /var/lib equals the one from before.
#
#   tests/package.sh            (tests/run runs it when root)
#
# It refuses to run where an osbuild package is installed (it would remove it), and holds the
# machine-wide lock of the tests that change system files (tests/common/service.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "tests/package.sh: $*" >&2; exit 1; }
passed=0
check() { echo "ok: $*"; passed=$((passed + 1)); }

[ "$(id -u)" = 0 ] || die "needs root (installs and purges a package)"

start=$(date +%s)
work=$(mktemp -d /var/tmp/osbuild-package.XXXXXX)
chmod 755 "$work"
bus_pid= polkit_pid= installed_by_us=
# Where a store that was here before (samples/build's, a source install's) waits out the test.
saved_state=/var/lib/.osbuild-saved-by-package-test moved_state=
cleanup() {
    local status=$?
    set +e  # clean up everything, whatever fails
    [ -n "${address:-}" ] && stop_daemon
    [ -n "$polkit_pid" ] && kill "$polkit_pid" && wait "$polkit_pid"
    [ -n "$bus_pid" ] && kill "$bus_pid" && wait "$bus_pid"
    if [ -n "$installed_by_us" ] && dpkg-query -W osbuild >/dev/null 2>&1; then
        dpkg --purge osbuild >/dev/null || true
    fi
    if [ $status != 0 ] && [ -s "$work/bus.log" ]; then
        echo "--- the bus's and the activated osbuildd's log:"; tail -40 "$work/bus.log"
    fi
    # The state the purge removed is back only after the purge (and only if we moved it).
    if [ -n "$moved_state" ] && [ ! -e /var/lib/osbuild ]; then
        mv "$saved_state" /var/lib/osbuild
    fi
    [ -d "$work/saved" ] && (cd "$work/saved" && find . ! -type d -print | while read -r f; do
        mkdir -p "$(dirname "${f#.}")" && mv "$f" "${f#.}"; done)
    rm -rf "$work" "$repo/debian/osbuild" "$repo/debian/.debhelper"
    rm -f "$repo"/debian/{files,debhelper-build-stamp,*.substvars,*.debhelper,*.debhelper.log}
    return $status
}
trap cleanup EXIT

# What a listing that must come back looks like: every path of /usr, /etc and /var/lib but
# dpkg's and apt's own books (which record that the package came and went).
listing() {
    find /usr /etc /var/lib -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \
        -o -path /var/lib/man-db -o -path "$saved_state" \) -prune -o -print | sort
}

# Build (before the lock: it changes nothing outside the checkout and $work). install.sh reuses
# what cargo built before (the stage-side binaries of tests/run's libdir); the release binaries
# for /usr are built here. Every file it makes goes to $work, none beside the checkout.
t0=$(date +%s)
OSBUILD_DEB_DIR=$work dpkg-buildpackage -us -uc -b \
    --buildinfo-file="$work/osbuild.buildinfo" --buildinfo-option="-u$work" \
    --changes-file="$work/osbuild.changes" --changes-option="-u$work" \
    > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; die "dpkg-buildpackage failed"; }
deb=$(echo "$work"/osbuild_*.deb)
[ -f "$deb" ] || die "no .deb in $work"
check "dpkg-buildpackage built ${deb##*/} in $(($(date +%s) - t0)) s"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/contents"
for f in /usr/bin/osbuild /usr/bin/osbuildd /usr/bin/osbuildctl /usr/bin/osbuild-mkmanifest-debian \
    /usr/bin/osbuild-mkmanifest-dnf /usr/libexec/osbuild-depsolve-dnf /usr/lib/osbuild/libexec/osbuild-stages \
    /usr/lib/osbuild/stages/org.osbuild.hostname /usr/lib/osbuild/assemblers/org.osbuild.tar /usr/lib/systemd/system/osbuildd.service \
    /usr/lib/tmpfiles.d/osbuildd.conf /usr/lib/udev/rules.d/10-osbuildd-inhibitor.rules \
    /usr/share/dbus-1/system.d/org.osbuild.Builder1.conf \
    /usr/share/dbus-1/system-services/org.osbuild.Builder1.service \
    /usr/share/dbus-1/interfaces/org.osbuild.Builder1.xml \
    /usr/share/polkit-1/actions/org.osbuild.builder1.policy \
    /usr/share/man/man1/osbuildctl.1.gz /usr/share/man/man1/osbuildctl-build.1.gz \
    /usr/share/man/man1/osbuildd.1.gz /usr/share/bash-completion/completions/osbuildctl \
    /usr/share/zsh/vendor-completions/_osbuildctl /usr/share/fish/vendor_completions.d/osbuildctl.fish \
    /usr/share/doc/osbuild/examples/hello-tar.json /usr/share/doc/osbuild/examples/hello-v2.json; do
    grep -qx "$f" "$work/contents" || die "$f is not in the package"
done
check "the package has the binaries, libdir, unit, tmpfiles, bus and polkit files, man pages, completions"
if grep -q '^/usr/local' "$work/contents"; then die "the package has files under /usr/local"; fi

# From here on the machine's files change: one such test at a time (tests/common/service.rs).
exec 9>/run/osbuild-privileged-tests.lock
flock -w 1800 9 || die "the machine's test lock stayed taken for 30 minutes"
if dpkg-query -W -f '${Status}' osbuild 2>/dev/null | grep -q installed; then
    die "an osbuild package is installed here; this test would purge it"
fi
# A file the package ships that is already here (a test's leftover, a hand install) would be
# taken over and then purged: move it aside for the test, and put it back at the end.
mkdir "$work/saved"
while read -r f; do
    if [ -f "$f" ] || [ -L "$f" ]; then
        echo "moving aside $f (not from a package) for the test"
        mkdir -p "$work/saved$(dirname "$f")" && mv "$f" "$work/saved$f"
    fi
done < <(grep -v '/$' "$work/contents")
# Purging removes /var/lib/osbuild, the package's state: a store that was here before the test
# (samples/build makes one) is the user's, so it waits aside, on the same filesystem (a rename,
# whatever its size), and comes back at the end.
if [ -e "$saved_state" ]; then
    die "$saved_state exists: a store a killed run of this test left aside; move it back to /var/lib/osbuild"
fi
if [ -e /var/lib/osbuild ]; then
    echo "moving aside /var/lib/osbuild (a store from before the package) for the test"
    mv /var/lib/osbuild "$saved_state" && moved_state=1
fi
listing > "$work/before"

installed_by_us=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" \
    > "$work/install.log" 2>&1 || { cat "$work/install.log"; die "apt-get install failed"; }
dpkg -L osbuild > "$work/installed"
check "apt-get install ${deb##*/}"

# tmpfiles on configure made the store's directories, root only.
[ "$(stat -c %a /var/lib/osbuild/store 2>/dev/null)" = 700 ] || die "no /var/lib/osbuild/store (0700) after configure"
check "configure made /var/lib/osbuild/store"

warnings=$(MANWIDTH=80 man --warnings -l /usr/share/man/man1/osbuildctl.1.gz 2>&1 >/dev/null)
[ -z "$warnings" ] || die "man osbuildctl warns: $warnings"
# The package's page itself: a hand install under /usr/local would come first in man's path.
MANWIDTH=80 man -l /usr/share/man/man1/osbuildctl.1.gz > "$work/man.txt" 2>/dev/null
grep -q '^EXAMPLES' "$work/man.txt" || die "man osbuildctl has no EXAMPLES"
bash -c 'source /usr/share/bash-completion/completions/osbuildctl && complete -p osbuildctl' >/dev/null \
    || die "the installed bash completion does not load"
check "man osbuildctl renders without warnings; the bash completion loads"

# A private system-type bus made of the installed files: the package's bus policy, its
# activation directory, polkit's policy. (Not <standard_system_servicedirs/>: a /usr/local
# install from samples/build would shadow the package there.)
address=unix:path=$work/system_bus_socket
cat > "$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>$address</listen>
  <auth>EXTERNAL</auth>
  <servicedir>/usr/share/dbus-1/system-services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <include>/usr/share/dbus-1/system.d/org.osbuild.Builder1.conf</include>
</busconfig>
CONF
# 9>&-: the daemons must not inherit (and so hold) the machine's test lock.
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile >"$work/bus.log" 2>&1 9>&- &
bus_pid=$!
export DBUS_SYSTEM_BUS_ADDRESS=$address
bus_call() {
    busctl --address="$address" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus "$@"
}
wait_for() { # NAME SECONDS: until NAME has an owner
    local i=0
    until [ "$(bus_call NameHasOwner s "$1" 2>/dev/null)" = "b true" ]; do
        [ $i -lt $(($2 * 10)) ] || die "$1 did not appear on the bus in $2 s"
        sleep 0.1; i=$((i + 1))
    done
}
owner_pid() { bus_call GetConnectionUnixProcessID s org.osbuild.Builder1 2>/dev/null | awk '{print $2}'; }
stop_daemon() {
    local pid i=0
    pid=$(owner_pid) || true
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && [ $i -lt 300 ]; do
        sleep 0.1; i=$((i + 1))
    done
}
for i in $(seq 50); do [ -S "$work/system_bus_socket" ] && break; sleep 0.1; done
/usr/lib/polkit-1/polkitd --no-debug >/dev/null 2>&1 9>&- &
polkit_pid=$!
wait_for org.freedesktop.PolicyKit1 15

[ "$(bus_call NameHasOwner s org.osbuild.Builder1)" = "b false" ] || die "osbuildd runs before any call"
bus_call ListActivatableNames | grep -q org.osbuild.Builder1 || die "the bus does not know the activation file"

mkdir "$work/out"
timeout 300 osbuildctl build /usr/share/doc/osbuild/examples/hello-tar.json --output "$work/out" \
    > "$work/build-1.txt" 2>&1 || { cat "$work/build-1.txt"; die "osbuildctl build failed"; }
pid=$(owner_pid)
[ "$(readlink "/proc/$pid/exe")" = /usr/bin/osbuildd ] || die "the bus started $(readlink "/proc/$pid/exe"), not /usr/bin/osbuildd"
tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- '--libdir /usr/lib/osbuild --idle-exit 60' \
    || die "osbuildd was not started with the activation file's arguments: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
tar -tJf "$work/out/hello.tar.xz" > "$work/hello.list" || die "cannot list hello.tar.xz: $(ls -l "$work/out")"
grep -q '^\(\./\)\{0,1\}etc/hostname$' "$work/hello.list" || die "hello.tar.xz has no etc/hostname: $(head "$work/hello.list")"
check "the first osbuildctl call started /usr/bin/osbuildd by activation; the sample built"

# Every example of the installed man page, as a script, in a scratch directory.
mkdir "$work/examples"
sed -n '/^EXAMPLES/,/^[A-Z]/p' "$work/man.txt" | sed -n 's/^           //p' > "$work/examples.sh"
[ "$(wc -l < "$work/examples.sh")" -ge 5 ] || die "few example lines: $(cat "$work/examples.sh")"
(cd "$work/examples" && timeout 300 bash -euo pipefail "$work/examples.sh") > "$work/examples.txt" 2>&1 \
    || { cat "$work/examples.sh" "$work/examples.txt"; die "an example of man osbuildctl failed"; }
grep -q '"success": true' "$work/examples/result.json" || die "result.json: $(head -c 300 "$work/examples/result.json")"
[ -n "$(ls -A "$work/examples/export")" ] || die "the export example wrote nothing"
tar -tf "$work/examples/out/image/hello.tar" | grep -qx './srv/www/' \
    || die "the v2 example's image/hello.tar has no srv/www: $(ls -lR "$work/examples/out")"
[ "$(cat "$work/examples/out/base/etc/hostname")" = hello ] || die "the v2 example's base has no etc/hostname"
check "the $(wc -l < "$work/examples.sh") example lines of man osbuildctl ran"

stop_daemon
kill "$polkit_pid" "$bus_pid"; wait "$polkit_pid" "$bus_pid" || true
polkit_pid= bus_pid= address=

dpkg --purge osbuild > "$work/purge.log" 2>&1 || { cat "$work/purge.log"; die "dpkg --purge failed"; }
while read -r f; do
    [ -d "$f" ] && continue
    if [ -e "$f" ] || [ -L "$f" ]; then die "$f is left after purge"; fi
done < "$work/installed"
listing > "$work/after"
if ! diff -u "$work/before" "$work/after" > "$work/diff"; then
    cat "$work/diff"; die "purging left the listing of /usr /etc /var/lib changed"
fi
check "dpkg --purge left /usr, /etc and /var/lib as they were"

echo "tests/package.sh: $(($(date +%s) - start)) s"
echo "package: $passed passed, 0 failed"
