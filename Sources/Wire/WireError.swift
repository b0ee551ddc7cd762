import SagaLaneJSON
import SagaLaneSupport

/// A protocol error's code: a stable snake_case name that clients switch on, sent in every
/// error frame. A struct around the name, so codes can be added without breaking callers.
public struct WireErrorCode: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }

    // Frames and messages.
    /// The frame is not JSON (or not UTF-8).
    public static let malformedJSON = WireErrorCode("malformed_json")
    /// The frame passed the maximum size; the connection closes.
    public static let frameTooLarge = WireErrorCode("frame_too_large")
    /// The frame is JSON but not an object.
    public static let notAnObject = WireErrorCode("not_an_object")
    /// The object has no string `"type"`.
    public static let missingType = WireErrorCode("missing_type")
    /// No message has this type.
    public static let unknownType = WireErrorCode("unknown_type")
    /// The type exists, but is not sent in this direction (a client sending `command`).
    public static let unexpectedType = WireErrorCode("unexpected_type")
    /// A field is missing, of the wrong JSON type, or out of range.
    public static let badField = WireErrorCode("bad_field")
    /// A field the message does not have.
    public static let unknownField = WireErrorCode("unknown_field")
    /// A field the protocol defines but this peer cannot honour yet; never ignored.
    public static let unsupportedField = WireErrorCode("unsupported_field")

    // The handshake.
    /// A message other than `hello` came before the handshake.
    public static let handshakeRequired = WireErrorCode("handshake_required")
    /// No protocol version both sides speak; the connection closes.
    public static let unsupportedVersion = WireErrorCode("unsupported_version")
    /// A second `hello`.
    public static let alreadyHandshaken = WireErrorCode("already_handshaken")
    /// The peer's user id is not allowed; the connection closes before anything is read.
    public static let peerRefused = WireErrorCode("peer_refused")

    // Names and ids.
    public static let unknownTarget = WireErrorCode("unknown_target")
    /// Another live connection holds the target name.
    public static let targetTaken = WireErrorCode("target_taken")
    public static let unknownSagaType = WireErrorCode("unknown_saga_type")
    public static let unknownSaga = WireErrorCode("unknown_saga")
    /// A report for a saga that already ended.
    public static let sagaEnded = WireErrorCode("saga_ended")
    /// A report for a step that is not waiting for one here (never sent to this connection's
    /// targets, or answered already).
    public static let notAwaiting = WireErrorCode("not_awaiting")
    public static let unknownLane = WireErrorCode("unknown_lane")
    public static let unknownJob = WireErrorCode("unknown_job")
    /// The job is running or waits out a retry, so it cannot be cancelled.
    public static let notQueued = WireErrorCode("not_queued")
    public static let exists = WireErrorCode("exists")

    // The runtime's answers.
    /// The runtime refused (a saga type refused its input, a lane refused a job).
    public static let refused = WireErrorCode("refused")
    /// Too much is waiting; try again later.
    public static let again = WireErrorCode("again")
    public static let timedOut = WireErrorCode("timed_out")
    /// The log cannot record sagas' ends: new sagas are refused.
    public static let unhealthy = WireErrorCode("unhealthy")
    /// The agent is shutting down.
    public static let closing = WireErrorCode("closing")
    /// Any other runtime failure; the message says which.
    public static let failed = WireErrorCode("failed")

    /// Every code, for counters and documentation.
    public static let all: [WireErrorCode] = [
        .malformedJSON, .frameTooLarge, .notAnObject, .missingType, .unknownType, .unexpectedType, .badField,
        .unknownField, .unsupportedField, .handshakeRequired, .unsupportedVersion, .alreadyHandshaken, .peerRefused,
        .unknownTarget, .targetTaken, .unknownSagaType, .unknownSaga, .sagaEnded, .notAwaiting, .unknownLane,
        .unknownJob, .notQueued, .exists, .refused, .again, .timedOut, .unhealthy, .closing, .failed,
    ]
}

/// A message that could not be taken, as an error frame reports it.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: WireErrorCode
    public var message: String
    /// The request's `"id"`, when the message had a readable one: the error answers it.
    public var id: JSON?
    /// The request's `"type"`, when it had one.
    public var about: String?

    public init(_ code: WireErrorCode, _ message: String, id: JSON? = nil, about: String? = nil) {
        self.code = code
        self.message = message
        self.id = id
        self.about = about
    }

    public var description: String { "\(code): \(message)" }
}
