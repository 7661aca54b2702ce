// swift-tools-version: 6.0
// Keep at 6.0: Debian trixie / Raspberry Pi OS ship Swift 6.0.3 for arm64.
import PackageDescription

/// Release builds need these for the kernels to reach memory bandwidth (see README, "Fast builds").
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))
]

let package = Package(
    name: "BlueWhale",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "whale", targets: ["whale"]),
        .library(name: "WhaleFormats", targets: ["WhaleFormats"]),
        .library(name: "WhaleKernels", targets: ["WhaleKernels"]),
        .library(name: "WhaleTokenizer", targets: ["WhaleTokenizer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        .target(name: "WhaleCore"),
        .target(name: "WhaleFormats", dependencies: ["WhaleCore"]),
        .target(name: "WhaleTokenizer", dependencies: ["WhaleCore", "WhaleFormats"]),
        .target(name: "WhaleModels", dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels"]),
        .target(name: "WhaleEngine", dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels", "WhaleModels", "WhaleTokenizer"]),
        .target(
            name: "WhaleKernels", dependencies: ["WhaleCore"], swiftSettings: kernelFlags,
            linkerSettings: [.linkedLibrary("m")]),
        .executableTarget(
            name: "whale",
            dependencies: [
                "WhaleCore", "WhaleFormats", "WhaleKernels", "WhaleTokenizer", "WhaleModels", "WhaleEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "WhaleCoreTests", dependencies: ["WhaleCore"]),
        .testTarget(
            name: "WhaleFormatsTests", dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "WhaleTokenizerTests", dependencies: ["WhaleCore", "WhaleFormats", "WhaleTokenizer"],
            resources: [.copy("Fixtures")]),
        // Runs the built `whale` binary: exit codes, error lines, JSON output, help snapshots.
        .testTarget(name: "WhaleCLITests", dependencies: ["WhaleCore"], exclude: ["Snapshots"]),
        .testTarget(
            name: "WhaleKernelsTests", dependencies: ["WhaleCore", "WhaleKernels"],
            resources: [.copy("Fixtures")]),
    ]
)
