import Glibc
import SagaLaneJSON
import SagaLaneSupport

/// The longest request id accepted, in bytes (ids are echoed in replies, so they are bounded).
private let maxIDBytes = 256

/// The most members a frame read straight from its text has (in stack space); one with more
/// takes the general path.
private let maxFastMembers = 16

/// A message's members, sorted by name (by UTF-8 bytes, the order `JSONObject` keeps), each
/// name once: names are ranges of `names`, which is the frame's text (read straight from it)
/// or a copy of an object's names. Valid only while `names` is.
private struct Members {
    let names: UnsafeBufferPointer<UInt8>
    let entries: UnsafeBufferPointer<JSONRawMember>

    var count: Int { entries.count }

    func name(at index: Int) -> String {
        let entry = entries[index]
        return String(decoding: UnsafeBufferPointer(rebasing: names[entry.nameStart..<entry.nameStart + entry.nameCount]), as: UTF8.self)
    }

    func value(at index: Int) -> JSON { entries[index].value }

    /// The position of the member named `key` (compared by bytes), or `nil`.
    func index(of key: StaticString) -> Int? {
        let length = key.utf8CodeUnitCount
        let expected = key.utf8Start
        // Byte by byte: names are short, and most differ in their first bytes or their length.
        // Through a pointer: a subscript of `entries` would copy the member, value and all.
        guard var entry = entries.baseAddress else { return nil }
        for index in 0..<entries.count {
            defer { entry += 1 }
            guard entry.pointee.nameCount == length else { continue }
            let name = names.baseAddress! + entry.pointee.nameStart
            var i = 0
            while i < length && name[i] == expected[i] { i += 1 }
            if i == length { return index }
        }
        return nil
    }

    func value(_ key: StaticString) -> JSON? {
        guard let index = index(of: key) else { return nil }
        return entries[index].value
    }

    /// Negative, zero or positive as entry `a`'s name sorts before, equals or sorts after `b`'s.
    static func compare(_ a: JSONRawMember, _ b: JSONRawMember, in names: UnsafeBufferPointer<UInt8>) -> Int {
        let common = min(a.nameCount, b.nameCount)
        if common > 0 {
            let c = memcmp(names.baseAddress! + a.nameStart, names.baseAddress! + b.nameStart, common)
            if c != 0 { return Int(c) }
        }
        return a.nameCount - b.nameCount
    }

    /// The members of `object`, for `body`.
    static func with<R, E: Error>(_ object: JSONObject, _ body: (Members) throws(E) -> R) throws(E) -> R {
        var names: [UInt8] = []
        var entries: [JSONRawMember] = []
        entries.reserveCapacity(object.count)
        for (key, value) in object {
            entries.append(JSONRawMember(nameStart: names.count, nameCount: key.utf8.count, value: value))
            names.append(contentsOf: key.utf8)
        }
        let result: Result<R, E> = names.withUnsafeBufferPointer { buffer in
            entries.withUnsafeBufferPointer { entries in
                let members = Members(names: buffer, entries: entries)
                do throws(E) { return .success(try body(members)) } catch { return .failure(error) }
            }
        }
        return try result.get()
    }

    /// The members read from a frame's text (`JSON.topLevelMembers`), sorted; `nil` when a
    /// name is given twice (the general path keeps the last).
    static func sorted(_ entries: UnsafeMutableBufferPointer<JSONRawMember>, in names: UnsafeBufferPointer<UInt8>) -> Members? {
        var inOrder = true
        for i in entries.indices.dropFirst() where compare(entries[i - 1], entries[i], in: names) >= 0 {
            inOrder = false
            break
        }
        if inOrder { return Members(names: names, entries: UnsafeBufferPointer(entries)) }
        // Insertion sort, in place: a frame has few members.
        for i in entries.indices.dropFirst() {
            var j = i
            while j > 0 {
                let c = compare(entries[j - 1], entries[j], in: names)
                if c == 0 { return nil }
                if c < 0 { break }
                entries.swapAt(j - 1, j)
                j -= 1
            }
        }
        return Members(names: names, entries: UnsafeBufferPointer(entries))
    }
}

/// Reads a message's fields, each at most once, and knows which it has not read: a field the
/// message does not define is an error, never silently ignored.
private struct FieldReader {
    let members: Members
    let type: String
    let id: JSON?
    /// The members read, by position ("type" and "id" included). A member past the 64th is
    /// never marked, which is right: no message reads that many fields, so the first member
    /// left unread is always among the first 64.
    private var taken: UInt64 = 0

    init(members: Members, type: String, id: JSON?) {
        self.members = members
        self.type = type
        self.id = id
        mark("type")
        mark("id")
    }

