import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport

/// Start-up recovery: before the coordinator takes its first event, every saga the log shows
/// unfinished is dealt with by its type's `RecoveryPolicy` (an unregistered type's by
/// `.markFailed`), a page of sagas at a time: what each page needs written goes to the log at
/// once, so the writer commits it in a few batches rather than one per saga; then the sagas
/// that go on are dispatched again. Operators' requests recorded while the runtime was stopped
/// are carried out next.
extension Coordinator {
    /// Sagas read at a time, so recovering a big log never holds it all in memory.
    static let recoveryPageSize = 500

    /// What a recovered saga does once the page's records are durable.
    enum Resumption {
        /// Its awaited step (or compensation) was rebuilt: dispatch it again; a running saga
        /// gets what is left of its deadline.
        case send(SagaInstance, deadline: Duration?)
        /// Every step answered: carry out the action its last result led to.
        case apply(SagaInstance, SagaAction, deadline: Duration)
        /// It fails (and compensates what it can).
        case fail(SagaInstance, String)
        /// A running saga to undo: move it to compensating.
        case compensate(SagaInstance, String, JSONObject)
        /// A compensating saga between compensations.
        case nextCompensation(SagaInstance)
        /// It ends here.
        case end(SagaInstance, SagaState, String)
    }

    /// - Returns: How many unfinished sagas there were.
    func recover(progress: ProgressHandler? = nil) async throws(SagaLaneError) -> Int {
        var requests: [UInt64: SagaRequest] = [:]
        do { for request in try log.requests(limit: 100_000) { requests[request.sagaID] = request } } catch {
            throw SagaLaneError(error.code, "cannot read operators' requests: \(error.message)", underlying: error)
        }
        // Counted only for someone who shows progress: an index count, quick beside recovery.
        var total = 0
        if progress != nil {
            do { total = try log.countSagas(matching: SagaFilter(states: SagaState.unfinished)) } catch {
                throw SagaLaneError(error.code, "cannot count unfinished sagas: \(error.message)", underlying: error)
            }
        }
        var settled = 0
        if total > 0 { progress?(.recovery, 0, total) }
        var count = 0, last: UInt64 = 0
        // A few pages' writes in flight while the next page is read: each page's sagas go on
        // (events published, steps dispatched) only once its writes are durable, in page order.
        var inFlight: [PagePlan] = []
        // A page is read in outline first, which is all a saga to mark failed needs; when one
        // of its sagas goes on, the page is read again whole, and so are the pages after it
        // until one needs no more than outlines (a log of resumable sagas reads each page once).
        var wholePages = false
        var types = TypeLookup()
        while true {
            var outlines: [SagaOutline]
            var records: [SagaRecord]?
            do {
                if !wholePages {
                    outlines = try log.unfinishedOutlines(after: last, limit: Self.recoveryPageSize)
                    if outlines.contains(where: { goesOn($0, requests: requests, types: &types) }) {
                        records = try log.unfinishedSagas(after: last, limit: Self.recoveryPageSize)
                    }
                } else {
                    records = try log.unfinishedSagas(after: last, limit: Self.recoveryPageSize)
                    outlines = []
                }
                if let records { outlines = records.map(SagaOutline.init) }
            } catch {
                throw SagaLaneError(error.code, "cannot read unfinished sagas: \(error.message)", underlying: error)
            }
            wholePages = records.map { $0.contains { goesOn(SagaOutline($0), requests: requests, types: &types) } } ?? false
            inFlight.append(plan(outlines, records, requests: &requests, types: &types))
            if inFlight.count > Self.recoveryPagesInFlight {
                try await settle(inFlight.removeFirst(), settled: &settled, of: total, progress: progress)
            }
            count += outlines.count
            guard outlines.count == Self.recoveryPageSize, let next = outlines.last?.id else { break }
            last = next
        }
        for plan in inFlight { try await settle(plan, settled: &settled, of: total, progress: progress) }
        // Fewer than counted (which nothing should cause): the last report still ends it.
        if settled < total { progress?(.recovery, settled, settled) }
        for request in requests.values.sorted(by: { $0.sagaID < $1.sagaID }) { await carryOut(request) }
        return count
    }

    /// Pages whose writes may be in flight at once.
    static let recoveryPagesInFlight = 3

    /// A page of recovered sagas: its writes (submitted as one record), and what happens once
    /// they are durable.
    struct PagePlan {
        let writes: Task<Result<Int, SagaLaneError>, Never>
        let ended: [(UInt64, JSON)]
        let resumptions: [Resumption]
        /// The page's sagas.
        let count: Int
    }

