/// The saga table in two parts by state, as its two partial indexes hold it (schema version 7
/// and later): `saga_unfinished` the running and compensating sagas by id, `saga_ended` every
/// other by state, then last activity. SQLite uses a partial index only for a query whose
/// WHERE clause repeats the index's condition word for word, so a query by state or activity
/// reads each part it needs with that part's condition (see `SagaArm`). On an older log
/// (read-only opens do not migrate) the condition is a plain filter, and the answer the same.
enum SagaPart: CaseIterable {
    case unfinished, ended

    /// The WHERE term of the part's index, as `Schema` wrote it.
    var condition: String {
        switch self {
        case .unfinished: "state IN ('running', 'compensating')"
        case .ended: "state NOT IN ('running', 'compensating')"
        }
    }
}

/// One SELECT of a query of the saga table by state: the unfinished part (few sagas, read
/// whole and sorted), or one state of the ended part, which `saga_ended` holds in the order of
/// activity, so that arms ordered by activity merge without a sort and a page from the middle
/// of a listing starts with a search.
struct SagaArm {
    let part: SagaPart
    /// The states asked for in the part; none for the whole of it.
    let states: [SagaState]

    /// The arms of a query of `states`, every state for none; each state once.
    static func arms(_ states: [SagaState]) -> [SagaArm] {
        let asked = states.isEmpty ? SagaState.allCases : SagaState.allCases.filter(states.contains)
        let unfinished = asked.filter(\.isUnfinished)
        var arms: [SagaArm] = []
        if !unfinished.isEmpty {
            arms.append(SagaArm(part: .unfinished, states: unfinished == SagaState.unfinished ? [] : unfinished))
        }
        for state in asked where state.isTerminal { arms.append(SagaArm(part: .ended, states: [state])) }
        return arms
    }
}

extension SagaArm {
    /// The arm's WHERE terms (its part's condition, and its states), with the arguments of
    /// their `?`s.
    var terms: (terms: [String], arguments: [SQLValue]) {
        guard !states.isEmpty else { return ([part.condition], []) }
        let placeholders = Array(repeating: "?", count: states.count).joined(separator: ", ")
        return ([part.condition, "state IN (\(placeholders))"], states.map { .text($0.rawValue) })
    }
}
