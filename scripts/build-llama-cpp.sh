#!/usr/bin/env bash
# Builds llama.cpp's reference tools (llama-perplexity, llama-bench, llama-simple, llama-completion,
# llama-tokenize, llama-server, llama-quantize) from the llama.cpp vendored in the llama-cpp-python sdist that
# the fixture scripts pin, so the binaries and the Python bindings are the same llama.cpp commit. Also builds our tap dumper,
# llama-dump-taps (scripts/taps/llama-dump-taps.cpp, compiled with g++ against the static libllama / ggml
# built here), which writes a forward pass's intermediate tensors in the tap format of scripts/diff-taps.py.
#
#   scripts/build-llama-cpp.sh [-jN] [--no-amx]    # default -j1 (2 cores shared with Swift builds)
#
# --no-amx builds llama-bench and llama-perplexity into build-no-amx/ with the native build's flags less
# Intel AMX: on a CPU with AMX (Sapphire Rapids and later) the native build puts weights into its AMX buffer
# type, and this llama.cpp then aborts on DeepSeek MLA models (`GGML_ASSERT(*cur_backend_id != -1)` in
# ggml-backend.cpp, measured 2026-12-06 on dsv3-mini); without AMX it runs them with its usual AVX-512 and
# repacked kernels.
#
# Output: $LLAMA_CPP_BUILD_ROOT, default <repo>/.build-llama.cpp (git-ignored by `.build*/`, never committed).
# Needs cmake (e.g. `python3 -m pip install cmake`), a C++17 compiler and pip (the sdist comes from PyPI).
# Idempotent: downloads and configures once, then `cmake --build` only rebuilds what changed.
# The last line printed is the directory holding the binaries.
#
# Why llama-completion and not llama-cli: in this llama.cpp, llama-cli is a client of the server
# (it links llama-server-impl and the web UI, whose build fetches prebuilt assets from the network);
# llama-completion is the classic command-line generator that llama-cli used to be.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${LLAMA_CPP_BUILD_ROOT:-$REPO/.build-llama.cpp}
JOBS=1
NO_AMX=0
for arg in "$@"; do
    case "$arg" in
        -j[0-9]*) JOBS=${arg#-j} ;;
        --no-amx) NO_AMX=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$arg' (expected -jN or --no-amx)" >&2; exit 2 ;;
    esac
done

TARGETS=(llama-perplexity llama-bench llama-simple llama-completion llama-tokenize llama-server llama-quantize)
SRC_PARENT="$ROOT/src"
SDIST_DIR="$SRC_PARENT/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
LLAMA_SRC="$SDIST_DIR/vendor/llama.cpp"
BUILD="$ROOT/build"
EXTRA_FLAGS=()
if [ "$NO_AMX" = 1 ]; then
    TARGETS=(llama-perplexity llama-bench)
    BUILD="$ROOT/build-no-amx"
    # Explicit -mno-* options win over -march=native's defaults whatever their order (GCC and clang).
    EXTRA_FLAGS=(-DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
        -DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
fi

if ! command -v cmake >/dev/null 2>&1; then
    echo "error: cmake not found; install it (e.g. python3 -m pip install cmake, or apt-get install cmake)" >&2
    exit 1
fi

mkdir -p "$SRC_PARENT"
if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
    SDIST="$SRC_PARENT/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
    if [ ! -f "$SDIST" ]; then
        echo "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist from PyPI" >&2
        # --no-binary for this one package only: pip prepares the sdist's metadata, and `--no-binary :all:`
        # would also build its build requirements (cmake, ninja) from source first.
        python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$SRC_PARENT"
    fi
    tar -xzf "$SDIST" -C "$SRC_PARENT"
fi

# Configure once; again when an older build directory was configured without the server.
if [ ! -f "$BUILD/CMakeCache.txt" ] || ! grep -q '^LLAMA_BUILD_SERVER:BOOL=ON' "$BUILD/CMakeCache.txt"; then
    # LLAMA_CURL is gone from this llama.cpp (downloads now go through LLAMA_OPENSSL); both are off so
    # nothing reaches the network. llama-server (for scripts/bench-serve.sh) is built without its web UI:
    # with LLAMA_BUILD_UI and LLAMA_USE_PREBUILT_UI off it embeds no assets and downloads nothing. No tests,
    # no unified app binary.
    cmake -S "$LLAMA_SRC" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_EXAMPLES=ON \
        -DBUILD_SHARED_LIBS=OFF "${EXTRA_FLAGS[@]}" >&2
fi

nice -n 10 cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2

for t in "${TARGETS[@]}"; do
    if [ ! -x "$BUILD/bin/$t" ]; then
        echo "error: $BUILD/bin/$t was not built; see the cmake output above" >&2
        exit 1
    fi
done

if [ "$NO_AMX" = 1 ]; then
    echo "$BUILD/bin"
    exit 0
fi

# Our tap dumper, linked against the static libraries built above (the same llama.cpp commit). Rebuilt
# when its source or a library is newer than the binary. ggml-cpu uses OpenMP when cmake found it.
DUMP_SRC="$REPO/scripts/taps/llama-dump-taps.cpp"
DUMP_BIN="$BUILD/bin/llama-dump-taps"
LIBS=("$BUILD/src/libllama.a" "$BUILD/ggml/src/libggml.a" "$BUILD/ggml/src/libggml-cpu.a" "$BUILD/ggml/src/libggml-base.a")
for lib in "${LIBS[@]}"; do
    [ -f "$lib" ] || { echo "error: $lib not found (llama.cpp's library layout changed?)" >&2; exit 1; }
done
stale=0
[ -x "$DUMP_BIN" ] || stale=1
for dep in "$DUMP_SRC" "${LIBS[@]}"; do
    if [ "$dep" -nt "$DUMP_BIN" ]; then stale=1; fi
done
if [ "$stale" = 1 ]; then
    OPENMP=()
    if grep -q '^GGML_OPENMP_ENABLED:INTERNAL=ON' "$BUILD/CMakeCache.txt"; then OPENMP=(-fopenmp); fi
    echo "compiling $DUMP_BIN" >&2
    nice -n 10 "${CXX:-g++}" -std=c++17 -O2 -o "$DUMP_BIN" "$DUMP_SRC" \
        -I "$LLAMA_SRC/include" -I "$LLAMA_SRC/ggml/include" \
        "${LIBS[@]}" "${OPENMP[@]}" -pthread -ldl -lm >&2
fi
"$BUILD/bin/llama-completion" --version >&2 2>&1 || true
echo "$BUILD/bin"
