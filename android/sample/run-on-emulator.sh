#!/usr/bin/env bash
# On a running emulator (CI: .github/workflows/mobile.yml): installs the R8-minified release
# build of the sample app, launches it and waits for its `DUALPUB_SAMPLE_OK` log line (the first
# call through JNA in a minified app), then runs the instrumented tests. From the repository root,
# after `./gradlew -p sample :app:assembleRelease` in android/.
set -euo pipefail
apk=android/sample/app/build/outputs/apk/release/app-release.apk
adb wait-for-device
adb install -r "$apk"
adb logcat -c
adb shell am start -W -n io.dualpub.sample/.MainActivity
for _ in $(seq 1 60); do
    line=$(adb logcat -d -s dualpub-sample:I | grep -E 'DUALPUB_SAMPLE_(OK|FAILED)' || true)
    if [ -n "$line" ]; then
        echo "$line"
        case "$line" in *DUALPUB_SAMPLE_OK*) break ;; *) adb logcat -d | tail -100; exit 1 ;; esac
    fi
    sleep 1
done
[ -n "${line:-}" ] || { echo "the minified sample app logged nothing within 60 s" >&2; adb logcat -d | tail -200; exit 1; }
adb uninstall io.dualpub.sample
cd android && ./gradlew --no-daemon -p sample :app:connectedDebugAndroidTest
