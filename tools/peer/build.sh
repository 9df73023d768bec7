#!/usr/bin/env bash
# Builds the seed design's peer (tools/peer: measured by the radio harness, docs/RADIO.md, and
# nothing else) into target/peer/peer.jar with kotlinc, and prints the class path to run it.
# The Kotlin compiler and the Paho jar are fetched once (npm, Maven Central) and cached under
# target/tools, as scripts/setup.sh does for the Kotlin suite; later builds work offline, and
# the jar is rebuilt only when the source changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
ensure_kotlin_toolchain >&2
PAHO_VERSION=1.2.5
paho="target/tools/jars/org.eclipse.paho.client.mqttv3-$PAHO_VERSION.jar"
if [ ! -f "$paho" ]; then
    echo "==> fetching org.eclipse.paho:org.eclipse.paho.client.mqttv3:$PAHO_VERSION (Maven Central)" >&2
    mkdir -p target/tools/jars
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="org.eclipse.paho:org.eclipse.paho.client.mqttv3:$PAHO_VERSION" -DoutputDirectory=target/tools/jars >&2
fi
out=target/peer
jar="$out/peer.jar"
stamp="$out/peer.sha256"
want=$( (cat tools/peer/src/io/dualpub/peer/*.kt; echo "$KOTLIN_VERSION $PAHO_VERSION") | sha256sum | cut -d' ' -f1)
if [ ! -f "$jar" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> kotlinc tools/peer" >&2
    mkdir -p "$out"
    rm -f "$jar"
    "$KOTLINC" -nowarn -jvm-target 17 -cp "$paho" -d "$jar" tools/peer/src 2>&1 | grep -v '^warning:' >&2 || true
    [ -f "$jar" ] || { echo "tools/peer: compilation failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
echo "$PWD/$jar:$PWD/$KOTLIN_STDLIB:$PWD/$paho"
