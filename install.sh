#!/usr/bin/env bash
# Builds and installs osbuild from this checkout.
#
#   ./install.sh libdir DIR              lay out a libdir (stages, assemblers, runners, sources) in DIR,
#                                        for tests and development: osbuild --libdir DIR ...
#   ./install.sh install [--prefix P] [--destdir D]
#                                        install osbuild, osbuildd and osbuildctl into P/bin, the
#                                        libdir into P/lib/osbuild, and the service files: D-Bus
#                                        policy, activation and XML under P/share/dbus-1, polkit
#                                        policy under P/share/polkit-1, the systemd unit and
#                                        tmpfiles under P/lib/systemd and P/lib/tmpfiles.d
#                                        (P defaults to /usr/local; the polkit rules example goes
#                                        to P/share/doc/osbuild, it is opt-in), the man pages under
#                                        P/share/man/man1, bash, zsh and fish completions, and the
#                                        sample manifests under P/share/doc/osbuild/examples,
#                                        and the client-side depsolver (Python over python3-dnf,
#                                        HEAD's protocol) as P/libexec/osbuild-depsolve-dnf
#   ./install.sh uninstall [--prefix P] [--destdir D]
#
# The stage-side executables run inside build roots that may be another distribution, so they
# are linked statically (glibc's static libc, no NSS) and shared by name through symlinks:
#   DIR/libexec/osbuild-{stages,assemblers,runners}   the multi-call binaries
#   DIR/stages/org.osbuild.NAME -> ../libexec/osbuild-stages (+ NAME.meta.json beside it)
#   DIR/assemblers/...  DIR/runners/... likewise; runner aliases link to the runner they share.
# Sources run on the host, not in build roots, so theirs is an ordinary (dynamic) binary:
#   DIR/libexec/osbuild-sources, DIR/sources/org.osbuild.NAME -> ../libexec/osbuild-sources
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "install.sh: $*" >&2; exit 1; }

target=$(rustc -vV | sed -n 's/^host: //p')
stage_side=(osbuild-stages osbuild-assemblers osbuild-runners)

target_dir=${CARGO_TARGET_DIR:-target}

build_stage_side() {
    local pkgs=()
    for p in "${stage_side[@]}"; do pkgs+=(-p "$p"); done
    # An explicit --target keeps these flags away from build scripts and proc macros.
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release --target "$target" "${pkgs[@]}"
    # Host-side: the sources.
    cargo build --quiet --release -p osbuild-sources
}

