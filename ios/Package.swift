// swift-tools-version:5.9
// dualpub for iOS (and macOS): the Rust core as an XCFramework (binary target DualPubFFI,
// built by build-xcframework.sh), the generated Swift bindings and the Swift helpers.
import PackageDescription

let package = Package(
    name: "DualPub",
    platforms: [.iOS(.v13), .macOS(.v11)],
    products: [
        .library(name: "DualPub", targets: ["DualPub"]),
    ],
    targets: [
        .binaryTarget(name: "DualPubFFI", path: "build/DualPubFFI.xcframework"),
        .target(
            name: "DualPub",
            dependencies: ["DualPubFFI"],
            path: "Sources/DualPub"
        ),
        .testTarget(
            name: "DualPubTests",
            dependencies: ["DualPub"],
            path: "Tests/DualPubTests",
            resources: [.copy("bucketing.json")]
        ),
    ]
)
