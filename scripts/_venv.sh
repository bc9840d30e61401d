# Sourced by scripts/serve and scripts/test: create .venv and install the project into it.
# Idempotent: it reinstalls only when pyproject.toml changed or a new extra is asked for.
ensure_venv() {
    local extra="$1" digest stamp spec="."
    [ -n "$extra" ] && spec=".[$extra]"
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    digest=$(sha256sum pyproject.toml | cut -c1-16)
    stamp=".venv/.installed-$digest-${extra:-base}"
    # A dev install also satisfies a plain one.
    if [ -e "$stamp" ] || { [ -z "$extra" ] && [ -e ".venv/.installed-$digest-dev" ]; }; then
        return 0
    fi
    echo "Installing Jetstack Gateway${extra:+ with [$extra]} into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
    rm -f .venv/.installed-*
    touch "$stamp"
}
