#!/usr/bin/env bash
# Guard: the package must keep building with Swift 6.0.3, the compiler Debian trixie and Raspberry Pi OS ship
# (`apt install swiftlang`), not only with the newer toolchain used for development. 6.0's type checker gives up
# ("unable to type-check this expression in reasonable time") on SIMD expressions that 6.3 checks in
# milliseconds, and 6.0 takes different compiler flags (see Package.swift), so nothing else catches these.
#
# What it does, natively on an x86-64 Linux host (no emulation: the same compiler version a Pi has, minutes
# instead of hours):
#   1. builds a Debian trixie amd64 root with debootstrap, containing swiftlang, once; later runs reuse it;
#   2. copies the package into .build-swift-6.0/ (the host's .build is never touched) and builds it inside
#      the root in debug (with the tests) and release, from an empty scratch directory so every file is
#      compiled and reports its type-checking time;
#   3. fails on a build error and on any expression or function body over its type-checking budget.
#
# Usage (as root: debootstrap, mount and chroot need it):
#   scripts/check-swift-6.0.sh [extra `swift build` arguments, e.g. --target WhaleKernels]
# Environment:
#   WHALE_TRIXIE_ROOT        where the root lives (default: a directory under $TMPDIR or /tmp; ~2.5 GB)
#   WHALE_DEBIAN_MIRROR      Debian mirror for debootstrap (default: the one the host's apt uses)
#   WHALE_SWIFT_PACKAGES     local mirror of github.com Swift packages (default: the directory the host's git
#                            config redirects https://github.com/ to, if any; otherwise the network is used)
#   WHALE_SWIFT60_CONFIGS    configurations to build (default "debug release")
#   WHALE_EXPRESSION_BUDGET_MS, WHALE_FUNCTION_BUDGET_MS
#                            type-checking budgets per expression / per function body (defaults below)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

# Type-checking budgets, in milliseconds of compiler time, as measured on the 2-core CI machine (2026-12).
# Expressions are what breaks a build: 6.0.3 gave up ("unable to type-check this expression in reasonable
# time") after 11–15 s on the two it could not do, and took 3 s on another. With those split, the slowest
# expression takes 110 ms (Sources: under 50 ms) on a quiet machine and up to ~2× that while other builds run;
# 400 ms leaves room for that noise, is 25× below where 6.0.3 gives up, and keeps any expression under ~2 s
# on a Raspberry Pi's 3–5× slower cores.
# A function body's time is the sum of its expressions, so it gets more: the slowest is a test with two
# dozen #expect lines (swift-testing's expansions cost 6.0.3 ~15–25 ms each), 364 ms quiet, 650 ms under load;
# the slowest in Sources takes 174 ms. 1000 ms still flags kernels like the Q4_K and Q6_K rows as they were
# (2 s and 34 s).
expression_budget_ms=${WHALE_EXPRESSION_BUDGET_MS:-400}
function_budget_ms=${WHALE_FUNCTION_BUDGET_MS:-1000}
configs=${WHALE_SWIFT60_CONFIGS:-debug release}
root=${WHALE_TRIXIE_ROOT:-${TMPDIR:-/tmp}/bluewhale-trixie-amd64}
work=$repo/.build-swift-6.0
# Inside the root. swiftlang pulls in binutils, gcc and libswiftlang; libc6-dev for linking; libstdc++-14-dev
# for --static-swift-stdlib (what a Pi user gets from the same apt line); git and ca-certificates for the
# package dependencies.
packages="swiftlang libc6-dev libstdc++-14-dev git ca-certificates"
# Written into the root when it is complete; a root with a different stamp (or none: an interrupted setup) is
# rebuilt, so changing the package list above refreshes every cached root.
stamp="debian trixie amd64: $packages"

if [ "$(id -u)" != 0 ]; then
    echo "check-swift-6.0: must run as root (debootstrap, mount, chroot)" >&2
    exit 2
fi
if [ "$(uname -m)" != x86_64 ]; then
    # The point is a native build; on another architecture debootstrap amd64 would need emulation.
    echo "check-swift-6.0: needs an x86-64 host" >&2
    exit 2
fi

