import SagaLaneSupport
import Synchronization

/// What the coordinator knows by name: saga types, triggers, and command targets (single
/// targets, and families such as `lane:` resolved by the rest of the name). Safe from any
/// thread; registration may happen while sagas run.
final class SagaRegistry: Sendable {
    private struct Entries {
        var types: [ExactName: SagaType] = [:]
        var triggers: [Trigger] = []
        var targets: [ExactName: any SagaTarget] = ["self": SelfTarget()]
        var targetFamilies: [ExactName: @Sendable (String) throws(SagaLaneError) -> any SagaTarget] = [:]
    }

    private let entries = ConditionLock(Entries())

    /// Registers a saga type. Its name must be new.
    func register(_ type: SagaType) throws(SagaLaneError) {
        guard !type.name.isEmpty else { throw SagaLaneError(.invalidArgument, "a saga type needs a name") }
        try entries.withLock { (entries) throws(SagaLaneError) in
            guard entries.types[ExactName(type.name)] == nil else {
                throw SagaLaneError(.exists, "a saga type named '\(type.name)' is already registered")
            }
            entries.types[ExactName(type.name)] = type
        }
    }

    /// Adds a trigger. Its saga type must be registered; its event type cannot be a lifecycle
    /// event (those never start sagas).
    func addTrigger(_ trigger: Trigger) throws(SagaLaneError) {
        if Event(type: trigger.eventType).isLifecycle {
            throw SagaLaneError(.invalidArgument, "a trigger on \(trigger.eventType) would never fire: lifecycle events start no saga")
        }
        try entries.withLock { (entries) throws(SagaLaneError) in
            guard entries.types[ExactName(trigger.sagaType)] != nil else {
                throw SagaLaneError(.notFound, "a trigger names saga type '\(trigger.sagaType)', which is not registered")
            }
            entries.triggers.append(trigger)
        }
    }

    /// Registers `types` and adds `triggers` (each naming one of `types` or a type already
    /// registered) all at once, or none of them: a name already registered is refused, unless
    /// `onlyNew`, which leaves such a type (and its triggers) as it was. Returns the names
    /// registered.
    func register(types: [SagaType], triggers: [Trigger], onlyNew: Bool) throws(SagaLaneError) -> [String] {
        if let trigger = triggers.first(where: { Event(type: $0.eventType).isLifecycle }) {
            throw SagaLaneError(.invalidArgument, "a trigger on \(trigger.eventType) would never fire: lifecycle events start no saga")
        }
        return try entries.withLock { (entries) throws(SagaLaneError) -> [String] in
            var added: Set<ExactName> = []
            for type in types {
                let name = ExactName(type.name)
                guard !type.name.isEmpty else { throw SagaLaneError(.invalidArgument, "a saga type needs a name") }
                if entries.types[name] != nil || added.contains(name) {
                    if onlyNew { continue }
                    throw SagaLaneError(.exists, "a saga type named '\(type.name)' is already registered")
                }
                added.insert(name)
            }
            for trigger in triggers where entries.types[ExactName(trigger.sagaType)] == nil {
                guard added.contains(ExactName(trigger.sagaType)) else {
                    throw SagaLaneError(.notFound, "a trigger names saga type '\(trigger.sagaType)', which is not registered")
                }
            }
            for type in types where added.contains(ExactName(type.name)) { entries.types[ExactName(type.name)] = type }
            entries.triggers += triggers.filter { added.contains(ExactName($0.sagaType)) }
            return types.map(\.name).filter { added.contains(ExactName($0)) }
        }
    }

    /// Registers a command target under `name`.
    func register(target: any SagaTarget, named name: String) throws(SagaLaneError) {
        guard !name.isEmpty, !name.utf8.contains(UInt8(ascii: ":")) else {
            throw SagaLaneError(.invalidArgument, "a target name must be non-empty and contain no ':' (got '\(name)')")
        }
        try entries.withLock { (entries) throws(SagaLaneError) in
            guard entries.targets[ExactName(name)] == nil else {
                throw SagaLaneError(.exists, "a target named '\(name)' is already registered")
            }
            entries.targets[ExactName(name)] = target
        }
    }

    /// Registers a family of targets named `<prefix>:<rest>`, resolved by `resolve(rest)` at
    /// dispatch; it throws for names it does not know.
    func registerTargetFamily(prefix: String, resolve: @escaping @Sendable (String) throws(SagaLaneError) -> any SagaTarget) {
        entries.withLock { $0.targetFamilies[ExactName(prefix)] = resolve }
    }

    /// The saga type named `name`.
    func type(named name: String) -> SagaType? {
        entries.withLock { $0.types[ExactName(name)] }
    }

    /// The target a step names.
    func target(named name: String) throws(SagaLaneError) -> any SagaTarget {
        // A registered name first: looking for a family's prefix walks the name's characters.
        typealias Family = @Sendable (String) throws(SagaLaneError) -> any SagaTarget
        let (target, family) = entries.withLock { entries -> ((any SagaTarget)?, Family?) in
            if let target = entries.targets[ExactName(name)] { return (target, nil) }
            return (nil, name.firstIndex(of: ":").flatMap { entries.targetFamilies[ExactName(String(name[..<$0]))] })
        }
        if let target { return target }
        if let family, let colon = name.firstIndex(of: ":") {
            return try family(String(name[name.index(after: colon)...]))
        }
        throw SagaLaneError(.notFound, "no target named '\(name)'")
    }

    /// The triggers `event` fires, each with its saga type.
    func triggers(firedBy event: Event) -> [(Trigger, SagaType)] {
        entries.withLock { entries in
            entries.triggers.filter { $0.matches(event) }.compactMap { trigger in
                entries.types[ExactName(trigger.sagaType)].map { (trigger, $0) }
            }
        }
    }
}