    /// With "type" and "id" already found, at `typeIndex` and `idIndex`.
    init(members: Members, type: String, id: JSON?, typeIndex: Int?, idIndex: Int?) {
        self.members = members
        self.type = type
        self.id = id
        if let typeIndex, typeIndex < 64 { taken |= 1 << UInt64(typeIndex) }
        if let idIndex, idIndex < 64 { taken |= 1 << UInt64(idIndex) }
    }

    func error(_ code: WireErrorCode, _ message: String) -> WireError {
        WireError(code, message, id: id, about: type)
    }

    private mutating func mark(_ key: StaticString) {
        if let index = members.index(of: key), index < 64 { taken |= 1 << UInt64(index) }
    }

    private mutating func take(_ key: StaticString) -> JSON? {
        guard let index = members.index(of: key) else { return nil }
        if index < 64 { taken |= 1 << UInt64(index) }
        return members.value(at: index)
    }

    mutating func value(_ key: StaticString) -> JSON? { take(key) }

    mutating func string(_ key: StaticString) throws(WireError) -> String {
        guard let value = take(key) else { throw error(.badField, "\(type) needs a string \"\(key)\"") }
        guard let text = value.stringValue else { throw error(.badField, "\(type): \"\(key)\" must be a string") }
        return text
    }

    mutating func name(_ key: StaticString) throws(WireError) -> String {
        let text = try string(key)
        guard !text.isEmpty else { throw error(.badField, "\(type): \"\(key)\" must not be empty") }
        return text
    }

    mutating func optionalString(_ key: StaticString) throws(WireError) -> String? {
        guard let value = take(key), !value.isNull else { return nil }
        guard let text = value.stringValue else { throw error(.badField, "\(type): \"\(key)\" must be a string") }
        return text
    }

    mutating func integer(_ key: StaticString, in range: ClosedRange<Int64>) throws(WireError) -> Int64 {
        guard let value = take(key) else { throw error(.badField, "\(type) needs an integer \"\(key)\"") }
        return try check(key, value, range)
    }

    mutating func optionalInteger(_ key: StaticString, in range: ClosedRange<Int64>) throws(WireError) -> Int64? {
        guard let value = take(key), !value.isNull else { return nil }
        return try check(key, value, range)
    }

