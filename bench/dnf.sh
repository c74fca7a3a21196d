#!/bin/bash
# Benchmark (not a test): the org.osbuild.dnf stage against a plain `dnf --installroot` of the
# same packages, in the same run. A repository of N small rpms (plus one that requires them all)
# is made with createrepo_c and served from 127.0.0.1 by python3's http.server. Each side
# installs the closure into an empty tree, 3 times (interleaved), and the best time is reported.
# The stage's figure includes what it adds: the sandbox, the runner's set-up,
# three dnf runs (metadata, download, install without network), the checksum check and the
# commit of the tree to the store.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-/var/tmp/osbuild-bench-dnf}
N=${BENCH_PACKAGES:-100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release -q --bin osbuild
./install.sh libdir "$CARGO_TARGET_DIR/bench-libdir" >/dev/null
OSBUILD=$CARGO_TARGET_DIR/release/osbuild

repo=$CACHE/repo-$N
if [ ! -e "$repo/repodata/repomd.xml" ]; then
    mkdir -p "$CACHE/build" "$repo"
    requires=""
    for i in $(seq 1 "$N"); do
        name=bench-p$i
        requires="$requires
Requires: $name"
        cat > "$CACHE/build/$name.spec" <<SPEC
Name: $name
Version: 1.0
Release: 1
Summary: bench
License: MIT
BuildArch: noarch
%description
bench
%install
mkdir -p %{buildroot}/usr/share/$name
head -c 65536 /dev/urandom > %{buildroot}/usr/share/$name/data
%files
/usr/share/$name/data
SPEC
        rpmbuild --quiet --define "_topdir $CACHE/build/top" -bb "$CACHE/build/$name.spec"
    done
    printf 'Name: bench-all\nVersion: 1.0\nRelease: 1\nSummary: bench\nLicense: MIT\nBuildArch: noarch\n%s\n%%description\nbench\n%%files\n' \
        "$requires" > "$CACHE/build/bench-all.spec"
    rpmbuild --quiet --define "_topdir $CACHE/build/top" -bb "$CACHE/build/bench-all.spec"
    cp "$CACHE"/build/top/RPMS/noarch/*.rpm "$repo/"
    createrepo_c --quiet "$repo"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$repo" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/repodata/repomd.xml" && break; sleep 0.1; done

sum=$(sha256sum "$repo/repodata/repomd.xml" | cut -d' ' -f1)
cat > "$CACHE/manifest.json" <<JSON
{"pipeline": {"stages": [{"name": "org.osbuild.dnf", "options": {
  "repos": [{"baseurl": "http://127.0.0.1:$port/", "checksum": "sha256:$sum"}],
  "packages": ["bench-all"], "releasever": "39", "basearch": "x86_64"}}]}}
JSON
printf '[repo0]\nname=repo0\nbaseurl=http://127.0.0.1:%s/\n' "$port" > "$CACHE/dnf.conf"
mkdir -p "$CACHE/home"
echo '%_dbpath /usr/lib/sysimage/rpm' > "$CACHE/home/.rpmmacros"

now() { date +%s.%N; }
ours=() plain=()
for _ in 1 2 3; do
    rm -rf "$CACHE/store"
    s=$(now)
    "$OSBUILD" --store "$CACHE/store" --libdir "$CARGO_TARGET_DIR/bench-libdir" \
        --checkpoint "$("$OSBUILD" --libdir "$CARGO_TARGET_DIR/bench-libdir" --inspect "$CACHE/manifest.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pipeline"]["stages"][0]["id"])')" \
        "$CACHE/manifest.json" >/dev/null
    ours+=("$(echo "$(now) - $s" | bc)")
    rm -rf "$CACHE/tree"
    s=$(now)
    HOME=$CACHE/home dnf -y -q --installroot "$CACHE/tree" --forcearch x86_64 --setopt reposdir= \
        --releasever 39 --noplugins --config "$CACHE/dnf.conf" install bench-all >/dev/null
    plain+=("$(echo "$(now) - $s" | bc)")
done
rm -rf "$CACHE/store" "$CACHE/tree"
b_ours=$(printf '%s\n' "${ours[@]}" | sort -n | head -1)
b_plain=$(printf '%s\n' "${plain[@]}" | sort -n | head -1)
echo "$((N + 1)) packages: org.osbuild.dnf stage ${b_ours}s (runs: ${ours[*]})"
echo "$((N + 1)) packages: plain dnf --installroot ${b_plain}s (runs: ${plain[*]})"
echo "ratio stage/plain: $(echo "scale=2; $b_ours / $b_plain" | bc)"
