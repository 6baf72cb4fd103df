#!/usr/bin/env bash
# Creates .venv with a CPU build of PyTorch (no multi-GB CUDA download on a CPU-only machine) and
# selfimprove with its test tools and the hf extra (Hugging Face learners). Safe to run again.
#   TORCH_INDEX_URL=<a PyTorch wheel index>  install torch from there (e.g. PyTorch's CPU index)
#   TORCH_SPEC='torch>=2.4,<2.15'            another torch requirement (e.g. a CUDA build on a GPU box)
#   Debian's chromium (for the report's browser test), bubblewrap and the system python3 (the sandbox
#   that runs a model's programs) are installed with apt-get when missing and this runs as root;
#   otherwise a line says how to install them (without them, those tests skip here and fail in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v bwrap >/dev/null || missing+=(bubblewrap)
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        echo "note: ${missing[*]} missing; their tests will be skipped (sudo apt-get install ${missing[*]})"
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
python -m pip install -q -e ".[test,hf]"
