/// Why a text is not acceptable JSON, and where.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset of the problem in the input.
    public var offset: Int
    /// 1-based line of the problem.
    public var line: Int
    /// 1-based column (in bytes) of the problem.
    public var column: Int
    /// What is wrong, e.g. "expected a value".
    public var message: String

    public var description: String { "malformed JSON at line \(line), column \(column): \(message)" }
}
