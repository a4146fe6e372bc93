#!/usr/bin/env bash
# Build .venv with bigrec's pinned stack.
#   BIGREC_VARIANT=cpu  (default)  torch 2.13.0 CPU build + fbgemm-gpu-cpu 1.8.0
#   BIGREC_VARIANT=cuda            torch 2.13.0 CUDA build + fbgemm-gpu 1.8.0
# torch is installed first and then pinned through a constraints file, so no later
# requirement can make pip replace it. torchrec goes in with --no-deps because its
# metadata asks for the CUDA fbgemm-gpu; its real needs are listed explicitly.
set -euo pipefail

VENV=${VENV:-.venv}
VARIANT=${BIGREC_VARIANT:-cpu}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
FBGEMM_VERSION=1.8.0
TORCHREC_VERSION=1.8.0
# PyPI's Linux torch wheels are CUDA builds; TORCH_INDEX_URL picks another CUDA index if wanted.
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
CONSTRAINTS="$VENV/bigrec-constraints.txt"

case "$VARIANT" in
  cpu)
    "${PIP[@]}" "torch==$TORCH_VERSION"
    FBGEMM="fbgemm-gpu-cpu==$FBGEMM_VERSION"
    ;;
  cuda)
    "${PIP[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} --no-cache-dir "torch==$TORCH_VERSION"
    "$VENV/bin/python" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 'install.sh: BIGREC_VARIANT=cuda but the torch that was installed is a CPU build; set TORCH_INDEX_URL to a CUDA wheel index')"
    FBGEMM="fbgemm-gpu==$FBGEMM_VERSION"
    ;;
  *)
    echo "install.sh: BIGREC_VARIANT must be 'cpu' or 'cuda', got '$VARIANT'" >&2
    exit 2
    ;;
esac

# Whatever torch build went in above is the one that stays.
"$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import sys, importlib.metadata as md
open(sys.argv[1], "w").write(f"torch=={md.version('torch')}\n")
PY

"${PIP[@]}" -c "$CONSTRAINTS" "$FBGEMM"
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps "torchrec==$TORCHREC_VERSION"
"${PIP[@]}" -c "$CONSTRAINTS" \
  "torchmetrics==1.0.3" tensordict tqdm pyre-extensions iopath \
  "torchx==0.7.0" pyarrow tensorboard pyyaml numpy matplotlib pytest
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps -e .

"$VENV/bin/python" - <<'PY'
import torch, torchrec, fbgemm_gpu  # noqa: F401  (import check of the whole stack)
print(f"bigrec environment ready: torch {torch.__version__}, torchrec {torchrec.__version__}")
PY
