# Installs what the test suite needs when it is missing (sourced by scripts/test).
# Debian packages need root (or sudo); everything else is cached under target/.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

ensure_debian_packages() {
    local missing=()
    [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# A virtualenv under target/ with the pinned Python clients; rebuilt when requirements change.
ensure_python_env() {
    local env=target/pyenv req=tests/python/requirements.txt
    local stamp="$env/.requirements.sha256"
    local want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$env/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "==> installing Python test clients into $env"
        rm -rf "$env"
        python3 -m venv "$env"
        "$env/bin/pip" install -q --disable-pip-version-check -r "$req"
        echo "$want" > "$stamp"
    fi
}
