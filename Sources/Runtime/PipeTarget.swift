import SagaLaneCoordinator
import SagaLaneEventLoop
import SagaLaneJSON
import SagaLanePipes
import SagaLaneSupport
import SagaLaneWire

/// How a pipe target buffers, and how a dialled one connects.
public struct PipeTargetOptions: Sendable {
    /// How long a command may wait for a connection before its saga fails, by default.
    public static let defaultBufferExpiry = Duration.seconds(30)
    /// How many commands may wait for a connection at once, by default.
    public static let defaultMaxBufferedCommands = 65_536

    /// A command that could not be sent waits this long, counted from its dispatch, for a
    /// connection to take it; then its saga fails with "host unreachable".
    public var bufferExpiry: Duration
    /// Past this many waiting commands, a new one is refused (its saga fails at once).
    public var maxBufferedCommands: Int
    /// Dialled targets: the back-off between connection attempts.
    public var reconnect: ReconnectPolicy
    /// Frame size and write queue bound.
    public var connection: PipeConnectionOptions
    /// Dialled targets: how long the host has to answer `hello` before the connection is
    /// dropped and dialled again.
    public var handshakeTimeout: Duration

    public init(bufferExpiry: Duration = PipeTargetOptions.defaultBufferExpiry,
                maxBufferedCommands: Int = PipeTargetOptions.defaultMaxBufferedCommands,
                reconnect: ReconnectPolicy = ReconnectPolicy(), connection: PipeConnectionOptions = PipeConnectionOptions(),
                handshakeTimeout: Duration = .seconds(10)) {
        self.bufferExpiry = max(.zero, bufferExpiry)
        self.maxBufferedCommands = max(1, maxBufferedCommands)
        self.reconnect = reconnect
        self.connection = connection
        self.handshakeTimeout = max(.milliseconds(1), handshakeTimeout)
    }
}

/// What a pipe target has done, for operators and tests.
public struct PipeTargetStatus: Sendable, Equatable {
    /// Whether a connection takes its commands now.
    public var connected: Bool
    /// Commands waiting for a connection.
    public var buffered: Int
    /// Commands sent and not yet answered.
    public var awaiting: Int
    /// Commands written to a connection.
    public var sent: Int
    /// Commands whose wait ran out (their sagas failed "host unreachable").
    public var expired: Int
    /// Waiting commands dropped because their saga ended first.
    public var purged: Int
    /// Connections made (dialled) or attached (accepted).
    public var connections: Int
    /// Frames from the peer refused as bad input.
    public var badFrames: Int
    /// Why the last connection or attempt ended.
    public var lastError: String?
}

/// A command on its way to a pipe: waiting for a connection, or sent and awaiting its report.
final class PendingCommand {
    let sagaID: UInt64
    let step: UInt32
    let reporter: StepReporter
    let frame: String
    /// Loop time of its dispatch: its wait for a connection counts from here.
    let dispatchedAt: Duration
    let sequence: UInt64
    /// Its saga ended while it waited: it is skipped, never sent.
    var purged = false

    init(sagaID: UInt64, step: UInt32, reporter: StepReporter, frame: String, dispatchedAt: Duration, sequence: UInt64) {
        self.sagaID = sagaID
        self.step = step
        self.reporter = reporter
        self.frame = frame
        self.dispatchedAt = dispatchedAt
        self.sequence = sequence
    }
}

/// A saga target whose commands travel as `command` frames over a pipe connection, and whose
/// answers (`step.done`, `step.failed`) come back the same way, from whichever connection
/// holds the target then.
///
/// While no connection takes commands (none attached, or the attached one's write queue is
/// full), commands wait in order; once one is attached they go out in that order. A command
/// that waited `bufferExpiry` fails its saga, once, with "host unreachable"; a saga that ends
/// first takes its waiting command back (`sagaEnded`), so nothing runs for a saga that is
/// over. A command already written is not sent again: the host answers it from any connection,
/// or the saga's own deadline ends it.
///
/// The dialled form (`Runtime.connectTarget`) attaches the connection it dials; the agent
/// attaches the connections of hosts that register the target's name. Loop thread only; the
/// coordinator calls `dispatch` and `sagaEnded` there.
public final class PipeTarget: SagaTarget, @unchecked Sendable {
    public let name: String
    public let loop: EventLoop
    public let options: PipeTargetOptions
    let coordinator: Coordinator

    /// The connection commands go to now.
    public private(set) var sink: PipeConnection?

