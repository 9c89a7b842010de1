#!/usr/bin/env bash
# Set up .venv (only what is missing) and run the main job or the tests.
#   ./dev.sh run [ARGS...]   the seed study (passes ARGS to `cnnlab run seed`)
#   ./dev.sh test [ARGS...]  ruff, then pytest (passes ARGS to pytest)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
# torch first and pinned: that CPU build lies on disk here, while an unpinned torch pulls
# gigabytes of CUDA packages. The package itself only asks for torch>=2.4.
TORCH_PIN=${CNNLAB_TORCH_PIN:-torch==2.13.0}

setup() {
    local stamp="$VENV/.cnnlab-installed"
    local want
    want="$(cat pyproject.toml | sha256sum | cut -c1-16) $TORCH_PIN"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "dev.sh: $VENV is up to date, skipping install"
        return
    fi
    echo "dev.sh: installing into $VENV ..."
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_PIN"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$want" > "$stamp"
}

# Our machines have no internet but carry MNIST beside the repo; real users download it.
if [[ -z "${CNNLAB_DATA_DIR:-}" && -d ../shared/data/mnist ]]; then
    export CNNLAB_DATA_DIR="$(cd ../shared/data/mnist && pwd)"
fi

cmd=${1:-}
shift || true
case "$cmd" in
    run)
        setup
        exec "$VENV/bin/cnnlab" run seed "$@"
        ;;
    test)
        setup
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh run|test [ARGS...]" >&2
        exit 2
        ;;
esac
