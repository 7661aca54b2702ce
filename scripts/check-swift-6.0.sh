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
# expression takes 120 ms (Sources: under 50 ms) on a quiet machine and, in CI runs, up to ~3× that (a
# `#expect` over a nested `zip` with an untyped closure once took 416 ms; such expressions in tests are written
# with typed intermediate values). 400 ms leaves room for that noise, is 25× below where 6.0.3 gives up, and
# keeps any expression under ~2 s on a Raspberry Pi's 3–5× slower cores. To see what is close to the budget:
# WHALE_EXPRESSION_BUDGET_MS=100 WHALE_SWIFT60_CONFIGS=debug.
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

if [ "$(id -u)" != 0 ]; then
    echo "check-swift-6.0: must run as root (debootstrap, mount, chroot)" >&2
    exit 2
fi
if [ "$(uname -m)" != x86_64 ]; then
    # The point is a native build; on another architecture debootstrap amd64 would need emulation.
    echo "check-swift-6.0: needs an x86-64 host" >&2
    exit 2
fi

script=check-swift-6.0
# shellcheck source=lib/debian-root.sh
. scripts/lib/debian-root.sh

# 1. The root: reused when complete, built otherwise.
ensure_root amd64 "$root" "$packages"

# 2. The package, copied; the host's mirror of Swift packages mounted.
copy_package "$work"
mount_system "$root"
mount_in "$root" bluewhale "$work" --bind
mount_packages_mirror "$root"
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

print_timings
if [ "$failed" != 0 ]; then
    echo "check-swift-6.0: FAILED (full logs: $work/*.log)" >&2
    exit 1
fi
echo "check-swift-6.0: the package builds with Swift 6.0.3 ($configs), type checking within $budgets" >&2
