/// An error from the coordinator or the bus: a kind that callers can switch on, and a message
/// for people.
public struct CoordinatorError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        fileprivate let name: String
        public static let invalidArgument = Kind(name: "invalid argument")
        /// A saga type's factory refused the input.
        public static let inputRefused = Kind(name: "input refused")
        public static let unknownSagaType = Kind(name: "unknown saga type")
        public static let unknownSaga = Kind(name: "unknown saga")
        public static let unknownTarget = Kind(name: "unknown target")
        public static let duplicateName = Kind(name: "duplicate name")
        public static let logUnhealthy = Kind(name: "log unhealthy")
        public static let logWrite = Kind(name: "log write failed")
        public static let notRunning = Kind(name: "not running")
        public static let closed = Kind(name: "closed")
        public var description: String { name }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind): \(message)" }
}