    private var queue: [PendingCommand] = []
    private var head = 0
    /// Waiting commands by saga (a saga has one step outstanding at a time).
    private var waiting: [UInt64: PendingCommand] = [:]
    /// Written commands whose report has not come, by saga.
    private var awaiting: [UInt64: PendingCommand] = [:]
    /// Commands whose write failed when their connection closed: they wait again.
    private var unsent: [PendingCommand] = []
    /// Sagas whose end this target listens for, to forget what it holds for them.
    private var watched: Set<UInt64> = []
    private var expiryTimer: TimerID?
    private var expiryDeadline: Duration?
    private var nextSequence: UInt64 = 1

    private(set) var counters = PipeTargetStatus(connected: false, buffered: 0, awaiting: 0, sent: 0, expired: 0,
                                                 purged: 0, connections: 0, badFrames: 0, lastError: nil)

    package init(name: String, coordinator: Coordinator, options: PipeTargetOptions) {
        self.name = name
        self.loop = coordinator.loop
        self.options = options
        self.coordinator = coordinator
    }

    /// The current figures. Loop thread.
    public var status: PipeTargetStatus {
        var status = counters
        status.connected = sink?.isOpen ?? false
        status.buffered = waiting.count + unsent.count
        status.awaiting = awaiting.count
        return status
    }

    // MARK: The coordinator's side

    public func dispatch(_ step: StepDispatch, reporter: StepReporter) throws {
        loop.preconditionInEventLoop()
        let frame = WireFrame(.command(target: name, sagaID: step.sagaID, step: step.step, command: step.command)).serialized
        if frame.utf8.count > options.connection.maxFrameSize {
            throw SagaLaneError(.invalidArgument, "the command frame is \(frame.utf8.count) bytes, over the pipe's maximum of \(options.connection.maxFrameSize)")
        }
        if waiting.count + unsent.count >= options.maxBufferedCommands {
            throw SagaLaneError(.again, "target '\(name)' already holds \(waiting.count + unsent.count) commands waiting for a connection")
        }
        let command = PendingCommand(sagaID: step.sagaID, step: step.step, reporter: reporter, frame: frame,
                                     dispatchedAt: loop.now, sequence: nextSequence)
        nextSequence += 1
        watchEnd(of: step.sagaID)
        if head == queue.count, unsent.isEmpty, let sink, sink.canSend(frame.utf8.count) {
            send(command, on: sink)
        } else {
            hold(command)
        }
    }

    public func sagaEnded(_ step: StepDispatch) {
        loop.preconditionInEventLoop()
        forget(sagaID: step.sagaID, step: step.step)
    }

    /// Drops what is held for a saga that ended: its waiting command is never sent.
    private func forget(sagaID: UInt64, step: UInt32?) {
        if let command = waiting[sagaID], step == nil || command.step == step {
            command.purged = true
            waiting.removeValue(forKey: sagaID)
            counters.purged += 1
        }
        if let index = unsent.firstIndex(where: { $0.sagaID == sagaID && (step == nil || $0.step == step) }) {
            unsent.remove(at: index)
            counters.purged += 1
        }
        if let command = awaiting[sagaID], step == nil || command.step == step {
            awaiting.removeValue(forKey: sagaID)
        }
        rearmExpiry()
    }

    private func watchEnd(of sagaID: UInt64) {
        guard watched.insert(sagaID).inserted else { return }
        coordinator.whenEnded(sagaID, inFlight: nil) { [weak self] _ in
            guard let self else { return }
            self.loop.execute { self.sagaClosed(sagaID) }
        }
    }

    private func sagaClosed(_ sagaID: UInt64) {
        watched.remove(sagaID)
        forget(sagaID: sagaID, step: nil)
    }

    // MARK: Connections

    /// Makes `connection` the one commands go to, and sends what waits.
    public func attach(_ connection: PipeConnection) {
        loop.preconditionInEventLoop()
        sink = connection
        counters.connections += 1
        flush()
    }

    /// `connection` no longer takes commands (it closed, or its host let the name go). What it
    /// had not written waits again.
    public func detach(_ connection: PipeConnection, reason: String? = nil) {
        loop.preconditionInEventLoop()
        if let reason { counters.lastError = reason }
        guard sink === connection else { return }
        sink = nil
        mergeUnsent()
        rearmExpiry()
    }

