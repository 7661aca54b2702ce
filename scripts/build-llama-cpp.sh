#!/usr/bin/env bash
# Builds llama.cpp's reference tools (llama-perplexity, llama-bench, llama-simple, llama-completion,
# llama-tokenize) from the llama.cpp vendored in the llama-cpp-python sdist that the fixture scripts pin,
# so the binaries and the Python bindings are the same llama.cpp commit.
#
#   scripts/build-llama-cpp.sh [-jN]      # default -j1 (the machine has 2 cores shared with Swift builds)
#
# Output goes outside the repository (never committed): $LLAMA_CPP_BUILD_ROOT, default /work/llama.cpp-build.
# Idempotent: downloads and configures once, then `cmake --build` only rebuilds what changed.
# The last line printed is the directory holding the binaries.
#
# Why llama-completion and not llama-cli: in this llama.cpp, llama-cli is a client of the server
# (it links llama-server-impl and the web UI, whose build fetches prebuilt assets from the network);
# llama-completion is the classic command-line generator that llama-cli used to be.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
ROOT=${LLAMA_CPP_BUILD_ROOT:-/work/llama.cpp-build}
JOBS=1
for arg in "$@"; do
    case "$arg" in
        -j[0-9]*) JOBS=${arg#-j} ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$arg' (expected -jN)" >&2; exit 2 ;;
    esac
done

TARGETS=(llama-perplexity llama-bench llama-simple llama-completion llama-tokenize)
SRC_PARENT="$ROOT/src"
SDIST_DIR="$SRC_PARENT/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
LLAMA_SRC="$SDIST_DIR/vendor/llama.cpp"
BUILD="$ROOT/build"

mkdir -p "$SRC_PARENT"
if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
    echo "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist from PyPI" >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$SRC_PARENT"
    tar -xzf "$SRC_PARENT/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$SRC_PARENT"
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    # LLAMA_CURL is gone from this llama.cpp (downloads now go through LLAMA_OPENSSL); both are off so
    # nothing reaches the network. No tests, no server, no web UI, no unified app binary.
    cmake -S "$LLAMA_SRC" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_EXAMPLES=ON \
        -DBUILD_SHARED_LIBS=OFF >&2
fi

nice -n 10 cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2

for t in "${TARGETS[@]}"; do
    if [ ! -x "$BUILD/bin/$t" ]; then
        echo "error: $BUILD/bin/$t was not built; see the cmake output above" >&2
        exit 1
    fi
done
"$BUILD/bin/llama-completion" --version >&2 2>&1 || true
echo "$BUILD/bin"
