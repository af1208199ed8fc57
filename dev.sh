#!/usr/bin/env bash
# Set up a virtualenv in .venv (once) and run the demo or the checks.
#   ./dev.sh demo   install apx and run `apx demo` (SQLite + a local git repo)
#   ./dev.sh test   install apx with test tools; ruff, mypy, import contracts, pytest
#                   (./dev.sh test ARGS… runs pytest ARGS… instead of the whole suite)
# VENV=/path overrides where the virtualenv lives.
set -euo pipefail
cd "$(dirname "$0")"
venv="${VENV:-.venv}"
py="${PYTHON:-python3}"

setup() {
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$1"
}

case "${1:-}" in
  demo)
    setup .
    exec "$venv/bin/apx" demo --home "${APX_DEMO_HOME:-.apx-demo}"
    ;;
  test)
    setup '.[test]'
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    "$venv/bin/mypy"
    "$venv/bin/lint-imports"
    shift
    if [ "$#" -gt 0 ]; then
      exec "$venv/bin/python" -m pytest "$@"
    fi
    # Unit, integration and browser tests share the two cores (pytest-xdist, a test file per
    # worker at a time); the acceptance tests drive real processes and kill them on a timer,
    # so they run alone after them.
    "$venv/bin/python" -m pytest -n 2 --dist loadfile tests/unit tests/integration tests/browser
    exec "$venv/bin/python" -m pytest tests/acceptance
    ;;
  *)
    echo "usage: ./dev.sh demo | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
