# Creates .venv and installs the project when pyproject.toml changed since the last install.
ensure_venv() {
    local extras="$1"
    local py="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        echo "sluice: creating .venv with $($py --version)" >&2
        "$py" -m venv .venv
    fi
    local stamp=".venv/.sluice-installed${extras}"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "sluice: installing dependencies${extras:+ (with $extras)}" >&2
        .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
        .venv/bin/python -m pip install --quiet -e ".${extras}"
        echo "$want" > "$stamp"
    fi
}
