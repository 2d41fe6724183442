#!/usr/bin/env bash
# One command sets everything up: a virtual environment in .venv with the trainer, the sidecar,
# trainctl, honcho and the test tools. Usage: ./setup.sh   (PYTHON=python3.11 ./setup.sh to choose)
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all]"
echo "ready: .venv (activate with: source .venv/bin/activate)"
