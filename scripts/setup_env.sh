#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with the pinned requirements.
#   bash scripts/setup_env.sh        runtime: requirements.txt + this package (editable)
#   bash scripts/setup_env.sh dev    also the test requirements (requirements-dev.txt)
# Idempotent: pip runs only when the requirement files changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
req=requirements.txt
[ "${1:-}" = dev ] && req=requirements-dev.txt
py=${PYTHON:-python3}

if ! "$py" -c 'import sys; assert sys.version_info[:2] >= (3, 11)' 2>/dev/null; then
    echo "setup_env: need Python >= 3.11 as '$py' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv 2>/dev/null; then
        # Debian ships venv/ensurepip separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv && "$py" -m venv .venv
        else
            echo "setup_env: '$py -m venv' failed; install python3-venv (Debian) and rerun" >&2
            exit 1
        fi
    fi
fi
stamp=.venv/.installed-$(cat requirements.txt "$req" pyproject.toml | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req" -e . 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, snakemake, latent_abstractions" \
        || { echo "setup_env: the environment does not import; see pip's output above" >&2; exit 1; }
    touch "$stamp"
fi
echo "setup_env: .venv ready ($req; torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