    private func check(_ key: StaticString, _ value: JSON, _ range: ClosedRange<Int64>) throws(WireError) -> Int64 {
        guard case .int(let number) = value else {
            throw error(.badField, "\(type): \"\(key)\" must be an integer")
        }
        guard range.contains(number) else {
            throw error(.badField, "\(type): \"\(key)\" is \(number), outside \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    mutating func sagaID(_ key: StaticString = "saga_id") throws(WireError) -> UInt64 {
        UInt64(try integer(key, in: 1...Int64.max))
    }

    mutating func step() throws(WireError) -> UInt32 {
        UInt32(try integer("step", in: 0...Int64(UInt32.max)))
    }

    mutating func bool(_ key: StaticString) throws(WireError) -> Bool? {
        guard let value = take(key), !value.isNull else { return nil }
        guard let flag = value.boolValue else { throw error(.badField, "\(type): \"\(key)\" must be true or false") }
        return flag
    }

    mutating func names(_ key: StaticString, required: Bool = true) throws(WireError) -> [String] {
        guard let value = take(key), !value.isNull else {
            if !required { return [] }
            throw error(.badField, "\(type) needs an array of strings \"\(key)\"")
        }
        guard let items = value.arrayValue else { throw error(.badField, "\(type): \"\(key)\" must be an array of strings") }
        var names: [String] = []
        for (index, item) in items.enumerated() {
            guard let name = item.stringValue, !name.isEmpty else {
                throw error(.badField, "\(type): \"\(key)\"[\(index)] must be a non-empty string")
            }
            names.append(name)
        }
        return names
    }

    /// Takes every field (a message whose fields are free, `ok`).
    mutating func takeAll() { taken = ~0 }

    /// Fails for a field that was not read (the first in the order of names).
    func finish() throws(WireError) {
        let unread = ~taken & (members.count >= 64 ? ~0 : (1 << UInt64(members.count)) - 1)
        guard unread != 0 else { return }
        throw error(.unknownField, "\(type) has no field \"\(members.name(at: unread.trailingZeroBitCount))\"")
    }
}

extension WireFrame {
    /// Parses one frame's bytes.
    /// - Throws: `WireError` naming what is wrong, with the request's id and type when those
    ///   could be read (so the error frame can answer the request).
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> WireFrame {
        // The usual frame, an object with plain names each given once, is read straight from
        // the text: its members' values are parsed, its names never become strings or a
        // `JSONObject`. Anything else (and every refusal of the JSON) takes the general path,
        // which reads the same fields the same way (WireFastPathTests compares the two).
        let text = UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        let fast = withUnsafeTemporaryAllocation(of: JSONRawMember.self, capacity: maxFastMembers) { space -> Result<WireFrame, WireError>? in
            guard let count = JSON.topLevelMembers(text, into: space) else { return nil }
            defer { space.baseAddress!.deinitialize(count: count) }
            guard let members = Members.sorted(UnsafeMutableBufferPointer(rebasing: space[..<count]), in: text) else { return nil }
            do throws(WireError) { return .success(try parse(members)) } catch { return .failure(error) }
        }
        if let fast { return try fast.get() }
        let value: JSON
        do { value = try JSON(parsing: bytes) } catch {
            throw WireError(.malformedJSON, "\(error)")
        }
        return try parse(value)
    }

    /// Parses a message from its JSON value.
    public static func parse(_ value: JSON) throws(WireError) -> WireFrame {
        guard case .object(let object) = value else {
            throw WireError(.notAnObject, "a message is a JSON object, not \(kind(of: value))")
        }
        return try Members.with(object) { (members) throws(WireError) in try parse(members) }
    }

    private static func parse(_ members: Members) throws(WireError) -> WireFrame {
        var id: JSON?
        let idIndex = members.index(of: "id")
        let typeIndex = members.index(of: "type")
        if let idIndex, case let raw = members.value(at: idIndex), !raw.isNull {
            switch raw {
            case .int: id = raw
            case .string(let text) where text.utf8.count <= maxIDBytes: id = raw
            default:
                throw WireError(.badField, "\"id\" must be an integer or a string of at most \(maxIDBytes) bytes",
                                about: typeIndex.flatMap { members.value(at: $0).stringValue })
            }
        }
        guard let typeIndex, let type = members.value(at: typeIndex).stringValue, !type.isEmpty else {
            throw WireError(.missingType, "a message needs a non-empty string \"type\"", id: id)
        }
        var fields = FieldReader(members: members, type: type, id: id, typeIndex: typeIndex, idIndex: idIndex)
        let message = try parseBody(type, &fields)
        try fields.finish()
        return WireFrame(id: id, message)
    }

    private static func kind(of value: JSON) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    private static func parseBody(_ type: String, _ f: inout FieldReader) throws(WireError) -> WireMessage {
        // The frames of a saga's steps first: the cases are tried in order.
        switch type {
        case "command":
            return .command(target: try f.name("target"), sagaID: try f.sagaID(), step: try f.step(),
                            command: f.value("command") ?? .null)
        case "step.done":
            return .stepDone(sagaID: try f.sagaID(), step: try f.step(), event: try f.name("event"),
                             payload: f.value("payload") ?? .null)
        case "step.failed":
            return .stepFailed(sagaID: try f.sagaID(), step: try f.step(), reason: try f.optionalString("reason") ?? "failed")
        case "hello":
            let version = Int(try f.integer("version", in: 0...Int64(Int32.max)))
            let name = try f.optionalString("name")
            let targets = try f.names("targets", required: false)
            return .hello(version: version, name: name, targets: targets)
        case "welcome":
            return .welcome(version: Int(try f.integer("version", in: 0...Int64(Int32.max))), server: try f.string("server"),
                            maxFrame: Int(try f.integer("max_frame", in: 1...Int64(Int32.max))))
        case "ok":
            var result: [String: JSON] = [:]
            for index in 0..<f.members.count {
                let key = f.members.name(at: index)
                if key != "type" && key != "id" { result[key] = f.members.value(at: index) }
            }
            f.takeAll()
            return .ok(result)
        case "error":
            return .error(code: try f.name("code"), message: try f.string("message"), about: try f.optionalString("about"))
        case "ping":
            return .ping
        case "target.register":
            return .targetRegister(names: try f.names("names"))
        case "target.unregister":
            return .targetUnregister(names: try f.names("names"))
        case "event.publish":
            let event = try f.name("event")
            let sagaID = try f.optionalInteger("saga_id", in: 1...Int64.max).map(UInt64.init)
            return .publish(event: event, sagaID: sagaID, payload: f.value("payload") ?? .null)
        case "subscribe":
            let filter: EventFilter
            switch f.value("events") {
            case nil, .null?: filter = .lifecycle
            case .string("*")?: filter = .all
            case .string("lifecycle")?: filter = .lifecycle
            case .array(let items)?:
                var types: Set<String> = []
                for (index, item) in items.enumerated() {
                    guard let name = item.stringValue, !name.isEmpty else {
                        throw f.error(.badField, "subscribe: \"events\"[\(index)] must be a non-empty string")
                    }
                    types.insert(name)
                }
                filter = .types(types)
            default:
                throw f.error(.badField, "subscribe: \"events\" must be \"*\", \"lifecycle\" or an array of event types")
            }
            let after = try f.optionalInteger("after", in: 0...Int64.max).map(UInt64.init)
            return .subscribe(events: filter, after: after)
        case "unsubscribe":
            return .unsubscribe
        case "event":
            let event = try f.name("event")
            let sagaID = try f.optionalInteger("saga_id", in: 1...Int64.max).map(UInt64.init)
            let payload = f.value("payload") ?? .null
            return .event(event: event, sagaID: sagaID, payload: payload,
                          version: UInt64(try f.integer("version", in: 0...Int64.max)))
        case "lagged":
            return .lagged(missed: UInt64(try f.integer("missed", in: 0...Int64.max)))
        case "saga.start":
            let saga = try f.name("saga")
            let input = f.value("input") ?? .null
            let key = try f.optionalString("idempotency_key")
            return .sagaStart(saga: saga, input: input, idempotencyKey: key)
        case "saga.cancel":
            return .sagaCancel(sagaID: try f.sagaID(), reason: try f.optionalString("reason"))
        case "saga.wait":
            return .sagaWait(sagaID: try f.sagaID(),
                             timeoutMilliseconds: try f.optionalInteger("timeout_ms", in: 0...Int64(Int32.max)).map(Int.init))
        case "saga.get":
            return .sagaGet(sagaID: try f.sagaID())
        case "lane.create":
            return .laneCreate(lane: try f.name("lane"), maxConcurrent: Int(try f.integer("max_concurrent", in: 1...1024)))
        case "lane.submit":
            var submit = WireLaneSubmit(lane: try f.name("lane"))
            submit.jobID = try f.optionalString("job_id") ?? ""
            submit.priority = Int(try f.optionalInteger("priority", in: Int64(Int32.min)...Int64(Int32.max)) ?? 0)
            submit.payload = f.value("payload") ?? .null
            if let retry = f.value("retry"), !retry.isNull {
                guard case .object(let members) = retry else {
                    throw f.error(.badField, "lane.submit: \"retry\" must be an object {\"max_attempts\", \"backoff_ms\"}")
                }
                let id = f.id
                submit.retry = try Members.with(members) { (members) throws(WireError) in
                    var r = FieldReader(members: members, type: "lane.submit retry", id: id)
                    let attempts = Int(try r.integer("max_attempts", in: 1...1000))
                    let backoff = Int(try r.optionalInteger("backoff_ms", in: 0...86_400_000) ?? 100)
                    try r.finish()
                    return RetryPolicy(maxAttempts: attempts, initialBackoff: .milliseconds(backoff))
                }
            }
            submit.reservationMilliseconds = try f.optionalInteger("reservation_ms", in: 1...Int64(Int32.max)).map(Int.init)
            submit.notify = try f.bool("notify") ?? false
            return .laneSubmit(submit)
        case "lane.cancel":
            return .laneCancel(lane: try f.name("lane"), jobID: try f.name("job_id"))
        case "lane.job":
            return .laneJob(jobID: try f.name("job_id"))
        case "lane.jobs":
            return .laneJobs(lane: try f.optionalString("lane"), state: try f.optionalString("state"),
                             limit: try f.optionalInteger("limit", in: 0...100_000).map(Int.init))
        case "lane.stats":
            return .laneStats(lane: try f.name("lane"))
        case "lane.job.ended":
            return .laneJobEnded(lane: try f.name("lane"), jobID: try f.name("job_id"), state: try f.name("state"),
                                 result: f.value("result"), error: try f.optionalString("error"),
                                 attempts: Int(try f.integer("attempts", in: 0...Int64(Int32.max))))
        case "worker.register":
            return .workerRegister(lane: try f.name("lane"), capacity: Int(try f.integer("capacity", in: 1...1024)))
        case "job":
            return .job(lane: try f.name("lane"), jobID: try f.name("job_id"),
                        attempt: Int(try f.integer("attempt", in: 1...Int64(Int32.max))), payload: f.value("payload") ?? .null)
        case "job.done":
            return .jobDone(jobID: try f.name("job_id"), result: f.value("result") ?? .null)
        case "job.failed":
            return .jobFailed(jobID: try f.name("job_id"), error: try f.optionalString("error") ?? "failed")
        case "agent.stats":
            return .agentStats
        default:
            throw f.error(.unknownType, "no message has the type \"\(type)\"")
        }
    }
}
