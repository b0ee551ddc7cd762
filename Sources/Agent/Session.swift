import Glibc
import SagaLane

/// One client connection of the agent: its handshake, what it registered, and the handling of
/// each of its messages. Loop thread.
final class Session: @unchecked Sendable {
    unowned let agent: Agent
    let connection: PipeConnection
    var handshaken = false
    var name: String?
    /// Target names this connection holds.
    var targets: Set<String> = []
    var subscription: SessionSubscription?
    /// How many protocol errors were logged for it: past a few, the rest are only counted.
    private var errorsLogged = 0
    private static let loggedErrorLimit = 20

    init(agent: Agent, connection: PipeConnection) {
        self.agent = agent
        self.connection = connection
    }

    var label: String {
        var text = "\(connection.id)"
        if let peer = connection.peer { text += " (pid \(peer.pid), uid \(peer.uid)" + (name.map { ", \($0)" } ?? "") + ")" }
        return text
    }

    var loop: EventLoop { agent.loop }
    var runtime: Runtime { agent.runtime }

    func start() {
        connection.onFrame = { [unowned self] bytes in received(bytes) }
        connection.onWritable = { [unowned self] in writable() }
        connection.onFramingError = { error in
            Array(WireFrame.error(WireError(.frameTooLarge, "\(error); the connection closes")).serialized.utf8)
        }
        connection.onClose = { [unowned self] reason in
            if case .framing(let error) = reason {
                // The one error a connection cannot survive: it was answered (onFramingError),
                // and the connection is gone.
                agent.counters.errors[.frameTooLarge, default: 0] += 1
                log("\(error)")
            }
            agent.closed(self, reason: reason)
        }
        connection.startReading()
    }

    // MARK: Sending

    /// Sends `frame`; a connection that has too much queued stops being read until it drains.
    func send(_ frame: WireFrame) {
        guard connection.isOpen else { return }
        do { try connection.send(frame.serialized, force: true) } catch {
            return
        }
        if !connection.canSend() && !connection.isReadingPaused { connection.pauseReading() }
    }

    func reply(_ id: JSON?, _ fields: [String: JSON] = [:]) {
        send(.ok(id, fields))
    }

    /// Answers a request that failed: the error frame, the counter, a line on standard error.
    func refuse(_ error: WireError) {
        agent.counters.errors[error.code, default: 0] += 1
        log("\(error.about.map { "\($0): " } ?? "")\(error)")
        send(.error(error))
    }

    private func log(_ text: String) {
        errorsLogged += 1
        if errorsLogged <= Session.loggedErrorLimit {
            agent.diagnostics.warning("agent: connection \(label): \(text)")
        } else if errorsLogged == Session.loggedErrorLimit + 1 {
            agent.diagnostics.warning("agent: connection \(label): more errors; only counted from here on")
        }
    }

    private func writable() {
        if connection.isReadingPaused && connection.isOpen { connection.startReading() }
        for name in targets { agent.targets[name]?.target.flush() }
        agent.lanes.sessionWritable(self)
        subscription?.resume()
    }

    // MARK: Receiving

    private func received(_ bytes: UnsafeRawBufferPointer) {
        agent.counters.framesRead += 1
        let frame: WireFrame
        do { frame = try WireFrame.parse(bytes) } catch {
            return refuse(error)
        }
        let type = frame.message.type
        if !WireMessage.clientTypes.contains(type) {
            return refuse(WireError(.unexpectedType, "\(type) is sent by the agent, not to it", id: frame.id, about: type))
        }
        if case .hello(let version, let name, let targets) = frame.message {
            return hello(frame.id, version: version, name: name, targets: targets)
        }
        guard handshaken else {
            return refuse(WireError(.handshakeRequired, "send hello first (this agent speaks protocol versions \(WireVersion.oldest) to \(WireVersion.current))",
                                    id: frame.id, about: type))
        }
        if agent.stopping, case .sagaStart = frame.message {
            return refuse(WireError(.closing, "the agent is stopping", id: frame.id, about: type))
        }
        handle(frame)
    }

