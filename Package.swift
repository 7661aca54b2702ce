// swift-tools-version: 6.0
// Keep at 6.0: Debian trixie / Raspberry Pi OS ship Swift 6.0.3 for arm64.
import PackageDescription

/// Release builds need these for the kernels to reach memory bandwidth (README, "Fast builds").
/// `WHALE_CPU` picks the CPU the release build targets (any name clang's `-march` / `-mcpu` takes, or
/// `native`); the defaults:
/// - `native`, the build machine's own CPU, as llama.cpp's GGML_NATIVE default: on x86-64 whatever it has
///   (AVX2, FMA, F16C; AVX-512 and VNNI where present), on a Raspberry Pi 5 (Cortex-A76) NEON with the int8
///   dot-product instructions (`sdot`), which a Pi 4 (Cortex-A72) lacks.
/// - For a binary that runs elsewhere: `WHALE_CPU=haswell` (x86-64 with AVX2, FMA and F16C: every x86 server
///   and desktop since ~2015; without these half-precision conversion and fused multiply-add become library
///   calls, several times slower), `WHALE_CPU=cortex-a76` (a Pi 5), `WHALE_CPU=generic` (any arm64).
let targetCPU: String? = Context.environment["WHALE_CPU"]
#if arch(x86_64)
    #if compiler(>=6.1)
        let cpuFlags = ["-target-cpu", targetCPU ?? "native"]
    #else
        /// Swift 6.0 (Debian trixie's `swiftlang` 6.0.3) turns `-target-cpu` into clang's `-mcpu=`, which clang
        /// rejects on x86-64 ("unsupported option '-mcpu=' for target 'x86_64-pc-linux-gnu'"), failing every
        /// file. Swift's code generation takes its CPU and features from the clang importer's target, so
        /// setting the CPU there gives the same code (ymm, vfmadd, vcvtph2ps; no fmaf calls).
        let cpuFlags = ["-Xcc", "-march=\(targetCPU ?? "native")"]
    #endif
#elseif arch(arm64)
    /// Through the clang importer, whose target Swift's code generation uses (as on x86-64 with Swift 6.0):
    /// clang resolves `native` from /proc/cpuinfo, every Swift version takes `-mcpu` on arm64.
    let cpuFlags = ["-Xcc", "-mcpu=\(targetCPU ?? "native")"]
#else
    let cpuFlags: [String] = []
#endif
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization"] + cpuFlags, .when(configuration: .release))
]
let releaseFlags: [SwiftSetting] = [.unsafeFlags(cpuFlags, .when(configuration: .release))]

/// `whale serve` is built on Hummingbird 2, whose current release (and swift-log, swift-metrics,
/// swift-prometheus) needs Swift 6.2 tools, as does async-http-client, which `whale pull` downloads with.
/// Older compilers (Debian's Swift 6.0.3 on a Raspberry Pi) build everything else; `whale` then has no
/// `serve` or `pull` command (README, "Serving", "Getting models"), and takes models already in the cache.
#if compiler(>=6.2)
    let serverPackages: [Package.Dependency] = [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ]
    let serverTargets: [Target] = [
        .target(
            name: "WhaleServer",
            dependencies: [
                "WhaleCore", "WhaleKernels", "WhaleModels", "WhaleTokenizer", "WhaleEngine",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The web chat page, compiled into the binary (PackageResources.chat_html): whale serve needs no files.
            resources: [.embedInCode("WebChat/chat.html")], swiftSettings: releaseFlags),
        .testTarget(
            name: "WhaleServerTests",
            dependencies: [
                "WhaleCore", "WhaleKernels", "WhaleModels", "WhaleTokenizer", "WhaleEngine", "WhaleServer",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]),
        /// `whale pull`: downloads from the Hugging Face Hub into its cache (async-http-client needs 6.2 tools too).
        .target(
            name: "WhaleHubClient",
            dependencies: [
                "WhaleCore", "WhaleHub", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ], swiftSettings: releaseFlags),
    ]
    let serverProducts: [Target.Dependency] = ["WhaleServer", "WhaleHubClient"]
#else
    let serverPackages: [Package.Dependency] = []
    let serverTargets: [Target] = []
    let serverProducts: [Target.Dependency] = []
#endif

let package = Package(
    name: "BlueWhale",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "whale", targets: ["whale"]),
        .library(name: "WhaleFormats", targets: ["WhaleFormats"]),
        .library(name: "WhaleKernels", targets: ["WhaleKernels"]),
        .library(name: "WhaleTokenizer", targets: ["WhaleTokenizer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ] + serverPackages,
    targets: [
        .target(name: "WhaleCore", swiftSettings: releaseFlags),
        .target(name: "WhaleFormats", dependencies: ["WhaleCore"], swiftSettings: releaseFlags),
        .target(name: "WhaleTokenizer", dependencies: ["WhaleCore", "WhaleFormats"], swiftSettings: releaseFlags),
        /// The Hugging Face cache: model names wherever a path is taken, what a pull fetches, writing the cache.
        .target(name: "WhaleHub", dependencies: ["WhaleCore"], swiftSettings: releaseFlags),
        .target(
            name: "WhaleModels", dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels"],
            swiftSettings: releaseFlags),
        .target(
            name: "WhaleEngine",
            dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels", "WhaleModels", "WhaleTokenizer"],
            swiftSettings: releaseFlags),
        /// Header only: the build target's CPU features as constants the kernels branch on at compile time.
        .target(name: "WhaleCPUFeatures"),
        .target(
            name: "WhaleKernels", dependencies: ["WhaleCore", "WhaleCPUFeatures"], swiftSettings: kernelFlags,
            linkerSettings: [.linkedLibrary("m")]),
        .executableTarget(
            name: "whale",
            dependencies: [
                "WhaleCore", "WhaleFormats", "WhaleKernels", "WhaleTokenizer", "WhaleModels", "WhaleEngine", "WhaleHub",
                "WhaleDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + serverProducts, swiftSettings: releaseFlags),
        /// Several machines: a model's layers split across the ranks of an Open MPI job, libmpi loaded at run time.
        .target(
            name: "WhaleDistributed", dependencies: ["WhaleCore", "WhaleKernels", "WhaleModels"],
            swiftSettings: releaseFlags),
        .testTarget(name: "WhaleCoreTests", dependencies: ["WhaleCore"]),
        .testTarget(
            name: "WhaleDistributedTests", dependencies: ["WhaleCore", "WhaleModels", "WhaleDistributed"]),
        .testTarget(name: "WhaleHubTests", dependencies: ["WhaleCore", "WhaleHub"]),
        .testTarget(
            name: "WhaleFormatsTests", dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "WhaleTokenizerTests", dependencies: ["WhaleCore", "WhaleFormats", "WhaleTokenizer"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "WhaleModelsTests",
            dependencies: ["WhaleCore", "WhaleFormats", "WhaleKernels", "WhaleModels", "WhaleTokenizer"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "WhaleEngineTests",
            dependencies: ["WhaleCore", "WhaleKernels", "WhaleModels", "WhaleTokenizer", "WhaleEngine"]),
        // Runs the built `whale` binary: exit codes, error lines, JSON output, help snapshots.
        .testTarget(name: "WhaleCLITests", dependencies: ["WhaleCore"], exclude: ["Snapshots"]),
        .testTarget(
            name: "WhaleKernelsTests", dependencies: ["WhaleCore", "WhaleKernels"],
            resources: [.copy("Fixtures")]),
    ] + serverTargets
)
