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
# dev: pytest, hypothesis, ruff; ray: the distributed executor, tested on a local Ray instance;
# onnx, pandas, tensorboard, mlflow: the exports of trained runs, results and logs (optional for
# users, tested here).
EXTRAS=dev,ray,onnx,pandas,tensorboard,mlflow

setup() {
    local stamp="$VENV/.cnnlab-installed"
    local want
    want="$(sha256sum < pyproject.toml | cut -c1-16) $TORCH_PIN [$EXTRAS]"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "dev.sh: $VENV is up to date, skipping install"
        return
    fi
    echo "dev.sh: installing into $VENV ..."
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_PIN"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
}

# The report test opens the HTML report in a real headless browser: Debian's chromium, never a
# downloaded one. Installed once when missing and apt-get is usable; otherwise that test skips.
ensure_chromium() {
    command -v chromium >/dev/null && return
    local sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo -n"
    echo "dev.sh: installing Debian's chromium for the report's browser test ..."
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null 2>&1; } \
        || echo "dev.sh: could not install chromium; the browser test will be skipped" >&2
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
        ensure_chromium
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh run|test [ARGS...]" >&2
        exit 2
        ;;
esac
