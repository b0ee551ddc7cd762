/// The saga table in two parts by state, as its two partial indexes hold it (schema version 7
/// and later): `saga_unfinished` the running and compensating sagas by id, `saga_ended` every
/// other by state and end. SQLite uses a partial index only for a query whose WHERE clause
/// repeats the index's condition word for word, so a query by state asks each part it needs
/// with that part's condition. On an older log (read-only opens do not migrate) the condition
/// is a plain filter, and the answer the same.
enum SagaPart: CaseIterable {
    case unfinished, ended

    /// The WHERE term of the part's index, as `Schema` wrote it.
    var condition: String {
        switch self {
        case .unfinished: "state IN ('running', 'compensating')"
        case .ended: "state NOT IN ('running', 'compensating')"
        }
    }

    func holds(_ state: SagaState) -> Bool { state.isUnfinished == (self == .unfinished) }

    /// The parts `states` fall in, each with its states in the order given; none for none.
    static func split(_ states: [SagaState]) -> [(part: SagaPart, states: [SagaState])] {
        allCases.compactMap { part in
            let mine = states.filter(part.holds)
            return mine.isEmpty ? nil : (part, mine)
        }
    }
}
