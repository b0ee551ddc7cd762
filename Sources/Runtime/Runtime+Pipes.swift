import SagaLaneCoordinator
import SagaLanePipes
import SagaLaneSupport

/// The runtime's dialled pipe targets, by name.
package final class PipeTargetRegistry: Sendable {
    private let targets = ConditionLock<[String: DialledPipeTarget]>([:])

    func add(_ target: DialledPipeTarget) { targets.withLock { $0[target.target.name] = target } }

    func target(named name: String) -> DialledPipeTarget? { targets.withLock { $0[name] } }

    var all: [DialledPipeTarget] { targets.withLock { Array($0.values) } }
}

/// Pipe targets the runtime dials.
extension Runtime {
    /// Registers target `name` as a pipe target: the runtime dials the host's Unix socket at
    /// `path` (at once, and again with back-off whenever the connection is lost) and sends it
    /// the target's commands as `command` frames. Commands that cannot be sent wait, in order,
    /// for up to `options.bufferExpiry`, then fail their saga with "host unreachable"; a saga
    /// that ends takes its waiting command back. See docs/protocol.md for what the host says.
    /// Before or after `start()`; the connection closes with the runtime.
    /// - Throws: `.invalidArgument` (empty name, a name with ':', a path too long for a Unix
    ///   socket), `.exists`, `.closed`.
    public func connectTarget(named name: String, path: String,
                              options: PipeTargetOptions = PipeTargetOptions()) throws(SagaLaneError) {
        try checkOpen()
        if path.isEmpty || path.utf8.count > maxSocketPathBytes {
            throw SagaLaneError(.invalidArgument, "the socket path '\(path)' must be 1 to \(maxSocketPathBytes) bytes long")
        }
        let target = PipeTarget(name: name, coordinator: coordinator, options: options)
        try coordinator.register(target: target, named: name)
        let dialled = DialledPipeTarget(target: target, path: path, bus: bus, diagnostics: self.options.diagnostics)
        pipeTargets.add(dialled)
        loop.execute { dialled.start() }
    }

    /// What dialled pipe target `name` has done; `nil` when there is none of that name.
    public func pipeTargetStatus(named name: String) throws(SagaLaneError) -> PipeTargetStatus? {
        try checkOpen()
        guard let dialled = pipeTargets.target(named: name) else { return nil }
        return driver.onLoop { dialled.status }
    }
}
