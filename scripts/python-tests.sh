#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests) against a batos
# binary, as a user would meet the client: installed with pip from
# clients/python into a virtual environment, its pinned test requirements
# from PyPI.
#
# Usage: scripts/python-tests.sh [PYTEST ARGS...]
#   BATOS_BIN   the kernel binary (default: $CARGO_TARGET_DIR/release/batos)
#   BATOS_VENV  the virtual environment (default: ~/.cache/batos/venv), made
#               once and kept; remade when requirements-test.txt changes.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
client="$repo_root/clients/python"
venv="${BATOS_VENV:-$HOME/.cache/batos/venv}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/batos/target}"
export BATOS_BIN="${BATOS_BIN:-$target/release/batos}"

stamp="$(sha256sum "$client/requirements-test.txt" | cut -d' ' -f1)"
if [[ "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]]; then
    echo "making $venv ..." >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$client/requirements-test.txt" >&2
    echo "$stamp" > "$venv/.requirements"
fi
# The package itself, fresh each run (not editable: what `pip install` gives a user).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$client" >&2
cd "$client"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