    private func hello(_ id: JSON?, version: Int, name: String?, targets: [String]) {
        guard !handshaken else {
            return refuse(WireError(.alreadyHandshaken, "this connection already said hello", id: id, about: "hello"))
        }
        guard let agreed = WireVersion.negotiate(peer: version) else {
            refuse(WireError(.unsupportedVersion, "version \(version) is not spoken here (\(WireVersion.oldest) to \(WireVersion.current))",
                             id: id, about: "hello"))
            return connection.closeWhenFlushed()
        }
        handshaken = true
        self.name = name
        send(WireFrame(id: id, .welcome(version: agreed, server: "sagalane \(SagaLaneVersion.string)", maxFrame: agent.options.maxFrameSize)))
        if !targets.isEmpty { register(nil, targets) }
    }

    private func handle(_ frame: WireFrame) {
        let id = frame.id
        let about = frame.message.type
        func failure(_ code: WireErrorCode, _ message: String) -> WireError { WireError(code, message, id: id, about: about) }
        func failure(_ error: SagaLaneError, notFound: WireErrorCode) -> WireError {
            WireError(wireCode(error, notFound: notFound), error.message, id: id, about: about)
        }
        switch frame.message {
        case .ping:
            reply(id)
        case .targetRegister(let names):
            register(id, names)
        case .targetUnregister(let names):
            for name in names where !targets.contains(name) {
                return refuse(failure(.unknownTarget, "this connection does not hold target '\(name)'"))
            }
            for name in names {
                targets.remove(name)
                if let accepted = agent.targets[name], accepted.holder === self {
                    accepted.holder = nil
                    accepted.target.detach(connection, reason: "host connection \(label) let it go")
                }
            }
            reply(id)
        case .stepDone(let sagaID, let step, _, _), .stepFailed(let sagaID, let step, _):
            for name in targets {
                guard let target = agent.targets[name]?.target, let reporter = target.takeAwaiting(sagaID: sagaID, step: step) else { continue }
                deliverReport(frame.message, to: reporter)
                if id != nil { reply(id) }
                return
            }
            refuse(explainUnawaitedReport(sagaID: sagaID, step: step, log: runtime.log, id: id, about: about))
        case .publish(let event, let sagaID, let payload):
            do {
                let published = try runtime.publish(Event(type: event, sagaID: sagaID, payload: payload))
                if id != nil { reply(id, ["version": .int(Int64(bitPattern: published.version))]) }
            } catch {
                refuse(failure(error, notFound: .failed))
            }
        case .subscribe(let events, let after):
            if after != nil {
                return refuse(failure(.unsupportedField, "subscribe: \"after\" (events after a position) needs the durable lifecycle stream, which this agent does not have yet; subscribe without it for live events"))
            }
            if let subscription {
                subscription.filter = events
            } else {
                subscription = SessionSubscription(session: self, filter: events)
            }
            reply(id)
        case .unsubscribe:
            subscription?.stop()
            subscription = nil
            reply(id)
        case .sagaStart(let saga, let input, let key):
            if key != nil {
                return refuse(failure(.unsupportedField, "saga.start: \"idempotency_key\" is not supported by this agent yet; start without it"))
            }
            startSaga(id, saga, input)
        case .sagaCancel(let sagaID, let reason):
            let coordinator = runtime.coordinator
            let log = runtime.log
            Task(executorPreference: loop) { [self] in
                do throws(SagaLaneError) {
                    try await coordinator.cancelSaga(id: sagaID, reason: reason ?? "cancelled by a client")
                    reply(id)
                } catch where error.code == .notFound {
                    if let row = try? log.saga(id: sagaID) {
                        refuse(row.state.isTerminal ? failure(.sagaEnded, "saga \(sagaID) already ended (\(row.state.rawValue))")
                               : failure(.failed, "saga \(sagaID) is \(row.state.rawValue) but not in flight here"))
                    } else {
                        refuse(failure(.unknownSaga, "no saga \(sagaID)"))
                    }
                } catch {
                    refuse(failure(error, notFound: .unknownSaga))
                }
            }
        case .sagaWait(let sagaID, let timeout):
            waitForSaga(id, sagaID, timeout: timeout)
        case .sagaGet(let sagaID):
            do {
                guard let row = try runtime.log.saga(id: sagaID) else { return refuse(failure(.unknownSaga, "no saga \(sagaID)")) }
                reply(id, ["saga": row.json])
            } catch {
                refuse(failure(error, notFound: .unknownSaga))
            }
        case .laneCreate(let lane, let maxConcurrent):
            agent.lanes.createOrResize(session: self, id: id, name: lane, maxConcurrent: maxConcurrent)
        case .laneSubmit(let submit):
            agent.lanes.submit(session: self, id: id, submit)
        case .laneCancel(let lane, let jobID):
            agent.lanes.cancel(session: self, id: id, lane: lane, jobID: jobID)
        case .laneJob(let jobID):
            do {
                guard let row = try runtime.log.job(id: jobID) else { return refuse(failure(.unknownJob, "no job '\(jobID)' in the log")) }
                reply(id, ["job": row.json])
            } catch {
                refuse(failure(error, notFound: .unknownJob))
            }
        case .laneJobs(let lane, let stateName, let limit):
            var state: JobState?
            if let stateName {
                guard let known = JobState(rawValue: stateName) else {
                    return refuse(failure(.badField, "lane.jobs: \"state\" must be one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))"))
                }
                state = known
            }
            do {
                let rows = try runtime.log.recentJobs(lane: lane, state: state, limit: limit ?? 100)
                reply(id, ["jobs": .array(rows.map(\.json))])
            } catch {
                refuse(failure(error, notFound: .unknownLane))
            }
        case .laneStats(let lane):
            agent.lanes.stats(session: self, id: id, name: lane)
        case .workerRegister(let lane, let capacity):
            agent.lanes.registerWorker(session: self, id: id, lane: lane, capacity: capacity)
        case .jobDone(let jobID, let result):
            agent.lanes.answer(session: self, id: id, jobID: jobID, outcome: .done(result))
        case .jobFailed(let jobID, let error):
            agent.lanes.answer(session: self, id: id, jobID: jobID, outcome: .failed(error))
        case .agentStats:
            reply(id, ["stats": agent.statsJSON])
        case .hello, .welcome, .ok, .error, .command, .event, .lagged, .laneJobEnded, .job:
            refuse(failure(.unexpectedType, "\(about) is sent by the agent, not to it"))
        }
    }