    /// Settles `plan`, then tells `progress` how many sagas are settled of `total`.
    private func settle(_ plan: PagePlan, settled: inout Int, of total: Int, progress: ProgressHandler?) async throws(SagaLaneError) {
        try await settle(plan)
        settled += plan.count
        // Nothing else writes sagas before the coordinator runs, so the count holds; were it
        // short, the total grows rather than the count stopping below it.
        if settled > 0 { progress?(.recovery, settled, max(total, settled)) }
    }

    private func settle(_ plan: PagePlan) async throws(SagaLaneError) {
        if case .failure(let error) = await plan.writes.value {
            throw SagaLaneError(error.code, "start-up recovery could not write to the log: \(error.message)", underlying: error)
        }
        for (id, payload) in plan.ended { bus.publish(type: Event.sagaFailed, sagaID: id, payload: payload) }
        for resumption in plan.resumptions { resume(resumption) }
    }

    /// The policy an unfinished saga is recovered under: its type's (`.markFailed` for a type
    /// not registered), or `.compensate` for a running saga an operator asked to cancel.
    private func policy(_ saga: SagaOutline, type: SagaType?, cancelled: Bool) -> RecoveryPolicy {
        guard let type else { return .markFailed }
        return cancelled && saga.state == .running ? .compensate : type.recovery
    }

    /// The registry's type of a name, remembered for the last name asked: a page's sagas are
    /// mostly of one type, and asking the registry takes its lock and hashes the name.
    struct TypeLookup {
        private var last: (name: String, type: SagaType?)?

        mutating func type(named name: String, in registry: SagaRegistry) -> SagaType? {
            if let last, last.name.isExactly(name) { return last.type }
            let type = registry.type(named: name)
            last = (name, type)
            return type
        }
    }

    /// Whether the saga goes on (rather than being marked failed), so its whole rows are needed.
    private func goesOn(_ saga: SagaOutline, requests: [UInt64: SagaRequest], types: inout TypeLookup) -> Bool {
        let cancelled = requests[saga.id]?.action == .cancel
        return policy(saga, type: types.type(named: saga.name, in: registry), cancelled: cancelled) != .markFailed
    }

    /// Plans a page: `records`, when read, are its sagas whole, in the order of `page`.
    private func plan(_ page: [SagaOutline], _ records: [SagaRecord]?, requests: inout [UInt64: SagaRequest],
                      types: inout TypeLookup) -> PagePlan {
        var writes: [LogRecord] = []
        var ended: [(UInt64, JSON)] = []
        var resumptions: [Resumption] = []
        // Consecutive sagas marked failed go to the log as one record; anything else written
        // between them ends the run, so the log applies everything in the page's order.
        var marks: [FailedSagaMark] = []
        func flushMarks() {
            guard !marks.isEmpty else { return }
            writes.append(.markFailedCompensations(marks, eventType: Event.sagaFailed, recovered: RecoveryPolicy.markFailed.rawValue))
            marks.removeAll()
        }
        // Neighbours alike (one type, state, reason so far and pending steps) are given the
        // same reason and payload: built once for the run of them.
        var last: (saga: SagaOutline, reason: String, payload: JSON)?
        func markFailed(_ saga: SagaOutline, because problem: String? = nil) {
            if problem == nil, let last, last.saga.isLike(saga) {
                marks.append((sagaID: saga.id, reason: last.reason))
                ended.append((saga.id, last.payload))
                return
            }
            let (mark, payload) = self.markFailed(saga, because: problem)
            marks.append(mark)
            ended.append((saga.id, payload))
            last = problem == nil ? (saga, mark.reason, payload) : nil
        }
        for (i, saga) in page.enumerated() {
            var cancel: String?
            if let request = requests[saga.id], request.action == .cancel {
                requests.removeValue(forKey: saga.id)
                flushMarks()
                writes.append(.deleteRequest(sagaID: saga.id))
                cancel = request.note ?? "no reason given"
            }
            let type = types.type(named: saga.name, in: registry)
            let policy = self.policy(saga, type: type, cancelled: cancel != nil)
            guard let type, policy != .markFailed, let record = records?[i] else {
                markFailed(saga)
                continue
            }
            flushMarks()
            do throws(SagaLaneError) {
                let resumption = try plan(record, type: type, policy: policy, cancel: cancel, writes: &writes)
                resumptions.append(resumption)
            } catch {
                markFailed(saga, because: error.message)
            }
        }
        flushMarks()
        let log = self.log
        // The page's writes go to the writer as one record: one queueing, one report, all in
        // one commit, rather than a record (and a wake-up) per saga.
        let nothing = writes.isEmpty, record = LogRecord.all(writes)
        let task = Task(executorPreference: loop) { () -> Result<Int, SagaLaneError> in
            if nothing { return .success(0) }
            do throws(SagaLaneError) { return .success(try await log.write(record)) } catch { return .failure(error) }
        }
        return PagePlan(writes: task, ended: ended, resumptions: resumptions, count: page.count)
    }

