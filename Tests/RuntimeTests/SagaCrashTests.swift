import Glibc
import SagaLaneTestSupport
import Testing
@testable import SagaLane

/// Sagas in a child process killed with SIGKILL, then recovered by a second child on the same
/// log under their type's policy; the test reads what each child dispatched and what the log
/// holds afterwards.
@Suite(.timeLimit(.minutes(2)))
struct SagaCrashTests {
    struct Dispatch: Equatable, CustomStringConvertible {
        var saga: UInt64, step: UInt32, attempt: Int, cmd: String, compensates: UInt32?
        init?(_ line: String) {
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 6, f[0] == "dispatch", let saga = UInt64(f[1]), let step = UInt32(f[2]), let attempt = Int(f[3]) else { return nil }
            self.saga = saga
            self.step = step
            self.attempt = attempt
            cmd = f[4]
            compensates = UInt32(f[5])
        }
        var description: String { "\(cmd)#\(step)/\(attempt)\(compensates.map { "<\($0)" } ?? "")" }
    }

    /// A step in `SagaStep`'s JSON form to the host; `answer` is how the first run answers it.
    static func step(_ cmd: String, _ answer: String = "ok", undo: String? = nil, undoAnswer: String = "ok") -> JSON {
        var step: JSONObject = ["target": "host", "command": ["cmd": .string(cmd), "answer": .string(answer)]]
        if let undo { step["compensation"] = ["command": ["cmd": .string(undo), "answer": .string(undoAnswer)]] }
        return .object(step)
    }