    // MARK: Targets

    private func register(_ id: JSON?, _ names: [String]) {
        for name in names {
            if name.utf8.contains(UInt8(ascii: ":")) {
                return refuse(WireError(.badField, "target name '\(name)' holds ':' (names with a prefix belong to the agent, like lane:)",
                                        id: id, about: "target.register"))
            }
            if let holder = agent.targets[name]?.holder, holder !== self {
                return refuse(WireError(.targetTaken, "target '\(name)' is held by connection \(holder.label)", id: id, about: "target.register"))
            }
        }
        for name in names where agent.targets[name] == nil {
            let target = PipeTarget(name: name, coordinator: runtime.coordinator,
                                    options: PipeTargetOptions(bufferExpiry: agent.options.bufferExpiry,
                                                               connection: connection.options))
            do { try runtime.register(target: target, named: name) } catch {
                return refuse(WireError(wireCode(error, notFound: .failed), "target '\(name)': \(error.message)", id: id, about: "target.register"))
            }
            agent.targets[name] = AcceptedTarget(target: target)
        }
        for name in names {
            let accepted = agent.targets[name]!
            targets.insert(name)
            if accepted.holder !== self {
                accepted.holder = self
                accepted.target.attach(connection)
            }
        }
        if id != nil { reply(id) }
    }

