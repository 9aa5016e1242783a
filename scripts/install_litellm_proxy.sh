#!/usr/bin/env bash
# Installs the real LiteLLM proxy into its own venv (.venv-litellm) so its pins never clash with ours.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

LITELLM_VERSION="${LITELLM_VERSION:-1.108.7}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LITELLM_VENV:-$ROOT/.venv-litellm}"
PYTHON="${PYTHON:-python3.11}"

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true
}

if [[ -x "$VENV/bin/litellm" && "$(installed_version)" == "$LITELLM_VERSION" ]]; then
    echo "litellm $LITELLM_VERSION already installed in $VENV"
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION"
echo "installed litellm $(installed_version) in $VENV"
"$VENV/bin/litellm" --version >/dev/null 2>&1 || true