    /// Runs a saga with `steps` in a child under `policy` and kills it with SIGKILL right after
    /// the dispatch `killAt` accepts went out.
    /// - Returns: The saga's id and the first run's dispatches.
    static func crash(_ path: String, _ policy: RecoveryPolicy, _ steps: [JSON],
               killAt: (Dispatch) -> Bool) throws -> (UInt64, [Dispatch]) {
        let input = JSON.object(["steps": .array(steps)]).serialized
        let child = try ChildProcess(ChildProcess.testChildPath, ["saga-crash", path, "run", policy.rawValue, input])
        var id: UInt64?
        var dispatches: [Dispatch] = []
        while let line = child.readLine() {
            if line.hasPrefix("started ") { id = UInt64(line.dropFirst(8)) }
            if let dispatch = Dispatch(line) {
                dispatches.append(dispatch)
                if killAt(dispatch) { break }
            }
        }
        #expect(child.kill9() == SIGKILL)
        return (try #require(id ?? dispatches.first?.saga), dispatches)
    }

    /// Recovers the log in a second child and waits for saga `id` to end there.
    /// - Returns: How many sagas recovery found, the dispatches, and the saga's end state.
    static func recover(_ path: String, _ policy: RecoveryPolicy, _ id: UInt64, rename: Bool = false) throws
        -> (recovered: Int?, dispatches: [Dispatch], state: String?)
    {
        let child = try ChildProcess(ChildProcess.testChildPath,
                                     ["saga-crash", path, "recover", policy.rawValue, String(id)] + (rename ? ["rename"] : []))
        var recovered: Int?, state: String?
        var dispatches: [Dispatch] = []
        while let line = child.readLine() {
            if line.hasPrefix("recovered ") { recovered = Int(line.dropFirst(10)) }
            if line.hasPrefix("end ") { state = line.split(separator: " ").last.map(String.init) }
            if let dispatch = Dispatch(line) { dispatches.append(dispatch) }
        }
        #expect(child.wait() == 0)
        return (recovered, dispatches, state)
    }

    static func history(_ log: SagaLog, _ id: UInt64) throws -> [String] {
        try log.lifecycleEvents(sagaID: id).map(\.type)
    }

    @Test func aResumeSagaKilledAfterItsFirstStepGoesOnFromItsSecond() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("resume.db")
            let (id, first) = try Self.crash(path, .resume, [Self.step("a"), Self.step("b", "hold"), Self.step("c")]) { $0.step == 1 }
            #expect(first.map(\.description) == ["a#0/1", "b#1/1"])
            let (recovered, again, state) = try Self.recover(path, .resume, id)
            #expect(recovered == 1)
            #expect(state == "completed")
            // Step 0 was replayed from its recorded result, not sent again; step 1 went out again
            // under the same saga id and index, as its second attempt.
            #expect(again.map(\.description) == ["b#1/2", "c#2/1"])
            #expect(again.allSatisfy { $0.saga == id })
            let log = try SagaLog.open(path: path)
            defer { log.close() }
            let steps = try log.sagaSteps(sagaID: id)
            #expect(steps.map(\.state) == [.succeeded, .succeeded, .succeeded])
            #expect(steps.map(\.attempts) == [1, 2, 1])
            #expect(steps[1].commandJSON.contains("\"saga_id\":\(id)") && steps[1].commandJSON.contains("\"step\":1"))
            #expect(try Self.history(log, id) == [Event.sagaStarted, Event.sagaResumed, Event.sagaCompleted])
        }
    }

    @Test func aCompensateSagaKilledMidWayUndoesExactlyItsSucceededStepsInReverse() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("compensate.db")
            let (id, first) = try Self.crash(path, .compensate, [Self.step("a", undo: "undo_a"), Self.step("b", undo: "undo_b"),
                                                            Self.step("c", "hold", undo: "undo_c"), Self.step("d", undo: "undo_d")]) { $0.step == 2 }
            #expect(first.map(\.cmd) == ["a", "b", "c"])
            let (_, again, state) = try Self.recover(path, .compensate, id)
            #expect(state == "compensated")
            // c never answered: it is not undone; d never ran.
            #expect(again.map(\.description) == ["undo_b#3/1<1", "undo_a#4/1<0"])
            let log = try SagaLog.open(path: path)
            defer { log.close() }
            let saga = try #require(try log.saga(id: id))
            #expect(saga.state == .compensated)
            #expect(saga.steps.map(\.state) == [.compensated, .compensated, .failed, .succeeded, .succeeded])
            #expect(saga.steps.map(\.compensates) == [nil, nil, nil, 1, 0])
            #expect(saga.steps[2].failureReason == "interrupted by a restart")
            #expect(try Self.history(log, id) == [Event.sagaStarted, Event.sagaCompensating, Event.sagaFailed])
        }
    }

    @Test func aSagaKilledWhileCompensatingFinishesCompensating() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("compensating.db")
            let (id, first) = try Self.crash(path, .resume, [Self.step("a", undo: "undo_a"), Self.step("b", undo: "undo_b", undoAnswer: "hold"),
                                                        Self.step("c", "no")]) { $0.compensates != nil }
            #expect(first.map(\.description) == ["a#0/1", "b#1/1", "c#2/1", "undo_b#3/1<1"])
            let (_, again, state) = try Self.recover(path, .resume, id)
            #expect(state == "compensated")
            #expect(again.map(\.description) == ["undo_b#3/2<1", "undo_a#4/1<0"])
            let log = try SagaLog.open(path: path)
            defer { log.close() }
            let saga = try #require(try log.saga(id: id))
            #expect(saga.failureReason == "the host said no to step 2")
            // Step 2 answered (with a No, on which the saga failed): it succeeded as a step.
            #expect(saga.steps.map(\.state) == [.compensated, .compensated, .succeeded, .succeeded, .succeeded])
            #expect(try Self.history(log, id) == [Event.sagaStarted, Event.sagaCompensating, Event.sagaResumed, Event.sagaFailed])
        }
    }

    @Test func aReplayThatDivergesAfterACrashFailsWithADeterminismError() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("diverge.db")
            let (id, _) = try Self.crash(path, .resume, [Self.step("a", undo: "undo_a"), Self.step("b", "hold")]) { $0.step == 1 }
            let (_, again, state) = try Self.recover(path, .resume, id, rename: true)
            // The saga fails; what it recorded as succeeded is undone with the compensation the log
            // stored, and nothing is dispatched on the strength of the diverging history.
            #expect(state == "compensated")
            #expect(again.map(\.cmd) == ["undo_a"])
            let log = try SagaLog.open(path: path)
            defer { log.close() }
            let reason = try #require(try log.saga(id: id)?.failureReason)
            #expect(reason.hasPrefix("determinism error: replaying step 0, the saga issued {\"answer\":\"ok\",\"cmd\":\"renamed\""), "\(reason)")
            #expect(reason.contains("but the log records {\"answer\":\"ok\",\"cmd\":\"a\""), "\(reason)")
        }
    }

    @Test func markFailedLeavesAKilledSagaForAnOperatorWhoResumesIt() async throws {
        try await onHostThread { () throws in
            let dir = TemporaryDirectory()
            let path = dir.file("operator.db")
            let (id, _) = try Self.crash(path, .markFailed, [Self.step("a"), Self.step("b", "hold")]) { $0.step == 1 }
            let runtime = try Runtime(options: RuntimeOptions(databasePath: path))
            defer { runtime.close() }
            let answered = ConditionLock<[String]>([])
            try runtime.register(SagaType(name: "list", timeout: .seconds(60), recovery: .markFailed) { _ in
                // Rebuilt by the operator's resume from the input the log stored.
                final class Two: Saga {
                    var n = 0
                    func start(_ context: SagaContext) -> SagaAction { n = 1; return .issue(target: "host", command: ["cmd": "a", "answer": "ok"]) }
                    func onEvent(_ event: Event, _ context: SagaContext) -> SagaAction {
                        guard event.type == "Ok" else { return .wait }
                        n += 1
                        return n == 2 ? .issue(target: "host", command: ["cmd": "b", "answer": "hold"]) : .done
                    }
                }
                return Two()
            })
            try runtime.register(target: CallbackTarget { step, reporter in
                answered.withLock { $0.append("\(step.command["cmd"]?.stringValue ?? "?")#\(step.step)/\(step.attempt)") }
                reporter.publish(type: "Ok", payload: ["step": .int(Int64(step.step))])
            }, named: "host")
            #expect(try runtime.start() == 1)
            #expect(try runtime.saga(id: id)?["state"] == "failed_compensation")
            try runtime.resumeSaga(id: id, note: "the host is back")
            #expect(try runtime.waitForSaga(id: id, timeoutMilliseconds: 30_000).state == .completed)
            #expect(answered.withLock { $0 } == ["b#1/2"])
            let saga = try #require(try runtime.saga(id: id))
            let history = saga["history"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
            #expect(history == [Event.sagaStarted, Event.sagaFailed, Event.sagaResumed, Event.sagaCompleted])
            #expect(saga["history"]?.arrayValue?[2]["payload"]?["note"] == "the host is back")
            // A saga that is not waiting for an operator is refused, clearly.
            #expect { try runtime.resolveSaga(id: id, note: "n/a") } throws: { ($0 as? SagaLaneError)?.code == .state }
        }
    }
}
