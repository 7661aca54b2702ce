# Helpers for building and entering a Debian trixie root with Debian's Swift (swiftlang 6.0.3, the compiler a
# Raspberry Pi user gets from `apt install swiftlang`). Sourced by scripts/check-swift-6.0.sh (native x86-64
# root) and scripts/check-arm64.sh (arm64 root under qemu-user emulation); both run as root.
#
# The caller sets `script` (its name, for messages) and calls `ensure_root ARCH ROOT PACKAGES`, then
# `mount_system ROOT`, `in_root ROOT 'command'`; mounts are undone on exit whatever the exit path.

phase_start=$SECONDS
timings=()
# Prints how long the phase that just ended took, and keeps it for the summary at the end.
phase_done() {
    local line
    line=$(printf '%-44s %5d s' "$1" $((SECONDS - phase_start)))
    echo "==> $line" >&2
    timings+=("$line")
    phase_start=$SECONDS
}
print_timings() {
    echo "==> timings:" >&2
    printf '    %s\n' "${timings[@]}" >&2
}

# Mounts made by this script, unmounted in reverse order on exit, whatever the exit path: a mount left behind
# would keep the host's /dev or the package mirror reachable from a root that later runs delete or rebuild.
mounted=()
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2> /dev/null || umount -l "${mounted[i]}" || true
    done
    mounted=()
}
trap unmount_all EXIT
# Interrupted (Ctrl-C, a CI timeout): exit normally so that the EXIT trap unmounts.
trap 'exit 130' INT
trap 'exit 143' TERM
# mount_in ROOT TARGET SOURCE [mount options...]
mount_in() {
    local target=$1/$2
    mkdir -p "$target"
    mount "${@:4}" "$3" "$target"
    mounted+=("$target")
}
# The kernel file systems that apt, dpkg and swift expect inside a chroot.
mount_system() {
    mount_in "$1" proc proc -t proc
    mount_in "$1" sys sysfs -t sysfs
    mount_in "$1" dev /dev --bind
    mount_in "$1" dev/pts devpts -t devpts
    mount_in "$1" dev/shm tmpfs -t tmpfs
    # Name resolution for apt (the root's own resolv.conf is debootstrap's copy of the host's at creation).
    cp -L /etc/resolv.conf "$1/etc/resolv.conf" 2> /dev/null || true
}
# Runs a shell command inside a root with a clean environment (nothing of the host's leaks in).
in_root() {
    chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$2"
}
# Mount points at or under a directory, deepest first.
mounts_under() {
    findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r
}
# Refuses to delete a directory that still has something mounted under it (rm would follow into /dev or the
# package mirror), then deletes it without crossing into other file systems either way.
remove_root() {
    if [ -n "$(mounts_under "$1")" ]; then
        echo "$script: something is still mounted under $1; unmount it first" >&2
        exit 1
    fi
    rm -rf --one-file-system "$1"
}

# The Debian mirror the host's apt already uses: the first uncommented `deb URL …` line (one-line format) or
# `URIs: URL` field (deb822) whose URL ends in /debian. Read here rather than written down, so the script works
# behind whatever mirror or proxy each machine is set up with.
debian_mirror() {
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2> /dev/null ||
        true; } | awk '
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*(deb|URIs:)[[:space:]]/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):\/\/.*\/debian\/?$/) { print $i; exit }
        }'
}

# The host directory that its git config redirects https://github.com/ to (e.g. a local mirror of the Swift
# packages, for machines without GitHub access), if there is one.
swift_packages_mirror() {
    git config --get-regexp '^url\..*\.insteadof$' 2> /dev/null |
        awk '$2 == "https://github.com/" { sub(/^url\./, "", $1); sub(/\.insteadof$/, "", $1); print $1; exit }' ||
        true
}

# Installs Debian packages on the host when a command is missing: host_tool COMMAND PACKAGE...
host_tool() {
    command -v "$1" > /dev/null && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" > /dev/null
}