    // MARK: Sagas

    private func startSaga(_ id: JSON?, _ saga: String, _ input: JSON) {
        let loop = self.loop
        do {
            try runtime.startSaga(name: saga, input: input, onStarted: { [self] result in
                loop.execute {
                    switch result {
                    case .success(let sagaID): self.reply(id, ["saga_id": .int(Int64(bitPattern: sagaID))])
                    case .failure(let error):
                        self.refuse(WireError(wireCode(error, notFound: .unknownSagaType), error.message, id: id, about: "saga.start"))
                    }
                }
            })
        } catch {
            refuse(WireError(wireCode(error, notFound: .unknownSagaType), error.message, id: id, about: "saga.start"))
        }
    }

    private func waitForSaga(_ id: JSON?, _ sagaID: UInt64, timeout: Int?) {
        let answered = Box(false)
        let timer = Box<TimerID?>(nil)
        if let timeout {
            timer.value = loop.scheduleTimer(after: .milliseconds(timeout)) { [self] in
                guard !answered.value else { return }
                answered.value = true
                self.refuse(WireError(.timedOut, "saga \(sagaID) did not end within \(timeout) ms", id: id, about: "saga.wait"))
            }
        }
        let loop = self.loop
        runtime.coordinator.whenEnded(sagaID, inFlight: nil) { [self] result in
            loop.execute {
                guard !answered.value else { return }
                answered.value = true
                if let id = timer.value { loop.cancelTimer(id) }
                switch result {
                case .success(let end):
                    var fields: [String: JSON] = ["saga_id": .int(Int64(bitPattern: sagaID)), "state": .string(end.state.rawValue),
                                                  "durable": .bool(end.durable)]
                    if let reason = end.reason { fields["reason"] = .string(reason) }
                    self.reply(id, fields)
                case .failure(let error):
                    self.refuse(WireError(wireCode(error, notFound: .unknownSaga), error.message, id: id, about: "saga.wait"))
                }
            }
        }
    }
}

/// A value a loop-thread closure changes.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// A connection's subscription to the bus: events that pass its filter become `event` frames.
/// A connection that cannot take more (its write queue is full) misses events rather than make
/// the agent hold them, and hears how many with a `lagged` frame, as a slow bus subscriber does.
final class SessionSubscription: @unchecked Sendable {
    unowned let session: Session
    var filter: EventFilter
    private let subscription: BusSubscription
    private var missed: UInt64 = 0
    private var stopped = false

    init(session: Session, filter: EventFilter) {
        self.session = session
        self.filter = filter
        subscription = session.runtime.bus.subscribe()
        let subscription = self.subscription
        Task(executorPreference: session.loop) { [self] in
            while let delivery = await subscription.next() {
                take(delivery)
                while !stopped, let more = subscription.poll() { take(more) }
            }
        }
    }

    private func take(_ delivery: BusDelivery) {
        guard !stopped else { return }
        switch delivery {
        case .lagged(let count):
            missed += count
        case .event(let event):
            guard filter.accepts(event.type) else { return }
            guard session.connection.canSend() else {
                missed += 1
                return
            }
            flushMissed()
            session.send(WireFrame(.event(event: event.type, sagaID: event.sagaID, payload: event.payload, version: event.version)))
        }
    }

    private func flushMissed() {
        guard missed > 0 else { return }
        session.send(WireFrame(.lagged(missed: missed)))
        missed = 0
    }

    /// The connection drained: say what was missed meanwhile.
    func resume() {
        if !stopped && session.connection.canSend() { flushMissed() }
    }

    func stop() {
        stopped = true
        subscription.cancel()
    }
}
