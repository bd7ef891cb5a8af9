#!/usr/bin/env bash
# Install a pinned Label Studio in its own venv under .ls/ and prepare a migrated template data folder, so
# the test session (tests/ls_server.py) can start a server on loopback in seconds instead of a minute.
#
#   scripts/labelstudio.sh install    # .ls/venv with label-studio==$LS_VERSION (skipped when already there)
#   scripts/labelstudio.sh template   # .ls/template: `label-studio init` once (skipped when already there)
#   scripts/labelstudio.sh all        # both (what `make test` runs)
#
# Label Studio pins Django, numpy, pytz...: it must never share prelabel's venv. Nothing here starts a server
# that listens (the template is made with `label-studio init`, which migrates the database and exits).
set -euo pipefail

LS_VERSION="${LS_VERSION:-1.23.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)/.ls"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/venv"
STAMP="$VENV/.installed-label-studio-$LS_VERSION"

install() {
  mkdir -p "$ROOT"
  exec 9>"$ROOT/install.lock"
  flock 9  # two installs at once (make test's two pytest workers, two sessions): one installs, the other waits
  if [[ -f "$STAMP" && -x "$VENV/bin/label-studio" ]]; then
    return 0
  fi
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check uv
  "$VENV/bin/uv" pip install -q --compile-bytecode -p "$VENV/bin/python" "label-studio==$LS_VERSION"
  touch "$STAMP"
}

template() {
  install
  "$VENV/bin/python" "$(dirname "$0")/../tests/ls_server.py" template
}

case "${1:-all}" in
  install) install ;;
  template) template ;;
  all) install; template ;;
  *) echo "usage: $0 [install|template|all]" >&2; exit 2 ;;
esac
