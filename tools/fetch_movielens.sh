#!/usr/bin/env bash
# Fetch the MovieLens-100k atomic files (RecBole layout: ml-100k.inter, .user, .item).
#
# They ship inside the recbole 1.2.1 wheel on PyPI; only
# recbole/dataset_example/ml-100k/* is extracted, nothing else of recbole is used.
#
# Usage: tools/fetch_movielens.sh [TARGET_DIR]   (default: data/raw/ml-100k)
# Idempotent: does nothing when the three files are already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${1:-data/raw/ml-100k}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
FILES=(ml-100k.inter ml-100k.user ml-100k.item)

have_all=1
for f in "${FILES[@]}"; do
    [ -s "$TARGET/$f" ] || have_all=0
done
if [ "$have_all" = 1 ]; then
    echo "MovieLens-100k already in $TARGET"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m pip download --quiet --no-deps recbole==1.2.1 -d "$TMP"
WHEEL="$(ls "$TMP"/recbole-1.2.1-*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$WHEEL" ]; then
    echo "error: pip did not download a recbole 1.2.1 wheel" >&2
    exit 1
fi

mkdir -p "$TARGET"
# A wheel is a zip file; use Python's zipfile so no unzip binary is needed.
"$PYTHON" - "$WHEEL" "$TARGET" <<'PY'
import os, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
prefix = "recbole/dataset_example/ml-100k/"
found = 0
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(target, os.path.basename(name))
            with zf.open(name) as src, open(dest + ".part", "wb") as out:
                out.write(src.read())
            os.replace(dest + ".part", dest)
            found += 1
if not found:
    sys.exit(f"error: {wheel} has no {prefix} files")
print(f"extracted {found} files to {target}")
PY

for f in "${FILES[@]}"; do
    if [ ! -s "$TARGET/$f" ]; then
        echo "error: $TARGET/$f missing after extraction" >&2
        exit 1
    fi
done
