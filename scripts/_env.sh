# Sourced by the other scripts: create .venv if needed and install seqdeploy with its cpu, export and dev
# extras (dev includes tritonclient, which the package tests need). Re-installs only when pyproject.toml
# changed (a stamp in .venv records its hash).
# torch is pinned to 2.13.x and installed first: an unpinned torch makes pip pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.seqdeploy-install-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing seqdeploy[cpu,export,dev] into .venv" >&2
    python -m pip install -q --upgrade pip
    python -m pip install -q "torch==2.13.*"
    python -m pip install -q -e ".[cpu,export,dev]"
    echo "$want" > "$stamp"
fi
