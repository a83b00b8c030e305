#!/usr/bin/env bash
# Create .venv and install autogaze (editable) with its dev extras. Idempotent: a second run is a no-op
# unless pyproject.toml changed. Pins the CPU torch wheel where this machine has it (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.autogaze-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
# uv ignores pip's config: hand it pip's find-links folder (local wheels such as the CPU torch build).
links=$("$VENV/bin/python" -m pip config list 2>/dev/null | sed -n "s/^global.find-links='\(.*\)'/\1/p" | head -n1)
[ -n "$links" ] && export UV_FIND_LINKS="$links"
torch_spec="torch"
# Without a pin, a fresh resolver pulls the multi-GB CUDA build; a local CPU wheel is pinned when present.
if [ -n "$links" ] && ls "$links"/torch-2.13.0* >/dev/null 2>&1; then torch_spec="torch==2.13.0"; fi
"$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" -q "$torch_spec" -e ".[dev]"
touch "$stamp"
