#!/usr/bin/env bash
# The Raspberry Pi check: builds whale as a Pi user would — Debian trixie arm64 with Debian's Swift
# (`apt install swiftlang`, 6.0.3) — here under qemu-user emulation, and checks that it gives the same tokens
# as the x86-64 build of the same commit.
#
#   1. an arm64 Debian trixie root with swiftlang (debootstrap; built once, cached in $WHALE_ARM64_ROOT);
#   2. `swift build -c release --product whale` inside it, from an empty scratch directory under
#      .build-arm64/ (the host's .build is never touched), with the default CPU (`native`: under emulation
#      clang sees no arm64 CPU and targets generic ARMv8-A with NEON, what a Pi 4's Cortex-A72 runs);
#   3. greedy `whale run --json` with the arm64 binary and with the host's x86-64 release build on SmolLM2
#      Q4_1 (scripts/fetch-models.sh), a tiny DeepSeek-V3 GGUF (MLA, MoE, YaRN) and a tiny Qwen2 Q8_0 GGUF
#      (test fixtures): the token ids must be identical;
#   4. the kernels' disassembly: vector fused multiply-adds (`fmla`) and int8 dot products (`sdot`/`udot`)
#      per WhaleKernels object file, for this build and for a kernels-only build targeting a Raspberry Pi 5
#      (`WHALE_CPU=cortex-a76`, which has the dot-product extension).
#
# Slow: tens of minutes (the compiler runs emulated, 20–30× slower than native). Not part of CI; run it before
# changing kernels' arithmetic is called done, and whenever Package.swift's flags change.
#
# Usage (as root: debootstrap, binfmt_misc, mount and chroot need it):  scripts/check-arm64.sh
# Environment:
#   WHALE_ARM64_ROOT      where the root lives (default: a directory under $TMPDIR or /tmp; ~2.7 GB)
#   WHALE_DEBIAN_MIRROR   Debian mirror for debootstrap (default: the one the host's apt uses)
#   WHALE_SWIFT_PACKAGES  local mirror of github.com Swift packages (default: where the host's git config
#                         redirects https://github.com/ to, if anywhere; otherwise the network is used)
#   WHALE_ARM64_TOKENS    tokens generated per model (default 32)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
root=${WHALE_ARM64_ROOT:-${TMPDIR:-/tmp}/bluewhale-trixie-arm64}
work=$repo/.build-arm64
tokens=${WHALE_ARM64_TOKENS:-32}
# What a Pi user installs (swiftlang pulls in binutils, whose objdump reads the kernels), plus git for the
# package dependencies.
packages="swiftlang libc6-dev libstdc++-14-dev git ca-certificates"

if [ "$(id -u)" != 0 ]; then
    echo "check-arm64: must run as root (debootstrap, binfmt_misc, mount, chroot)" >&2
    exit 2
fi
host=$(uname -m)
if [ "$host" != x86_64 ] && [ "$host" != aarch64 ]; then
    echo "check-arm64: needs an x86-64 host (emulating arm64) or an arm64 host" >&2
    exit 2
fi

script=check-arm64
# shellcheck source=lib/debian-root.sh
. scripts/lib/debian-root.sh

# 1. The root.
if [ "$host" = x86_64 ]; then enable_emulation; fi
ensure_root arm64 "$root" "$packages"

# The models, and the reference: the host's release build of this working tree.
scripts/fetch-models.sh smollm2 > /dev/null
fixtures=Tests/WhaleModelsTests/Fixtures
models=(
    "models/SmolLM2-135M-Instruct.Q4_1.gguf|-p|The capital of France is"
    "$fixtures/deepseek/v3-no-qlora-yarn/model-f32.gguf|--tokens|1,7,42,99,3,250,17"
    "$fixtures/tiny-qwen2/model-q8_0.gguf|--tokens|5,17,33,64,2,90"
)
# 2. The arm64 build (and the host's, the reference).
copy_package "$work"
if [ "$host" = x86_64 ]; then
    swift build -c release --product whale > "$work/host-build.log" 2>&1 || {
        tail -n 30 "$work/host-build.log" >&2
        exit 1
    }
    phase_done "host release build (x86-64 reference)"
