import SagaLaneCoordinator
import SagaLaneEventLoop
import SagaLaneJSON
import SagaLaneLog
import SagaLanePipes
import SagaLaneSupport
import SagaLaneWire

/// Why no step is waiting for a report: the saga ended, never existed, or the step is not out.
/// Reads the log, so only on the error path.
package func explainUnawaitedReport(sagaID: UInt64, step: UInt32, log: SagaLog, id: JSON?, about: String) -> WireError {
    if let row = try? log.saga(id: sagaID) {
        if row.state.isTerminal {
            return WireError(.sagaEnded, "saga \(sagaID) already ended (\(row.state.rawValue)); its step \(step) takes no report", id: id, about: about)
        }
        return WireError(.notAwaiting, "saga \(sagaID) has no step \(step) waiting for a report here (it was not sent to this connection's targets, or was answered already)",
                         id: id, about: about)
    }
    return WireError(.unknownSaga, "no saga \(sagaID)", id: id, about: about)
}

/// A host's report on a command (`step.done` or `step.failed`): handed to the saga through
/// the step's reporter. The caller found the reporter with `PipeTarget.takeAwaiting`.
package func deliverReport(_ message: WireMessage, to reporter: StepReporter) {
    switch message {
    case .stepDone(_, _, let event, let payload): reporter.publish(type: event, payload: payload)
    case .stepFailed(_, _, let reason): reporter.fail(reason)
    default: break
    }
}

/// A pipe target the runtime dials: it connects to a host's Unix socket, says `hello` naming
/// the target, and once the host's `welcome` comes, sends it the target's commands. The
/// connection is dialled again with back-off whenever it is lost; commands wait meanwhile (see
/// `PipeTarget`). The host answers with `step.done` / `step.failed`, and may publish events
/// (`event.publish`); anything else it sends is answered with an error frame. Loop thread.
public final class DialledPipeTarget: @unchecked Sendable {
    public let target: PipeTarget
    public let path: String
    let dialer: PipeDialer
    let bus: EventBus
    let diagnostics: Diagnostics
    private var handshaking: PipeConnection?
    private var handshakeTimer: TimerID?

    init(target: PipeTarget, path: String, bus: EventBus, diagnostics: Diagnostics) {
        self.target = target
        self.path = path
        self.bus = bus
        self.diagnostics = diagnostics
        dialer = PipeDialer(loop: target.loop, path: path, policy: target.options.reconnect,
                            connectionOptions: target.options.connection)
        dialer.onConnect = { [unowned self] connection in connected(connection) }
        dialer.onDisconnect = { why, _ in target.note(error: why) }
    }

    func start() { dialer.start() }

    func stop() { dialer.stop() }

    public var status: PipeTargetStatus { target.status }

    private func connected(_ connection: PipeConnection) {
        connection.onFrame = { [unowned self, unowned connection] frame in received(frame, on: connection) }
        connection.onWritable = { [unowned self] in target.flush() }
        // An oversized frame cannot be skipped: the host hears why before the connection
        // closes (and is dialled again), as the agent's own connections do.
        connection.onFramingError = { [unowned self] error in
            target.countBadFrame()
            return Array(WireFrame.error(WireError(.frameTooLarge, "\(error); the connection closes")).serialized.utf8)
        }
        connection.onClose = { [unowned self, unowned connection] reason in
            if handshaking === connection { endHandshake() }
            target.detach(connection, reason: "connection to \(path) closed: \(reason)")
        }
        connection.startReading()
        let hello = WireFrame(.hello(version: WireVersion.current, name: "sagalane \(SagaLaneVersion.string)", targets: [target.name]))
        do { try connection.send(hello.serialized) } catch { return connection.close() }
        handshaking = connection
        handshakeTimer = target.loop.scheduleTimer(after: target.options.handshakeTimeout) { [weak self, weak connection] in
            guard let self, let connection, self.handshaking === connection else { return }
            self.handshakeTimer = nil
            self.diagnostics.warning("pipe target '\(self.target.name)': \(self.path) did not answer hello in time; dialling again")
            connection.close()
        }
    }

    private func endHandshake() {
        handshaking = nil
        if let handshakeTimer { target.loop.cancelTimer(handshakeTimer) }
        handshakeTimer = nil
    }

    private func received(_ bytes: UnsafeRawBufferPointer, on connection: PipeConnection) {
        let frame: WireFrame
        do { frame = try WireFrame.parse(bytes) } catch {
            return refuse(error, on: connection)
        }
        if handshaking === connection {
            switch frame.message {
            case .welcome(let version, _, _):
                guard WireVersion.negotiate(peer: version) == version else {
                    let error = WireError(.unsupportedVersion, "the host answered version \(version); this runtime speaks \(WireVersion.oldest) to \(WireVersion.current)")
                    refuse(error, on: connection)
                    return connection.closeWhenFlushed()
                }
                endHandshake()
                target.attach(connection)
            case .error(let code, let message, _):
                diagnostics.warning("pipe target '\(target.name)': \(path) refused the handshake: \(code): \(message)")
                connection.close()
            default:
                refuse(WireError(.handshakeRequired, "the host must answer hello with welcome first", id: frame.id, about: frame.message.type),
                       on: connection)
            }
            return
        }
        switch frame.message {
        case .stepDone(let sagaID, let step, _, _), .stepFailed(let sagaID, let step, _):
            guard let reporter = target.takeAwaiting(sagaID: sagaID, step: step) else {
                return refuse(explainUnawaitedReport(sagaID: sagaID, step: step, log: target.coordinator.log, id: frame.id,
                                                     about: frame.message.type), on: connection)
            }
            deliverReport(frame.message, to: reporter)
            if frame.id != nil { try? connection.send(WireFrame.ok(frame.id).serialized, force: true) }
        case .publish(let event, let sagaID, let payload):
            let published = bus.publish(type: event, sagaID: sagaID, payload: payload)
            if frame.id != nil {
                try? connection.send(WireFrame.ok(frame.id, ["version": .int(Int64(bitPattern: published.version))]).serialized, force: true)
            }
        case .ping:
            try? connection.send(WireFrame.ok(frame.id).serialized, force: true)
        case .error(let code, let message, let about):
            diagnostics.warning("pipe target '\(target.name)': \(path) reported \(code)\(about.map { " about \($0)" } ?? ""): \(message)")
        case .ok:
            break
        default:
            refuse(WireError(.unexpectedType, "a host does not send \(frame.message.type) to a runtime's pipe target",
                             id: frame.id, about: frame.message.type), on: connection)
        }
    }

    private func refuse(_ error: WireError, on connection: PipeConnection) {
        target.countBadFrame()
        diagnostics.warning("pipe target '\(target.name)': bad frame from \(path): \(error)")
        try? connection.send(WireFrame.error(error).serialized, force: true)
    }
}

