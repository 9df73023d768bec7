#!/usr/bin/env bash
# Checks every static library in ios/build/DualPubFFI.xcframework (after ios/build-xcframework.sh,
# on macOS): each exports every function DualPubFFI.h declares, and no `sqlite3_*` symbol (the
# bundled SQLite is made local to the library, ios/README.md). The same check of the header
# against the Linux build runs in ./scripts/test (scripts/swift-check).
set -euo pipefail
cd "$(dirname "$0")"
# Defined external symbols; Apple's nm spells it -gU (NM_DEFINED="nm -g --defined-only" with GNU nm).
read -r -a nm_defined <<< "${NM_DEFINED:-nm -gU}"
xcframework=build/DualPubFFI.xcframework
header=$(find "$xcframework" -name DualPubFFI.h | head -n 1)
[ -n "$header" ] || { echo "no DualPubFFI.h in $xcframework: run ios/build-xcframework.sh first" >&2; exit 1; }
declared=$(grep -oE '\b(uniffi|ffi_dualpub)_[A-Za-z0-9_]+[[:space:]]*\(' "$header" | tr -d '( ' | sort -u)
status=0
while IFS= read -r lib; do
    if ! exported=$("${nm_defined[@]}" "$lib" 2>/dev/null | awk 'NF >= 3 {print $NF}' | sed 's/^_//' | sort -u); then
        echo "$lib: ${nm_defined[*]} failed" >&2
        status=1
        continue
    fi
    missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
    sqlite=$(echo "$exported" | grep -c '^sqlite3_' || true)
    if [ -n "$missing" ]; then
        echo "$lib: does not export $(echo "$missing" | wc -l | tr -d ' ') declared function(s), e.g. $(echo "$missing" | head -n 3 | tr '\n' ' ')" >&2
        status=1
    fi
    if [ "$sqlite" -gt 0 ]; then
        echo "$lib: exports $sqlite sqlite3_* symbol(s): an app that also links the system SQLite may bind to the wrong copy" >&2
        status=1
    fi
    [ "$status" -ne 0 ] || echo "$lib: $(echo "$declared" | wc -l | tr -d ' ') declared functions exported, no sqlite3_*"
done < <(find "$xcframework" -name '*.a')
exit "$status"
