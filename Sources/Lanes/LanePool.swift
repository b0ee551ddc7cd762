import SagaLaneSupport

/// Named lanes in one place: how the runtime, the C API and the `lane:` saga target find them.
public final class LanePool: Sendable {
    private let lanes = ConditionLock<[String: Lane]>([:])

    public init() {}

    /// Adds `lane` under its name.
    public func add(_ lane: Lane) throws(SagaLaneError) {
        try lanes.withLock { lanes -> Result<Void, SagaLaneError> in
            guard lanes[lane.name] == nil else { return .failure(SagaLaneError(.exists, "a lane named '\(lane.name)' already exists")) }
            lanes[lane.name] = lane
            return .success(())
        }.get()
    }

    /// The lane named `name`.
    public func lane(named name: String) throws(SagaLaneError) -> Lane {
        guard let lane = lanes.withLock({ $0[name] }) else {
            throw SagaLaneError(.notFound, "no lane named '\(name)'")
        }
        return lane
    }

    public var names: [String] { lanes.withLock { $0.keys.sorted() } }

    /// Shuts every lane down.
    public func shutdown() {
        for lane in lanes.withLock({ Array($0.values) }) { lane.shutdown() }
    }
}