fi

mkdir -p "$work/models"
for entry in "${models[@]}"; do
    file=${entry%%|*}
    mkdir -p "$work/models/$(dirname "$file")"
    cp "$file" "$work/models/$file"
done
mount_system "$root"
mount_in "$root" bluewhale "$work" --bind
mount_packages_mirror "$root"
swift_version=$(in_root "$root" 'swift --version 2>&1 | head -n 1')
echo "==> $swift_version" >&2
phase_done "copy package and models, mount"
build() { # LOG ARGS...: a release build in the root; its log kept, its tail shown on failure
    local log=$1
    shift
    in_root "$root" "cd /bluewhale/src && $*" > "$log" 2>&1 || {
        tail -n 40 "$log" >&2
        echo "check-arm64: FAILED: $* (log: $log)" >&2
        exit 1
    }
}
build "$work/release.log" swift build -c release --product whale --scratch-path /bluewhale/build
phase_done "arm64 release build of whale (emulated)"

# 3. Same tokens.
failed=0
run_json() { # BINARY MODEL OPTION VALUE
    "$1" run "$2" "$3" "$4" -n "$tokens" --temp 0 --json -t 2 2> /dev/null |
        python3 -c 'import json, sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))'
}
for entry in "${models[@]}"; do
    IFS='|' read -r file option value <<< "$entry"
    if [ "$host" = x86_64 ]; then
        expected=$(run_json .build/release/whale "$file" "$option" "$value")
    else
        expected=""
    fi
    got=$(in_root "$root" "cd /bluewhale/models && /bluewhale/build/release/whale run '$file' $option '$value' \
        -n $tokens --temp 0 --json -t 2 2> /dev/null" |
        python3 -c 'import json, sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))')
    name=$(basename "$(dirname "$file")")/$(basename "$file")
    if [ -z "$expected" ]; then
        echo "    $name: arm64 tokens $got (arm64 host: no x86-64 build to compare with)" >&2
    elif [ "$got" = "$expected" ]; then
        echo "    $name: $tokens tokens identical to x86-64: $got" >&2
    else
        echo "    $name: DIFFERENT tokens" >&2
        echo "      x86-64: $expected" >&2
        echo "      arm64:  $got" >&2
        failed=1
    fi
done
phase_done "whale run, arm64 (emulated) vs x86-64"

# 4. The kernels' instructions. Object files of WhaleKernels (cross-module optimization inlines some kernels
# into their callers too, but every kernel is compiled here).
disassembly_summary() { # SCRATCH: per object file, vector fmla / sdot / udot / all instructions
    in_root "$root" "cd $1/release/WhaleKernels.build && for o in *.o; do
        objdump -d --no-show-raw-insn \"\$o\" | awk -v f=\"\$o\" '
            /^ +[0-9a-f]+:\t/ { n++; op = \$2
                if (op == \"fmla\" && \$3 ~ /^v/) fmla++
                if (op == \"sdot\") sdot++
                if (op == \"udot\") udot++ }
            END { if (fmla + sdot + udot > 0) printf \"      %-34s fmla %5d  sdot %4d  udot %4d  of %6d\\n\", f, fmla, sdot, udot, n }'
        done"
}
echo "==> WhaleKernels, default build (WHALE_CPU unset: native, which is generic ARMv8-A under emulation):" >&2
disassembly_summary /bluewhale/build >&2
build "$work/release-a76.log" WHALE_CPU=cortex-a76 swift build -c release --target WhaleKernels \
    --scratch-path /bluewhale/build-a76
phase_done "arm64 WhaleKernels build for cortex-a76"
echo "==> WhaleKernels built with WHALE_CPU=cortex-a76 (Raspberry Pi 5):" >&2
disassembly_summary /bluewhale/build-a76 >&2

print_timings
if [ "$failed" != 0 ]; then
    echo "check-arm64: FAILED: the arm64 build's tokens differ from the x86-64 build's" >&2
    exit 1
fi
echo "check-arm64: the arm64 build ($swift_version) gives the same tokens as x86-64" >&2
