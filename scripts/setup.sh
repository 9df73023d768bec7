# Installs what the test suite needs when it is missing (sourced by scripts/test).
# Debian packages need root (or sudo); everything else is cached under target/.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

ensure_debian_packages() {
    local missing=()
    [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    # A second real MQTT broker (an Erlang one) for the broker-restart tests.
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
    command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
    command -v npm >/dev/null || missing+=(npm)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    [ -x /usr/bin/chromium ] || missing+=(chromium)   # the HTML report's browser check (headless)
    command -v shellcheck >/dev/null || missing+=(shellcheck)   # actionlint checks the workflow's run: scripts with it
    command -v llvm-nm >/dev/null || missing+=(llvm)   # mobile-check reads the static library's bitcode symbols
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# rustfmt and clippy come with the Rust toolchain's default profile; add them if a minimal
# install left them out.
ensure_rust_components() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> adding Rust components: ${missing[*]}"
        rustup component add "${missing[@]}" || { echo "cannot install ${missing[*]}: the fmt and lint gates need them" >&2; return 1; }
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

# The Kotlin compiler (npm package kotlin-compiler: the full JVM compiler) and the JVM jars
# (JNA; kotlinx-coroutines, which the generated bindings' suspend functions need; the JUnit
# console launcher) from Maven Central, cached under target/tools. Keep COROUTINES_VERSION in
# step with android/build.gradle.kts.
KOTLIN_VERSION=2.4.20
JNA_VERSION=5.18.1
COROUTINES_VERSION=1.11.0
JUNIT_CONSOLE_VERSION=1.13.4
ensure_kotlin_toolchain() {
    local tools=target/tools
    if [ ! -x "$tools/node_modules/kotlin-compiler/bin/kotlinc" ]; then
        echo "==> installing the Kotlin compiler $KOTLIN_VERSION (npm)"
        mkdir -p "$tools"
        npm install --prefix "$tools" --no-audit --no-fund --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
    fi
    local jars="$tools/jars"
    for artifact in "net.java.dev.jna:jna:$JNA_VERSION" "org.jetbrains.kotlinx:kotlinx-coroutines-core-jvm:$COROUTINES_VERSION" \
        "org.junit.platform:junit-platform-console-standalone:$JUNIT_CONSOLE_VERSION"; do
        local name
        name="$(echo "$artifact" | cut -d: -f2)-$(echo "$artifact" | cut -d: -f3).jar"
        if [ ! -f "$jars/$name" ]; then
            echo "==> fetching $artifact (Maven Central)"
            mkdir -p "$jars"
            mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy -Dartifact="$artifact" -DoutputDirectory="$jars" >/dev/null
        fi
    done
    KOTLINC="$tools/node_modules/kotlin-compiler/bin/kotlinc"
    KOTLIN_STDLIB="$tools/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar"
    # The bindings' runtime: JNA and kotlinx-coroutines (what an app's Gradle build pulls in).
    JNA_JAR="$jars/jna-$JNA_VERSION.jar:$jars/kotlinx-coroutines-core-jvm-$COROUTINES_VERSION.jar"
    JUNIT_JAR="$jars/junit-platform-console-standalone-$JUNIT_CONSOLE_VERSION.jar"
}

# playwright-core (npm: the Playwright library without a browser download) for the HTML
# report's browser check, which drives Debian's chromium; cached under target/tools/browser.
PLAYWRIGHT_CORE_VERSION=1.65.1
ensure_browser_check_tools() {
    local dir=target/tools/browser
    local installed
    installed=$(node -p "require('./$dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
    if [ "$installed" != "$PLAYWRIGHT_CORE_VERSION" ]; then
        echo "==> installing playwright-core $PLAYWRIGHT_CORE_VERSION (npm) into $dir"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent --save-exact "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
    fi
}

# Go tools built once through the Go module proxy into a directory under target/tools, with the
# version recorded beside them: go_tool NAME DIR MODULE VERSION (a no-op when that version is
# there). Needs Go >= 1.22 (the build machine has one under /usr/local/go; Debian's golang-go is
# too old).
go_tool() {
    local name=$1 dir=$2 module=$3 version=$4
    if [ -x "$dir/$(basename "$module")" ] && [ "$(cat "$dir/.$name-version" 2>/dev/null)" = "$version" ]; then
        return
    fi
    local go
    go=$(command -v go || echo /usr/local/go/bin/go)
    if [ ! -x "$go" ]; then
        echo "$name needs Go (>= 1.22) to build; none found" >&2
        return 1
    fi
    echo "==> building $name $version (Go module proxy) into $dir"
    mkdir -p "$dir"
    GOBIN="$PWD/$dir" GOFLAGS=-mod=mod "$go" install "$module@$version"
    echo "$version" > "$dir/.$name-version"
}

# Prometheus's promtool (`promtool test rules`) for the SLO alert rules in tools/rollup/alerts/.
ensure_promtool() {
    go_tool promtool target/tools/bin github.com/prometheus/prometheus/cmd/promtool v0.316.0
}

# Toxiproxy (Shopify's TCP fault proxy; its binary is named `server`) for the field-links suite
# (tests/field_links.rs, scripts/network, docs/NETWORK.md).
ensure_toxiproxy() {
    go_tool toxiproxy target/tools/toxiproxy github.com/Shopify/toxiproxy/v2/cmd/server v2.12.0
}

# actionlint for scripts/mobile-check, which lints .github/workflows/mobile.yml with it.
ensure_actionlint() {
    go_tool actionlint target/tools/bin github.com/rhysd/actionlint/cmd/actionlint v1.7.12
}
