# Sourced by run.sh and test.sh: make .venv hold the project with the given extras.
#
#   setup_venv postgres,local-backend
#
# llama-cpp-python comes first, from scripts/ensure_llama.sh (a cached wheel, built once), so
# the editable install below finds it satisfied and pip never compiles it. Everything is
# skipped while a stamp matches pyproject.toml, the extras and this set-up.
# Needs: ROOT (the repository root). Uses $PYTHON (default python3) to create the venv.

setup_venv() {
    local extras=$1
    local venv="$ROOT/.venv"
    local stamp="$venv/.gemma-monitor-setup-${extras//,/-}"
    local want
    want=$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_venv.sh" "$ROOT/scripts/ensure_llama.sh" \
        | sha256sum | cut -d' ' -f1)
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "setting up $venv" >&2
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    if [[ ",$extras," == *,local-backend,* ]]; then
        bash "$ROOT/scripts/ensure_llama.sh" "$venv/bin/python"
    fi
    echo "installing gemma-monitor[$extras] into $venv" >&2
    (cd "$ROOT" && "$venv/bin/python" -m pip install -q -e ".[$extras]")
    echo "$want" >"$stamp"
}