phase_start=$SECONDS
timings=()
# Prints how long the phase that just ended took, and keeps it for the summary at the end.
phase_done() {
    local line
    line=$(printf '%-40s %4d s' "$1" $((SECONDS - phase_start)))
    echo "==> $line" >&2
    timings+=("$line")
    phase_start=$SECONDS
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
        echo "check-swift-6.0: something is still mounted under $1; unmount it first" >&2
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

# Concurrent runs (two CI jobs on one machine) would mount into and rebuild the same root: take turns.
mkdir -p "$(dirname "$root")"
exec 9> "$root.lock"
flock 9
# Holding the lock, nothing else uses the root: mounts still there are left over from a run that was killed
# (SIGKILL skips the trap). Unmount them rather than stack new ones on top.
for stale in $(mounts_under "$root") $(mounts_under "$root.partial"); do umount -l "$stale" || true; done

# 1. The root: reused when complete, built otherwise.
if [ "$(cat "$root/.bluewhale-stamp" 2> /dev/null)" != "$stamp" ]; then
    # Built under another name and renamed when complete, so an interrupted setup is never mistaken for a
    # cached root.
    partial=$root.partial
    remove_root "$partial"
    if ! command -v debootstrap > /dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap > /dev/null
    fi
    phase_done "host tools (debootstrap)"
    mirror=${WHALE_DEBIAN_MIRROR:-$(debian_mirror)}
    if [ -z "$mirror" ]; then
        echo "check-swift-6.0: no Debian mirror in /etc/apt/sources.list*; set WHALE_DEBIAN_MIRROR" >&2
        exit 2
    fi
    # minbase: no priority-important packages, the build needs none of them.
    debootstrap --arch=amd64 --variant=minbase trixie "$partial" "$mirror" > "$partial.log" 2>&1 || {
        tail -n 30 "$partial.log" >&2
        exit 1
    }
    phase_done "debootstrap trixie amd64"
    mount_system "$partial"
    in_root "$partial" "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages > /dev/null &&
        apt-get clean && swift --version"
    unmount_all
    echo "$stamp" > "$partial/.bluewhale-stamp"
    remove_root "$root"
    mv "$partial" "$root"
    rm -f "$partial.log"
    phase_done "install swiftlang into the root"
else
    echo "==> reusing $root" >&2
fi

# 2. The package, copied (a read-only bind mount would not do: SwiftPM writes Package.resolved next to
# Package.swift). Only what the build reads, so the models directory and the host's .build stay out.
rm -rf "$work"
mkdir -p "$work/src"
cp -a Package.swift Sources Tests "$work/src/"
if [ -f Package.resolved ]; then cp -a Package.resolved "$work/src/"; fi
mount_system "$root"
mount_in "$root" bluewhale "$work" --bind
packages_mirror=${WHALE_SWIFT_PACKAGES:-$(swift_packages_mirror)}
if [ -n "$packages_mirror" ] && [ -d "$packages_mirror" ]; then
    # Read-only: a build must never change the host's mirror.
    mount_in "$root" mirror "$packages_mirror" --bind -o ro
    in_root "$root" 'git config --system --replace-all url./mirror/.insteadOf https://github.com/'
else
    in_root "$root" 'git config --system --unset-all url./mirror/.insteadOf || true'
fi
in_root "$root" 'swift --version 2>&1 | head -n 1' >&2
phase_done "copy package, mount"

# 3. The builds. The warning flags make the frontend report every expression and function body whose type
# checking takes longer than the budget; the scratch directory starts empty, so every file is compiled and
# nothing hides behind an up-to-date object file.
warn_flags="-Xswiftc -Xfrontend -Xswiftc -warn-long-expression-type-checking=$expression_budget_ms"
warn_flags+=" -Xswiftc -Xfrontend -Xswiftc -warn-long-function-bodies=$function_budget_ms"
budgets="${expression_budget_ms} ms per expression, ${function_budget_ms} ms per function body"
extra_args=""
if [ $# -gt 0 ]; then extra_args=$(printf ' %q' "$@"); fi
failed=0
for config in $configs; do
    # Debug also builds the test targets (`swift test` on a Pi compiles them in debug), unless the caller
    # picked what to build.
    tests=""
    if [ "$config" = debug ] && [[ " $* " != *" --target "* && " $* " != *" --product "* ]]; then
        tests="--build-tests"
    fi
    log=$work/$config.log
    echo "==> swift build -c $config $tests$extra_args (Swift 6.0.3; type checking within $budgets)" >&2
    status=0
    in_root "$root" "cd /bluewhale/src && swift build -c $config $tests --scratch-path /bluewhale/build \
        $warn_flags$extra_args" > "$log" 2>&1 || status=$?
    # Errors, and warnings from the two flags (SwiftPM already silences them in dependencies), once each
    # (SwiftPM repeats a file's diagnostics for every file compiled with it); inside a macro expansion
    # (#expect) the diagnostic names "macro expansion" and the next line the source line. Paths relative to
    # the package; the lines of source that the compiler quotes are left out.
    problems=$(awk '
        pending != "" {
            if (!seen[pending "\n" $0]++) { print pending; if ($0 ~ /originates here/) print }
            pending = ""
            if ($0 ~ /originates here/) next
        }
        /^macro expansion.*(error:|took [0-9]+ms to type-check)/ { pending = $0; next }
        /^(\/|<unknown>|error:).*(error:|took [0-9]+ms to type-check)/ { if (!seen[$0]++) print }
        END { if (pending != "") print pending }' "$log" | sed 's|/bluewhale/src/||')
    if [ "$status" != 0 ]; then
        echo "FAIL: the $config build with Swift 6.0.3 failed (exit $status):" >&2
        echo "${problems:-$(tail -n 30 "$log")}" >&2
        failed=1
    elif [ -n "$problems" ]; then
        echo "FAIL: type checking over budget ($budgets) in the $config build with Swift 6.0.3 (split the" \
            "expression into sub-expressions with explicit types):" >&2
        echo "$problems" >&2
        failed=1
    fi
    phase_done "swift build -c $config"
done

echo "==> timings:" >&2
printf '    %s\n' "${timings[@]}" >&2
if [ "$failed" != 0 ]; then
    echo "check-swift-6.0: FAILED (full logs: $work/*.log)" >&2
    exit 1
fi
echo "check-swift-6.0: the package builds with Swift 6.0.3 ($configs), type checking within $budgets" >&2
