#!/usr/bin/env bash
# Install what tests/e2e/test_browser.py needs: Debian's Chromium, JupyterLab and the
# Playwright Python package (which drives /usr/bin/chromium; never `playwright install`,
# it downloads a browser build of its own and fails on machines without a network).
#
# Usage: bash scripts/install-e2e.sh      (idempotent; about 30 s on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium
fi

PY="${PYTHON:-python}"
"$PY" -m pip install -q "jupyterlab>=4" "playwright>=1.40" "ipywidgets>=8,<9" "ipykernel>=7.1"

/usr/bin/chromium --version 2>/dev/null | grep -v "unexpected operator" || true
"$PY" -c "import jupyterlab, playwright; print('jupyterlab', jupyterlab.__version__)"