    /// Sends what waits, in order, as far as the connection's write queue allows. The
    /// connection's `onWritable` should call this.
    public func flush() {
        loop.preconditionInEventLoop()
        mergeUnsent()
        while head < queue.count, let sink, sink.isOpen {
            let command = queue[head]
            if command.purged {
                head += 1
                continue
            }
            guard sink.canSend(command.frame.utf8.count) else { break }
            head += 1
            waiting.removeValue(forKey: command.sagaID)
            send(command, on: sink)
        }
        compact()
        rearmExpiry()
    }

    private func send(_ command: PendingCommand, on connection: PipeConnection) {
        awaiting[command.sagaID] = command
        do {
            try connection.send(command.frame, force: true) { [weak self] written in
                if !written { self?.writeFailed(command) }
            }
            counters.sent += 1
        } catch {
            // The connection closed under us: the command waits again.
            awaiting.removeValue(forKey: command.sagaID)
            hold(command)
        }
    }

    private func writeFailed(_ command: PendingCommand) {
        guard awaiting[command.sagaID] === command else { return }
        awaiting.removeValue(forKey: command.sagaID)
        counters.sent -= 1
        unsent.append(command)
    }

    private func hold(_ command: PendingCommand) {
        queue.append(command)
        waiting[command.sagaID] = command
        rearmExpiry()
    }

    /// Commands whose write failed go back in front, in their original order: they were
    /// dispatched before anything still waiting.
    private func mergeUnsent() {
        guard !unsent.isEmpty else { return }
        let back = unsent.sorted { $0.sequence < $1.sequence }
        unsent.removeAll()
        queue = back + queue[head...]
        head = 0
        for command in back { waiting[command.sagaID] = command }
    }

    private func compact() {
        if head == queue.count {
            queue.removeAll(keepingCapacity: queue.count < 4096)
            head = 0
        } else if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }

    // MARK: Reports

    /// The reporter of the command for saga `sagaID`'s step `step`, if it was sent and not yet
    /// answered; it is answered from then on.
    public func takeAwaiting(sagaID: UInt64, step: UInt32) -> StepReporter? {
        loop.preconditionInEventLoop()
        guard let command = awaiting[sagaID], command.step == step else { return nil }
        awaiting.removeValue(forKey: sagaID)
        return command.reporter
    }

    /// Whether step `step` of saga `sagaID` is waiting to be sent here.
    public func isWaiting(sagaID: UInt64, step: UInt32) -> Bool {
        waiting[sagaID]?.step == step || unsent.contains { $0.sagaID == sagaID && $0.step == step }
    }

    package func countBadFrame() { counters.badFrames += 1 }

    /// Records why the last connection or attempt ended.
    package func note(error: String) { counters.lastError = error }

    // MARK: Expiry

    private func rearmExpiry() {
        guard !loop.isShutDown else { return }
        // Every command waits the same bound, so the oldest waiting one expires first.
        while head < queue.count, queue[head].purged { head += 1 }
        let oldest = [unsent.min { $0.sequence < $1.sequence }, head < queue.count ? queue[head] : nil]
            .compactMap { $0 }.min { $0.sequence < $1.sequence }
        guard let oldest else {
            if let expiryTimer { loop.cancelTimer(expiryTimer) }
            expiryTimer = nil
            expiryDeadline = nil
            return
        }
        let deadline = oldest.dispatchedAt + options.bufferExpiry
        if expiryDeadline == deadline, expiryTimer != nil { return }
        if let expiryTimer { loop.cancelTimer(expiryTimer) }
        expiryDeadline = deadline
        expiryTimer = loop.scheduleTimer(after: deadline - loop.now) { [weak self] in
            guard let self else { return }
            self.expiryTimer = nil
            self.expiryDeadline = nil
            self.expire()
        }
    }

    private func expire() {
        mergeUnsent()
        let now = loop.now
        var expired: [PendingCommand] = []
        while head < queue.count {
            let command = queue[head]
            if command.purged {
                head += 1
                continue
            }
            guard command.dispatchedAt + options.bufferExpiry <= now else { break }
            head += 1
            waiting.removeValue(forKey: command.sagaID)
            expired.append(command)
        }
        compact()
        let why = sink == nil ? "no connection took it" : "its connection could not take more"
        let seconds = Double(options.bufferExpiry.components.seconds) + Double(options.bufferExpiry.components.attoseconds) / 1e18
        for command in expired {
            counters.expired += 1
            // Out of the buffer before the failure is reported, so it is reported once.
            command.reporter.fail("host unreachable: target '\(name)' held step \(command.step) for \(seconds) s and \(why)")
        }
        rearmExpiry()
    }
}
