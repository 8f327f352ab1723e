#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server, from PyPI's llama-cpp-python[server]
# (built from source once: about 12 minutes on 2 cores; then kept), for the
# tests of the kernel's remote inference backend.
#
# Usage: scripts/llama-server.sh --install-only
#        scripts/llama-server.sh [llama_cpp.server ARGS...]
#   LLAMA_SERVER_VENV  where it is installed (default ~/.cache/batos/llama-server-venv)
set -euo pipefail

VERSION="0.3.36"
venv="${LLAMA_SERVER_VENV:-$HOME/.cache/batos/llama-server-venv}"

# Tests start several servers at once: one installs, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "$VERSION" ]]; then
    echo "installing llama-cpp-python[server]==$VERSION into $venv (builds llama.cpp) ..." >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/python" -m pip install --quiet \
        --disable-pip-version-check "llama-cpp-python[server]==$VERSION" >&2
    echo "$VERSION" > "$venv/.installed"
fi
flock -u 9
exec 9>&-
if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi
exec "$venv/bin/python" -m llama_cpp.server "$@"
