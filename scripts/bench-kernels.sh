#!/usr/bin/env bash
# Matrix kernel speed: GB/s of weights read by Linear.apply on SmolLM2-135M's shapes (Q4_1, Q8_0 and the
# other supported types), 1 and 2 threads, tokens = 1 (decode) and 64 (prompt), the fixed cost of a call and
# of the thread pool, plus the matmul-only time of a whole decode step and a 64-token prompt chunk.
#   scripts/bench-kernels.sh [seconds per measurement] [types, e.g. Q4_1,Q8_0]   (default 0.3, all)
#   WHALE_TARGET_CPU=haswell scripts/bench-kernels.sh     (default native; "package" = Package.swift's own
#                                                          choice, WHALE_CPU or native)
#   WHALE_EXTRA_FLAGS="-Xllvm -inline-threshold=1000" …   (extra swiftc flags, to compare builds)
# The benchmark is scripts/bench/main.swift, built in release in a throwaway package under /tmp that depends
# on this checkout by path, so it sees the same module boundaries and package flags as the whale binary.
# Before running, it disassembles the kernels and lists any call left inside them ([PURE_SIMD_OPS]).
# The machine is shared: compare runs side by side, not with numbers from another day.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
cpu="${WHALE_TARGET_CPU:-native}"
extra="${WHALE_EXTRA_FLAGS:-}"
work="${WHALE_BENCH_DIR:-/tmp/whale-bench-kernels}"
mkdir -p "$work/Sources/bench-kernels"
cp scripts/bench/main.swift "$work/Sources/bench-kernels/main.swift"
[[ -f Package.resolved ]] && cp Package.resolved "$work/Package.resolved"
cat > "$work/Package.swift" << EOF
// swift-tools-version: 6.0
import PackageDescription
let package = Package(
    name: "bench-kernels",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "BlueWhale", path: "$root")],
    targets: [
        .executableTarget(
            name: "bench-kernels", dependencies: [.product(name: "WhaleKernels", package: "BlueWhale")])
    ]
)
EOF
flags=()
[[ "$cpu" != package ]] && flags+=(-Xswiftc -target-cpu -Xswiftc "$cpu")
for flag in $extra; do flags+=(-Xswiftc "$flag"); done
echo "build: swift build -c release ${flags[*]:-}"
swift build -c release --package-path "$work" ${flags[@]+"${flags[@]}"} 2>&1 | grep -E "error|warning: unre|Compiling|Build" | tail -3
binary="$work/.build/release/bench-kernels"
# [PURE_SIMD_OPS] A kernel that calls out of its loop (a generic SIMD conversion left un-inlined, a
# retain) runs 10–100× slower: list every call instruction inside the kernel functions.
if command -v objdump > /dev/null && command -v swift-demangle > /dev/null; then
    calls=0
    while read -r address size name; do
        start=$((16#$address)); stop=$((start + 16#$size))
        found=$(objdump -d --no-show-raw-insn --start-address=$start --stop-address=$stop "$binary" \
            | grep -E '\scall' | sed 's/.*</</' | sort | uniq -c | swift-demangle --simplified | head -5 || true)
        if [[ -n "$found" ]]; then
            calls=1
            echo "codegen: calls inside $name:"
            echo "$found" | cut -c1-160
        fi
    done < <(nm -S "$binary" | swift-demangle --simplified \
        | sed -nE 's/^([0-9a-f]+) ([0-9a-f]+) [tT] .*static ((Legacy|KQuant|Float)Kernels\.[A-Za-z0-9_]+)\(.*/\1 \2 \3/p')
    [[ $calls == 0 ]] && echo "codegen: no calls inside the kernels"
fi
"$binary" "$@"
