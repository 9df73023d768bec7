#!/usr/bin/env bash
# Builds build/DualPubFFI.xcframework (device + simulator slices, release profile: opt-level z,
# LTO, stripped) and copies the generated Swift bindings and the test vectors into the package.
# Runs on a Mac with Xcode and the Rust targets:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

# The staticlib alone (`cargo rustc --crate-type staticlib`): `cargo build` would compile it in
# one rustc call with the rlib and cargo runs no LTO on such a call (docs/SIZE.md). From the
# repository root, so .cargo/config.toml (the SQLite options) applies.
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
    (cd "$root" && cargo rustc --release --locked -p dualpub --lib --crate-type staticlib --target "$target")
done

rm -rf build && mkdir -p build/headers build/sim
cp "$root/bindings/swift/Sources/DualPub/DualPubFFI.h" build/headers/
# The module map must be called module.modulemap inside an XCFramework's headers.
cp "$root/bindings/swift/Sources/DualPub/DualPubFFI.modulemap" build/headers/module.modulemap
lipo -create \
    "$root/target/aarch64-apple-ios-sim/release/libdualpub.a" \
    "$root/target/x86_64-apple-ios/release/libdualpub.a" \
    -output build/sim/libdualpub.a
xcodebuild -create-xcframework \
    -library "$root/target/aarch64-apple-ios/release/libdualpub.a" -headers build/headers \
    -library build/sim/libdualpub.a -headers build/headers \
    -output build/DualPubFFI.xcframework

cp "$root/bindings/swift/Sources/DualPub/DualPub.swift" Sources/DualPub/DualPub.swift
cp "$root/tests/vectors/bucketing.json" Tests/DualPubTests/bucketing.json
echo "built ios/build/DualPubFFI.xcframework; run the tests with: swift test (macOS) or xcodebuild test"
