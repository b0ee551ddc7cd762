import SagaLaneSupport

/// Named lanes in one place: how the runtime, the C API and the `lane:` saga target find them.
public final class LanePool: Sendable {
    private let lanes = ConditionLock<[ExactName: Lane]>([:])

    public init() {}

    /// Adds `lane` under its name.
    public func add(_ lane: Lane) throws(SagaLaneError) {
        try lanes.withLock { lanes -> Result<Void, SagaLaneError> in
            guard lanes[ExactName(lane.name)] == nil else { return .failure(SagaLaneError(.exists, "a lane named '\(lane.name)' already exists")) }
            lanes[ExactName(lane.name)] = lane
            return .success(())
        }.get()
    }

    /// The lane named `name`.
    public func lane(named name: String) throws(SagaLaneError) -> Lane {
        guard let lane = lanes.withLock({ $0[ExactName(name)] }) else {
            throw SagaLaneError(.notFound, "no lane named '\(name)'")
        }
        return lane
    }

    /// The lanes' names, in byte order.
    public var names: [String] { lanes.withLock { $0.keys.map(\.string).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } } }

    /// Shuts every lane down.
    public func shutdown() {
        for lane in lanes.withLock({ Array($0.values) }) { lane.shutdown() }
    }
}
