// swift-tools-version:6.0
import PackageDescription

// One target per box of the design, each depending only on the boxes below it, so the
// compiler keeps the arrows pointing down:
//
//   SagaLaneSupport → SagaLaneJSON → SagaLaneEventLoop, SagaLaneLog
//     → SagaLaneLanes, SagaLaneCoordinator (neither imports the other), SagaLanePipes, SagaLaneWire
//     → SagaLaneDefinitions (over the coordinator) → SagaLane (the runtime) → SagaLaneAgent
//     → SagaLaneC (the C API) and the executables
//
// Every target uses only the Swift standard library, Glibc, Synchronization, libuv and SQLite,
// and no package: Foundation would add 7 to 50 MB to every static host (the `sagalane`
// executable parses its command line itself, in Sources/sagalane/CommandLine).
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

        // Locks, threads, time, the error type and the diagnostics seam.
        .target(name: "SagaLaneSupport", path: "Sources/Support"),
        // The JSON value, its strict parser and its serializer.
        .target(name: "SagaLaneJSON", dependencies: ["SagaLaneSupport"], path: "Sources/JSON"),
        // The libuv loop as a Swift serial and task executor, with its timer heap.
        .target(name: "SagaLaneEventLoop", dependencies: ["CUV", "SagaLaneSupport"], path: "Sources/EventLoop"),
        // The durable log: records, the storage protocol, the SQLite backend, group commit.
        .target(name: "SagaLaneLog", dependencies: ["CSQLite", "SagaLaneSupport", "SagaLaneJSON"], path: "Sources/Log"),
        // Priority job queues: the queue, the workers, the journal, retries, recovery, sweeper.
        .target(name: "SagaLaneLanes", dependencies: ["SagaLaneSupport", "SagaLaneEventLoop", "SagaLaneLog"],
                path: "Sources/Lanes"),
        // Frames over Unix-domain sockets: the newline-delimited codec (alone, for fuzzing), the
        // libuv connection with write back-pressure, the listener with peer checks, the dialer
        // that reconnects. Knows nothing of sagas.
        .target(name: "SagaLanePipes", dependencies: ["CUV", "SagaLaneSupport", "SagaLaneEventLoop"], path: "Sources/Pipes"),
        // The agent's protocol: every message both ways, parsed strictly and serialized, with
        // the versioned handshake. Shared by dialled pipe targets and the agent.
        .target(name: "SagaLaneWire", dependencies: ["SagaLaneSupport", "SagaLaneJSON"], path: "Sources/Wire"),
        // Sagas: the bus, triggers, routing, deadlines, targets, recovery.
        .target(name: "SagaLaneCoordinator",
                dependencies: ["SagaLaneSupport", "SagaLaneJSON", "SagaLaneEventLoop", "SagaLaneLog"],
                path: "Sources/Coordinator"),
        // Saga types written as data (a JSON saga file): the loader, its checks with the place of
        // each problem, command templates, and the saga that runs a definition.
        .target(name: "SagaLaneDefinitions", dependencies: ["SagaLaneSupport", "SagaLaneJSON", "SagaLaneCoordinator"],
                path: "Sources/Definitions"),
        // The runtime: assembles the parts, wires `lane:` targets, and offers calls a host
        // thread can make and wait for. `import SagaLane` brings every module above.
        .target(name: "SagaLane",
                dependencies: ["SagaLaneSupport", "SagaLaneJSON", "SagaLaneEventLoop", "SagaLaneLog",
                               "SagaLaneLanes", "SagaLaneCoordinator", "SagaLanePipes", "SagaLaneWire",
                               "SagaLaneDefinitions"],
                path: "Sources/Runtime"),

        // The agent: a runtime served over a Unix socket to hosts, clients and lane workers in
        // other processes (docs/protocol.md); `sagalane agent` runs it.
        .target(name: "SagaLaneAgent", dependencies: ["SagaLane", "CUV"], path: "Sources/Agent"),

        // The public C header (include/sagalane.h, linked into this target) and the parts of the
        // C API written in C: the error table and sl_free.
        .target(name: "CSagaLane", path: "Sources/CSagaLane"),
        // @_cdecl shims implementing sagalane.h; the header's prototypes check their types.
        .target(name: "SagaLaneC", dependencies: ["SagaLane", "CSagaLane"]),

        .executableTarget(name: "sagalane",
                          dependencies: ["SagaLaneSupport", "SagaLaneJSON", "SagaLaneLog", "SagaLaneAgent"]),
        .executableTarget(name: "sagalane-bench", dependencies: ["SagaLane", "SagaLaneAgent", "SagaLaneScriptSaga", "CSQLite"]),
        // Spawned by the crash tests (and killed with SIGKILL); not installed.
        .executableTarget(name: "sagalane-testchild", dependencies: ["SagaLane", "SagaLaneAgent", "SagaLaneScriptSaga"]),

        // A saga type that runs the steps its input lists: for the agent's tests, the test child
        // and the benchmarks. Not installed.
        .target(name: "SagaLaneScriptSaga", dependencies: ["SagaLane"], path: "Tests/ScriptSaga"),
        // What the tests share: temporary folders, child processes, a seeded generator.
        .target(name: "SagaLaneTestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "SupportTests", dependencies: ["SagaLaneSupport", "SagaLaneTestSupport"], path: "Tests/SupportTests"),
        .testTarget(name: "JSONTests", dependencies: ["SagaLaneJSON", "SagaLaneTestSupport"], path: "Tests/JSONTests"),
        .testTarget(name: "EventLoopTests", dependencies: ["SagaLaneEventLoop", "CUV", "SagaLaneTestSupport"],
                    path: "Tests/EventLoopTests"),
        .testTarget(name: "LogTests", dependencies: ["SagaLaneLog", "CSQLite", "SagaLaneTestSupport"], path: "Tests/LogTests"),
        .testTarget(name: "LanesTests", dependencies: ["SagaLaneLanes", "SagaLaneTestSupport"], path: "Tests/LanesTests"),
        .testTarget(name: "CoordinatorTests", dependencies: ["SagaLaneCoordinator", "SagaLaneTestSupport"],
                    path: "Tests/CoordinatorTests"),
        .testTarget(name: "DefinitionsTests", dependencies: ["SagaLaneDefinitions", "SagaLaneTestSupport"],
                    path: "Tests/DefinitionsTests"),
        .testTarget(name: "RuntimeTests", dependencies: ["SagaLane", "SagaLaneScriptSaga", "SagaLaneTestSupport"], path: "Tests/RuntimeTests"),
        .testTarget(name: "PipesTests", dependencies: ["SagaLanePipes", "SagaLaneWire", "SagaLaneTestSupport"], path: "Tests/PipesTests"),
        .testTarget(name: "AgentTests", dependencies: ["SagaLaneAgent", "SagaLaneScriptSaga", "SagaLaneTestSupport"],
                    path: "Tests/AgentTests"),
        // Runs the built `sagalane` binary as an operator would, on logs the tests write.
        .testTarget(name: "CLITests", dependencies: ["sagalane", "SagaLaneLog", "SagaLaneJSON", "SagaLaneTestSupport"],
                    path: "Tests/CLITests"),
    ],
    swiftLanguageModes: [.v6]
)

// Each function in a section of its own, as the Swift runtime's static archives are built, so
// that a link with --gc-sections (the static `sagalane` binary, a host linking libsagalane.a
// with it) leaves out the functions nothing calls rather than keeping every function of an
// object for the sake of one: 160 KB less in the binary. It changes where code goes, not the
// code. The compiler skips code generation for a module whose IR has not changed, so objects
// already built keep their single section until a clean build. An unsafe flag, so a package
// can take this one as a dependency only by path.
for target in package.targets where target.type != .system && target.name != "CSagaLane" {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-Xfrontend", "-function-sections"])]
}
