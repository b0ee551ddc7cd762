// swift-tools-version:6.0
import PackageDescription

// The library targets (SagaLane, SagaLaneC) use only the Swift standard library, Glibc,
// Synchronization, libuv and SQLite: Foundation would add 7 to 50 MB to every static host.
let package = Package(
    name: "sagalane",
    products: [
        .library(name: "SagaLane", targets: ["SagaLane"]),
        .library(name: "SagaLaneC", targets: ["SagaLaneC"]),
        // Every object of the C API and the core in one archive (SwiftPM's own product); CMake
        // turns it into libsagalane.a and libsagalane.so (see CMakeLists.txt).
        .library(name: "SagaLaneCStatic", type: .static, targets: ["SagaLaneC"]),
        .executable(name: "sagalane", targets: ["sagalane"]),
        .executable(name: "sagalane-bench", targets: ["sagalane-bench"]),
    ],
    targets: [
        // System libraries: a module map and a shim header each, linked by name. No pkgConfig:
        // it would put the shared libraries ahead of the static ones when linking statically.
        .systemLibrary(name: "CUV", path: "Sources/CUV"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .target(name: "SagaLane", dependencies: ["CUV", "CSQLite"]),
        // The public C header (include/sagalane.h, linked into this target) and the parts of the
        // C API written in C: the error table and sl_free.
        .target(name: "CSagaLane", path: "Sources/CSagaLane"),
        // @_cdecl shims implementing sagalane.h; the header's prototypes check their types.
        .target(name: "SagaLaneC", dependencies: ["SagaLane", "CSagaLane"]),
        .executableTarget(name: "sagalane", dependencies: ["SagaLane"]),
        .executableTarget(name: "sagalane-bench", dependencies: ["SagaLane", "CSQLite"]),
        // Spawned by the crash tests (and killed with SIGKILL); not installed.
        .executableTarget(name: "sagalane-testchild", dependencies: ["SagaLane"]),
        .testTarget(name: "SagaLaneTests", dependencies: ["SagaLane", "CSQLite", "CUV"]),
    ],
    swiftLanguageModes: [.v6]
)
