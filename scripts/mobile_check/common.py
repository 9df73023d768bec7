"""Guards for what both platforms share: the ignore rules for build output and the CI workflow
that builds both (.github/workflows/mobile.yml)."""

from pathlib import Path

# Build output and copies that must never be committed (a stale copy of generated code or a
# local SDK path in git breaks the next person's first build).
IGNORED = [
    "ios/build/",
    "ios/.build/",
    "ios/.swiftpm/",
    "android/build/",
    "android/.gradle/",
    "android/.kotlin/",
    "android/sample/.gradle/",
    "android/sample/app/build/",
    "local.properties",
    "*.xcframework.zip",
    # Copies ios/build-xcframework.sh makes from bindings/ and tests/vectors/.
    "ios/Sources/DualPub/DualPub.swift",
    "ios/Tests/DualPubTests/bucketing.json",
]


def gitignore(root: Path):
    lines = {line.strip() for line in (root / ".gitignore").read_text().splitlines()}
    missing = [entry for entry in IGNORED if entry not in lines]
    if missing:
        return f".gitignore lacks {', '.join(missing)}: build output or local SDK paths could be committed"
    return None


WORKFLOW = ".github/workflows/mobile.yml"

# What the workflow must keep doing, each as a text it must contain.
WORKFLOW_STEPS = {
    "an Android job on Linux": "runs-on: ubuntu-",
    "the AAR built with Gradle": "./gradlew --no-daemon assembleRelease",
    "cargo-ndk installed at the pinned version": 'cargo install cargo-ndk --version "$CARGO_NDK_VERSION"',
    "the 16 KB alignment check of every 64-bit .so": '$NF != "0x4000"',
    "the R8-minified sample app": ":app:assembleRelease",
    "the emulator (a maintained action)": "reactivecircus/android-emulator-runner@",
    "the minified app launched and the instrumented tests run": "android/sample/run-on-emulator.sh",
    "an iOS job on macOS": "runs-on: macos-",
    "the XCFramework built": "ios/build-xcframework.sh",
    "the exported symbols checked": "ios/check-symbols.sh",
    "the XCTest suite's backends (mosquitto, the Pub/Sub emulator)": "dualpub emulator --port 8085",
    "the XCTest suite on an iOS simulator": "xcodebuild test",
}


def workflow(root: Path):
    path = root / WORKFLOW
    if not path.exists():
        return f"{WORKFLOW} is missing: nothing builds the Android and iOS packages"
    text = path.read_text()
    missing = [what for what, needle in WORKFLOW_STEPS.items() if needle not in text]
    if missing:
        return f"{WORKFLOW} no longer has {'; '.join(missing)}"
    for script in ("android/sample/run-on-emulator.sh", "ios/build-xcframework.sh", "ios/check-symbols.sh"):
        if not (root / script).exists():
            return f"{WORKFLOW} runs {script}, which does not exist"
    return None


CHECKS = [
    (15, ".gitignore keeps build output and local paths out of git", gitignore),
    (17, "the CI workflow builds the AAR, checks alignment, runs the R8 app and the emulator tests, builds the XCFramework and runs XCTest", workflow),
]