# lay_out_libdir DIR: populate DIR from the freshly built binaries and the meta files.
lay_out_libdir() {
    local dir=$1 bin="$target_dir/$target/release"
    mkdir -p "$dir"/{libexec,stages,assemblers,runners,sources}
    for b in "${stage_side[@]}"; do
        install -m 0755 "$bin/$b" "$dir/libexec/$b"
    done
    install -m 0755 "$target_dir/release/osbuild-sources" "$dir/libexec/osbuild-sources"
    local source
    while read -r source; do
        case "$source" in ''|\#*) continue ;; esac
        ln -sfn ../libexec/osbuild-sources "$dir/sources/$source"
    done < sources/names.txt
    local kind meta name
    for meta in sources/meta/*.meta.json; do
        install -m 0644 "$meta" "$dir/sources/$(basename "$meta")"
    done
    for kind in stages assemblers; do
        for meta in "$kind"/meta/*.meta.json; do
            name=$(basename "$meta" .meta.json)
            install -m 0644 "$meta" "$dir/$kind/$name.meta.json"
            ln -sfn "../libexec/osbuild-$kind" "$dir/$kind/$name"
        done
    done
    # Inputs, devices and mounts are served by the engine itself: only their meta files
    # (the schemas v2 manifests are checked against) are in the libdir.
    for kind in inputs devices mounts; do
        [ -d "src/hostsvc/meta/$kind" ] || continue
        mkdir -p "$dir/$kind"
        for meta in "src/hostsvc/meta/$kind"/*.meta.json; do
            install -m 0644 "$meta" "$dir/$kind/"
        done
    done
    local alias target_name
    while read -r alias target_name; do
        [ -n "$alias" ] || continue
        case "$alias" in \#*) continue ;; esac
        if [ -n "${target_name:-}" ]; then
            ln -sfn "$target_name" "$dir/runners/$alias"
        else
            ln -sfn ../libexec/osbuild-runners "$dir/runners/$alias"
        fi
    done < runners/names.txt
}

binaries=(osbuild osbuildd osbuildctl osbuild-mkmanifest-debian osbuild-mkmanifest-dnf)
# Client-side programs run by users or their tools, not by osbuildd: into P/libexec, where
# HEAD's clients look for them (osbuild-mkmanifest-dnf is built to look there too).
libexec_tools=(osbuild-depsolve-dnf)
# Service files, relative to the prefix.
service_files=(
    share/dbus-1/system.d/org.osbuild.Builder1.conf
    share/dbus-1/system-services/org.osbuild.Builder1.service
    share/dbus-1/interfaces/org.osbuild.Builder1.xml
    share/polkit-1/actions/org.osbuild.builder1.policy
    lib/systemd/system/osbuildd.service
    lib/tmpfiles.d/osbuildd.conf
    lib/udev/rules.d/10-osbuildd-inhibitor.rules
)

# install_service_files: the bus policy, activation file, XML, polkit policy, unit, tmpfiles,
# the udev rules that keep udev off a build's loop devices.
install_service_files() {
    local root="$destdir$prefix" subst
    subst="s|@BINDIR@|$prefix/bin|g; s|@LIBDIR@|$prefix/lib/osbuild|g"
    install -D -m 0644 dbus/org.osbuild.Builder1.conf "$root/share/dbus-1/system.d/org.osbuild.Builder1.conf"
    install -d "$root/share/dbus-1/system-services" "$root/lib/systemd/system"
    sed "$subst" dbus/org.osbuild.Builder1.service.in > "$root/share/dbus-1/system-services/org.osbuild.Builder1.service"
    install -D -m 0644 dbus/org.osbuild.Builder1.xml "$root/share/dbus-1/interfaces/org.osbuild.Builder1.xml"
    install -D -m 0644 polkit/org.osbuild.builder1.policy "$root/share/polkit-1/actions/org.osbuild.builder1.policy"
    sed "$subst" systemd/osbuildd.service.in > "$root/lib/systemd/system/osbuildd.service"
    install -D -m 0644 systemd/osbuildd.tmpfiles.conf "$root/lib/tmpfiles.d/osbuildd.conf"
    install -D -m 0644 systemd/10-osbuildd-inhibitor.rules "$root/lib/udev/rules.d/10-osbuildd-inhibitor.rules"
    install -D -m 0644 polkit/50-osbuild.rules.example "$root/share/doc/osbuild/50-osbuild.rules.example"
    install -D -m 0644 samples/hello-tar.json "$root/share/doc/osbuild/examples/hello-tar.json"
    install -D -m 0644 samples/hello-v2.json "$root/share/doc/osbuild/examples/hello-v2.json"
}

# zsh's directory for a distribution's completions is vendor-completions on Debian (/usr),
# site-functions elsewhere (/usr/local).
zsh_dir() {
    if [ "$prefix" = /usr ]; then echo share/zsh/vendor-completions; else echo share/zsh/site-functions; fi
}

# install_docs: man pages and completions, generated from the clap definitions by
# osbuild-docgen (crates/docgen; built here, never installed).
install_docs() {
    local root="$destdir$prefix" gen
    OSBUILD_LIBDIR="$prefix/lib/osbuild" cargo build --quiet --release -p osbuild-docgen
    gen=$(mktemp -d)
    "$target_dir/release/osbuild-docgen" --prefix "$prefix" "$gen"
    install -d "$root/share/man/man1" "$root/share/bash-completion/completions" \
        "$root/$(zsh_dir)" "$root/share/fish/vendor_completions.d"
    install -m 0644 "$gen"/man1/*.1 "$root/share/man/man1/"
    install -m 0644 "$gen"/bash/* "$root/share/bash-completion/completions/"
    install -m 0644 "$gen"/zsh/* "$root/$(zsh_dir)/"
    install -m 0644 "$gen"/fish/* "$root/share/fish/vendor_completions.d/"
    rm -rf "$gen"
}

# remove_docs: what install_docs installed (osbuildctl also has a page per subcommand).
remove_docs() {
    local root="$destdir$prefix" b
    rm -f "$root/share/man/man1/osbuildctl"-*.1
    for b in "${binaries[@]}"; do
        rm -f "$root/share/man/man1/$b.1" \
            "$root/share/bash-completion/completions/$b" "$root/$(zsh_dir)/_$b" \
            "$root/share/fish/vendor_completions.d/$b.fish"
    done
}

parse_prefix() {
    prefix=/usr/local destdir=
    while [ $# -gt 0 ]; do
        case "$1" in
            --prefix) prefix=$2; shift 2 ;;
            --destdir) destdir=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
}

case "${1:-}" in
    libdir)
        [ $# -eq 2 ] || die "usage: ./install.sh libdir DIR"
        build_stage_side
        rm -rf "$2.new" && lay_out_libdir "$2.new"
        rm -rf "$2" && mv "$2.new" "$2"
        echo "libdir ready: $2"
        ;;
    install)
        shift; parse_prefix "$@"
        build_stage_side
        OSBUILD_LIBDIR="$prefix/lib/osbuild" OSBUILD_DEPSOLVE_DNF="$prefix/libexec/osbuild-depsolve-dnf" \
            cargo build --quiet --release --bins -p osbuild
        install -d "$destdir$prefix/bin" "$destdir$prefix/libexec"
        for b in "${binaries[@]}"; do install -m 0755 "$target_dir/release/$b" "$destdir$prefix/bin/$b"; done
        for t in "${libexec_tools[@]}"; do install -m 0755 "tools/$t" "$destdir$prefix/libexec/$t"; done
        rm -rf "$destdir$prefix/lib/osbuild"
        lay_out_libdir "$destdir$prefix/lib/osbuild"
        install_service_files
        install_docs
        echo "installed under $destdir$prefix"
        ;;
    uninstall)
        shift; parse_prefix "$@"
        for b in "${binaries[@]}"; do rm -f "$destdir$prefix/bin/$b"; done
        for t in "${libexec_tools[@]}"; do rm -f "$destdir$prefix/libexec/$t"; done
        rm -rf "$destdir$prefix/lib/osbuild"
        for f in "${service_files[@]}"; do rm -f "$destdir$prefix/$f"; done
        rm -rf "$destdir$prefix/share/doc/osbuild"
        remove_docs
        echo "uninstalled from $destdir$prefix"
        ;;
    *)
        sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