# ensure_root ARCH ROOT PACKAGES: a Debian trixie root for ARCH (amd64 or arm64) at ROOT with PACKAGES
# installed. Reused when complete; built otherwise (a foreign ARCH runs under qemu-user, see
# enable_emulation). Takes a lock on ROOT for the rest of the script: concurrent runs (two CI jobs on one
# machine) would mount into and rebuild the same root.
ensure_root() {
    local arch=$1 root=$2 packages=$3 stamp partial mirror foreign=""
    # Written into the root when it is complete; a root with a different stamp (or none: an interrupted
    # setup) is rebuilt, so changing the package list refreshes every cached root.
    stamp="debian trixie $arch: $packages"
    mkdir -p "$(dirname "$root")"
    exec 9> "$root.lock"
    flock 9
    # Holding the lock, nothing else uses the root: mounts still there are left over from a run that was
    # killed (SIGKILL skips the trap). Unmount them rather than stack new ones on top.
    for stale in $(mounts_under "$root") $(mounts_under "$root.partial"); do umount -l "$stale" || true; done
    if [ "$(cat "$root/.bluewhale-stamp" 2> /dev/null)" = "$stamp" ]; then
        echo "==> reusing $root" >&2
        return
    fi
    # Built under another name and renamed when complete, so an interrupted setup is never mistaken for a
    # cached root.
    partial=$root.partial
    remove_root "$partial"
    host_tool debootstrap debootstrap
    phase_done "host tools (debootstrap)"
    mirror=${WHALE_DEBIAN_MIRROR:-$(debian_mirror)}
    if [ -z "$mirror" ]; then
        echo "$script: no Debian mirror in /etc/apt/sources.list*; set WHALE_DEBIAN_MIRROR" >&2
        exit 2
    fi
    # A foreign architecture: debootstrap only unpacks (--foreign), the second stage runs inside the root
    # under emulation.
    if [ "$arch" != "$(dpkg --print-architecture)" ]; then foreign=--foreign; fi
    # minbase: no priority-important packages, the build needs none of them.
    debootstrap --arch="$arch" $foreign --variant=minbase trixie "$partial" "$mirror" > "$partial.log" 2>&1 || {
        tail -n 30 "$partial.log" >&2
        exit 1
    }
    if [ -n "$foreign" ]; then
        chroot "$partial" /debootstrap/debootstrap --second-stage >> "$partial.log" 2>&1 || {
            tail -n 30 "$partial.log" >&2
            exit 1
        }
    fi
    phase_done "debootstrap trixie $arch"
    mount_system "$partial"
    in_root "$partial" "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages > /dev/null &&
        apt-get clean && swift --version"
    unmount_all
    echo "$stamp" > "$partial/.bluewhale-stamp"
    remove_root "$root"
    mv "$partial" "$root"
    rm -f "$partial.log"
    phase_done "install swiftlang into the root ($arch)"
}

# Lets an x86-64 host run arm64 binaries: qemu-user-static registered with binfmt_misc, with the F flag (the
# interpreter is opened at registration, so no qemu binary has to be copied into the root).
enable_emulation() {
    host_tool qemu-aarch64-static qemu-user-static binfmt-support
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo "$script: could not register qemu-aarch64 with binfmt_misc" >&2
        exit 2
    fi
}

# Bind-mounts the host's local mirror of GitHub Swift packages (read-only: a build must never change it) at
# /mirror in the root and points the root's git at it; without one, the root's git uses the network.
mount_packages_mirror() {
    local root=$1 packages_mirror
    packages_mirror=${WHALE_SWIFT_PACKAGES:-$(swift_packages_mirror)}
    if [ -n "$packages_mirror" ] && [ -d "$packages_mirror" ]; then
        mount_in "$root" mirror "$packages_mirror" --bind -o ro
        in_root "$root" 'git config --system --replace-all url./mirror/.insteadOf https://github.com/'
    else
        in_root "$root" 'git config --system --unset-all url./mirror/.insteadOf || true'
    fi
}

# Copies what a build reads into DIR/src (a read-only bind mount would not do: SwiftPM writes
# Package.resolved next to Package.swift), so the models directory and the host's .build stay out.
copy_package() {
    rm -rf "$1"
    mkdir -p "$1/src"
    cp -a Package.swift Sources Tests "$1/src/"
    if [ -f Package.resolved ]; then cp -a Package.resolved "$1/src/"; fi
}