    /// The saga is left for an operator: `failed_compensation`, with what was interrupted.
    private func markFailed(_ saga: SagaOutline, because problem: String? = nil) -> (FailedSagaMark, JSON) {
        var reason = RecoveryPlan.markFailedReason(saga)
        if let problem { reason += "; \(problem)" }
        // What the row reads once the reason is appended (see `LogRecord.markFailedCompensation`).
        let old = saga.failureReason ?? ""
        let full = old.isEmpty ? reason : old.containsExactly(reason) ? old : "\(old); \(reason)"
        let payload: JSON = ["name": .string(saga.name), "state": .string(SagaState.failedCompensation.rawValue),
                             "reason": .string(full), "recovered": .string(RecoveryPolicy.markFailed.rawValue)]
        return ((sagaID: saga.id, reason: reason), payload)
    }

    /// Decides how an unfinished saga goes on under `policy` (`.compensate` or `.resume`),
    /// adding to `writes` what the log must hold before it does.
    private func plan(_ record: SagaRecord, type: SagaType, policy: RecoveryPolicy, cancel: String?,
                      writes: inout [LogRecord]) throws(SagaLaneError) -> Resumption {
        func resumed(_ phase: SagaInstance.Phase, _ extra: JSONObject = [:]) -> LogRecord {
            var payload = extra
            payload["name"] = .string(type.name)
            payload["by"] = "recovery"
            payload["phase"] = .string(phase == .running ? "running" : "compensating")
            return .note(sagaID: record.id, event: LifecycleNote(type: Event.sagaResumed, payload: .object(payload)))
        }
        if record.state == .compensating {
            if cancel != nil {
                writes.append(.note(sagaID: record.id, event: operatorNote(type.name, "request_dropped",
                                                                            "the saga was compensating already: a cancel changes nothing")))
            }
            let (instance, pending, failed) = try compensatingInstance(record, type: type)
            if pending == nil, let failed {
                return .end(instance, .failedCompensation,
                            "\(instance.failureReason ?? "failed"); the compensation of step \(failed.compensates ?? 0) failed: \(failed.failureReason ?? "failed")")
            }
            writes.append(resumed(.compensating))
            guard let pending else { return .nextCompensation(instance) }
            let step = try SagaStep(target: pending.target, command: .null, storedSpec: pending.specJSON)
            guard let awaiting = redispatching(pending, step: step, for: instance) else {
                throw SagaLaneError(.corrupt, "compensation step \(pending.index)'s command cannot be read")
            }
            instance.awaiting = awaiting
            writes.append(.retryStep(sagaID: record.id, index: pending.index, attempt: awaiting.dispatch.attempt,
                                     reason: "attempt \(awaiting.dispatch.attempt - 1): interrupted by a restart"))
            return .send(instance, deadline: nil)
        }
        if policy == .compensate {
            let instance = SagaInstance(id: record.id, type: type, saga: UnrebuiltSaga("undone after a restart"), onEnded: nil)
            instance.nextStep = nextIndex(after: record.steps)
            instance.undo = try undoList(record.steps)
            for row in record.steps where row.state == .pending {
                writes.append(.failStep(sagaID: record.id, index: row.index, reason: "interrupted by a restart"))
            }
            let reason = cancel.map { "cancelled: \($0)" } ?? "interrupted: the runtime restarted while the saga was running"
            if instance.undo.isEmpty { return .end(instance, .failed, "\(reason); none of its steps has a compensation") }
            let announce: JSONObject = cancel != nil ? ["by": "operator"] : ["recovered": .string(RecoveryPolicy.compensate.rawValue)]
            return .compensate(instance, reason, announce)
        }
        switch replay(record, type: type) {
        case .redispatch(let instance, let row, let step):
            guard let awaiting = redispatching(row, step: step, for: instance) else {
                return .fail(instance, "step \(row.index)'s stored command cannot be read")
            }
            instance.awaiting = awaiting
            writes.append(.retryStep(sagaID: record.id, index: row.index, attempt: awaiting.dispatch.attempt,
                                     reason: "attempt \(awaiting.dispatch.attempt - 1): interrupted by a restart"))
            writes.append(resumed(.running, ["step": .int(Int64(row.index))]))
            return .send(instance, deadline: remainingDeadline(type, startedAt: record.startedAt))
        case .apply(let instance, let action):
            writes.append(resumed(.running))
            return .apply(instance, action, deadline: remainingDeadline(type, startedAt: record.startedAt))
        case .fail(let instance, let reason):
            for row in record.steps where row.state == .pending {
                writes.append(.failStep(sagaID: record.id, index: row.index, reason: "interrupted by a restart; \(reason)"))
            }
            return .fail(instance, reason)
        }
    }

