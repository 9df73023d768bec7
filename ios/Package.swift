// swift-tools-version:5.10
// dualpub for iOS (and macOS), for local development: the Rust core as an XCFramework (binary
// target DualPubFFI, built by build-xcframework.sh into build/), the generated Swift bindings and
// the Swift helpers. Swift 5.10: the generated bindings use `nonisolated(unsafe)`. The package an
// app adds by URL is written by release.sh (see README.md).
import PackageDescription

let package = Package(
    name: "DualPub",
    // build-xcframework.sh builds for these minimums (IPHONEOS_DEPLOYMENT_TARGET,
    // MACOSX_DEPLOYMENT_TARGET): change both together.
    platforms: [.iOS(.v13), .macOS(.v11)],
    products: [
        .library(name: "DualPub", targets: ["DualPub"]),
    ],
    targets: [
        .binaryTarget(name: "DualPubFFI", path: "build/DualPubFFI.xcframework"),
        .target(
            name: "DualPub",
            dependencies: ["DualPubFFI"],
            path: "Sources/DualPub",
            // The Rust TLS verifier (rustls-platform-verifier) calls Security and CoreFoundation.
            // DualPubFFI's module map links both already; this covers a build that does not
            // autolink Clang modules.
            linkerSettings: [.linkedFramework("Security"), .linkedFramework("CoreFoundation")]
        ),
        .testTarget(
            name: "DualPubTests",
            dependencies: ["DualPub"],
            path: "Tests/DualPubTests",
            resources: [.copy("bucketing.json")]
        ),
    ]
)
