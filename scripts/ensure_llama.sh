#!/usr/bin/env bash
# Install llama-cpp-python[server] into the venv of the given Python, from a cached wheel.
#
#   scripts/ensure_llama.sh .venv/bin/python
#
# llama-cpp-python ships only as source and takes ~10 minutes to compile on 2 cores, so the
# wheel is built once and kept in ${GEMMA_MONITOR_WHEEL_CACHE:-~/.cache/gemma-monitor/wheels}.
# The build is portable (GGML_NATIVE=OFF): a native build can pick CPU features the machine
# advertises but cannot run (AMX) and die with SIGILL. After installing, a tiny import proves
# the library loads and initialises; a cached wheel that fails it is thrown away and rebuilt.
#
# Idempotent: when the right version is installed and loads, it returns in about a second.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 <venv-python>" >&2
    exit 2
fi
PY=$1
VERSION=${GEMMA_MONITOR_LLAMA_VERSION:-0.3.36}
CACHE=${GEMMA_MONITOR_WHEEL_CACHE:-$HOME/.cache/gemma-monitor/wheels}
export CMAKE_ARGS=${GEMMA_MONITOR_LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

log() { echo "ensure_llama: $*" >&2; }

# Loads the shared library and initialises the backend in a child process, so that a SIGILL
# shows as an exit status instead of killing this script.
runs() {
    "$PY" - "$VERSION" <<'EOF' >/dev/null 2>&1
import sys
import llama_cpp
import llama_cpp.server.app  # the [server] extra is there too
assert llama_cpp.__version__ == sys.argv[1], llama_cpp.__version__
llama_cpp.llama_backend_init()
llama_cpp.llama_print_system_info()
EOF
}

if runs; then
    exit 0
fi

mkdir -p "$CACHE"

cached_wheel() {
    # The wheel is tagged py3-none-<platform> (the library is loaded through ctypes), so one
    # build serves every Python version on this architecture.
    compgen -G "$CACHE/llama_cpp_python-$VERSION-*-linux_$(uname -m).whl" | head -n 1 || true
}

build_wheel() {
    # One build at a time per cache, even when two scripts start together.
    exec 9>"$CACHE/.build.lock"
    flock 9
    if [[ -n "$(cached_wheel)" ]]; then
        flock -u 9
        return 0
    fi
    local tmp buildlog start
    tmp=$(mktemp -d)
    buildlog="$CACHE/build-$VERSION.log"
    start=$SECONDS
    log "building llama-cpp-python==$VERSION (about 10 minutes on 2 cores; log: $buildlog)"
    # --no-cache-dir: pip's own wheel cache may hold a native (SIGILL-prone) build.
    if ! "$PY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$tmp" "llama-cpp-python==$VERSION" >"$buildlog" 2>&1; then
        tail -n 40 "$buildlog" >&2
        log "build failed; full log: $buildlog"
        rm -rf "$tmp"
        exit 1
    fi
    mv "$tmp"/llama_cpp_python-*.whl "$CACHE/"
    rm -rf "$tmp"
    log "built in $((SECONDS - start)) s"
    flock -u 9
}

install_wheel() {
    local wheel
    wheel=$(cached_wheel)
    log "installing $(basename "$wheel")"
    "$PY" -m pip install -q --force-reinstall --no-deps "$wheel"
    "$PY" -m pip install -q "$wheel[server]"
}

if [[ -z "$(cached_wheel)" ]]; then
    build_wheel
fi
install_wheel
if runs; then
    exit 0
fi

log "the cached wheel does not load on this machine; rebuilding it"
rm -f "$(cached_wheel)"
build_wheel
install_wheel
if ! runs; then
    log "llama-cpp-python $VERSION is installed but does not load; try:"
    log "  $PY -c 'import llama_cpp; llama_cpp.llama_backend_init()'"
    exit 1
fi