    /// What is left of a saga's deadline, counted from its running row (none: it passes at
    /// once).
    private func remainingDeadline(_ type: SagaType, startedAt: Timestamp) -> Duration {
        let elapsed = Duration.milliseconds(max(0, Timestamp.now().millisecondsSinceEpoch - startedAt.millisecondsSinceEpoch))
        return max(.zero, type.timeout - elapsed)
    }

    /// Puts a recovered saga back in flight and sets it going.
    func resume(_ resumption: Resumption) {
        switch resumption {
        case .send(let instance, let deadline):
            register(instance, deadline: deadline)
            send(instance)
        case .apply(let instance, let action, let deadline):
            register(instance, deadline: deadline)
            instance.busy = true
            onLoop {
                await self.apply(action, to: instance, cause: nil)
                await self.pump(instance)
            }
        case .fail(let instance, let reason):
            register(instance)
            onLoop { await self.finish(instance, as: .failed, reason: reason) }
        case .compensate(let instance, let reason, let announce):
            instance.ended = true
            ending.insert(instance.id)
            onLoop { await self.beginCompensation(instance, reason: reason, announce: announce) }
        case .nextCompensation(let instance):
            register(instance)
            onLoop { await self.nextCompensation(instance) }
        case .end(let instance, let state, let reason):
            instance.ended = true
            ending.insert(instance.id)
            onLoop { await self.writeEnd(instance, as: state, reason: reason) }
        }
    }

    /// In flight again: running (with `deadline`, or a whole one), or compensating.
    func register(_ instance: SagaInstance, deadline: Duration? = nil) {
        if instance.phase == .compensating {
            compensatingSagas[instance.id] = instance
            ending.insert(instance.id)
            return
        }
        sagas[instance.id] = instance
        for interest in instance.type.interests { interested[ExactName(interest), default: []].insert(instance.id) }
        armDeadline(instance, after: deadline ?? instance.type.timeout)
    }

    func operatorNote(_ name: String, _ action: String, _ note: String?) -> LifecycleNote {
        LifecycleNote(type: Event.sagaOperatorAction,
                      payload: ["name": .string(name), "action": .string(action), "note": note.map(JSON.string) ?? .null])
    }

    /// An operator's request recorded while the runtime was stopped, for a saga recovery left
    /// alone: carried out if the saga is in the state it was asked for, else dropped with a
    /// note in its history.
    private func carryOut(_ request: SagaRequest) async {
        let id = request.sagaID
        do throws(SagaLaneError) {
            try await log.write(.deleteRequest(sagaID: id))
            switch request.action {
            case .resume: try await resumeSaga(id: id, note: request.note)
            case .retryCompensation: try await retryCompensation(id: id, note: request.note)
            case .cancel: throw SagaLaneError(.state, "saga \(id) was no longer in flight")
            }
        } catch {
            diagnostics.warning("an operator's \(request.action.rawValue) request for saga \(id) was dropped: \(error.message)")
            if let name = try? log.saga(id: id)?.name {
                _ = try? await log.write(.note(sagaID: id, event: operatorNote(name, "request_dropped", error.message)))
            }
        }
    }
}

private extension SagaOutline {
    /// Whether `other` is marked failed with the same reason and payload: the same name and
    /// reason so far, byte for byte, the same state and pending steps.
    func isLike(_ other: SagaOutline) -> Bool {
        state == other.state && pendingSteps == other.pendingSteps && name.isExactly(other.name)
            && (failureReason ?? "").isExactly(other.failureReason ?? "")
    }
}
