#!/usr/bin/env bash
# Builds build/DualPubFFI.xcframework (release profile: opt-level z, LTO, stripped) with three
# slices: iOS device (aarch64-apple-ios), iOS simulator (aarch64-apple-ios-sim + x86_64-apple-ios,
# one lipo'd library) and macOS (aarch64-apple-darwin + x86_64-apple-darwin, lipo'd: what
# `swift test` on a Mac links). Then copies the generated Swift bindings and the test vectors into
# the package. Runs on a Mac with Xcode 15.3 or later and the Rust targets:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin
# It has never run on the project's build machine (no Apple toolchain there); CI runs it
# (.github/workflows/mobile.yml).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

# The oldest OS versions the package supports: they must equal Package.swift's platforms
# (.iOS(.v13), .macOS(.v11)). Without them cc-rs compiles SQLite and ring for the SDK's own
# version and the app's link warns that objects were built for a newer OS than it targets.
# (rustc raises aarch64-apple-ios-sim to its floor, 14.0: no arm64 simulator runs anything older.)
export IPHONEOS_DEPLOYMENT_TARGET=13.0
export MACOSX_DEPLOYMENT_TARGET=11.0

# The staticlib alone (`cargo rustc --crate-type staticlib`): `cargo build` would compile it in
# one rustc call with the rlib and cargo runs no LTO on such a call (docs/SIZE.md). From the
# repository root, so .cargo/config.toml (the SQLite options) applies.
rm -rf build && mkdir -p build/headers/DualPubFFI build/lib build/ios-simulator build/macos
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
    (cd "$root" && cargo rustc --release --locked -p dualpub --lib --crate-type staticlib --target "$target")
    # A copy, so that cargo's own output stays as cargo built it.
    mkdir -p "build/lib/$target"
    cp "$root/target/$target/release/libdualpub.a" "build/lib/$target/libdualpub.a"
    # The bundled SQLite's sqlite3_* symbols made local to the library, per target before lipo
    # (ld -r -unexported_symbols_list; localize-sqlite.sh checks the result).
    ./localize-sqlite.sh "build/lib/$target/libdualpub.a"
done

# Header and module map in a directory named after the module (Headers/DualPubFFI/ in each
# slice), not at the root of Headers/: two XCFrameworks that both put a module.modulemap there
# make Xcode fail with "Multiple commands produce .../include/module.modulemap". The module map
# must be called module.modulemap.
cp "$root/bindings/swift/Sources/DualPub/DualPubFFI.h" build/headers/DualPubFFI/DualPubFFI.h
cp "$root/bindings/swift/Sources/DualPub/DualPubFFI.modulemap" build/headers/DualPubFFI/module.modulemap

# One library per platform: the simulator's two architectures together, and the Mac's.
lipo -create build/lib/aarch64-apple-ios-sim/libdualpub.a build/lib/x86_64-apple-ios/libdualpub.a \
    -output build/ios-simulator/libdualpub.a
lipo -create build/lib/aarch64-apple-darwin/libdualpub.a build/lib/x86_64-apple-darwin/libdualpub.a \
    -output build/macos/libdualpub.a
xcodebuild -create-xcframework \
    -library build/lib/aarch64-apple-ios/libdualpub.a -headers build/headers \
    -library build/ios-simulator/libdualpub.a -headers build/headers \
    -library build/macos/libdualpub.a -headers build/headers \
    -output build/DualPubFFI.xcframework

cp "$root/bindings/swift/Sources/DualPub/DualPub.swift" Sources/DualPub/DualPub.swift
cp "$root/tests/vectors/bucketing.json" Tests/DualPubTests/bucketing.json
echo "built ios/build/DualPubFFI.xcframework (iOS, iOS simulator, macOS); test with: cd ios && swift test (macOS) or xcodebuild test (simulator)"
