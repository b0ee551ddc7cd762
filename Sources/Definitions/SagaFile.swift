import Glibc
import SagaLaneCoordinator
import SagaLaneJSON
import SagaLaneSupport

/// Saga types written as data: a JSON file the agent loads (`sagalane agent --sagas FILE`)
/// and hosts load through `sl_saga_types_load`. See docs/sagas-file.md for the format.
///
/// Loading checks everything before anything is registered and reports every problem at
/// once, each with the line and column of the value it is about, the saga and the step.
public struct SagaFile: Sendable {
    /// The largest file accepted: the largest value the C API takes.
    public static let maxBytes = 16 << 20
    /// The format's version this build reads.
    public static let version: Int64 = 1

    /// The sagas, in the order of the file.
    public let definitions: [SagaDefinition]

    /// Reads a saga file's text; `source` names it in messages (a path, or `<input>`).
    /// - Throws: `SagaFileError` listing every problem found.
    public init(text: String, source: String = "<input>") throws(SagaFileError) {
        let bytes = Array(text.utf8)
        guard bytes.count <= SagaFile.maxBytes else {
            throw SagaFileError(source: source, problems: [.init(line: 1, column: 1, context: "",
                message: "the file is \(bytes.count) bytes; the largest accepted is \(SagaFile.maxBytes)")])
        }
        let json: JSON
        do { json = try JSON(parsing: bytes) } catch {
            throw SagaFileError(source: source, problems: [.init(line: error.line, column: error.column, context: "",
                message: "not valid JSON: \(error.message)")])
        }
        var reader = DefinitionReader(locator: SourceLocator(bytes))
        definitions = reader.file(json)
        guard reader.problems.isEmpty else { throw SagaFileError(source: source, problems: reader.problems) }
    }

    /// Reads the saga file at `path`.
    public init(contentsOf path: String) throws(SagaFileError) {
        let text: String
        do { text = try readWholeFile(path, limit: SagaFile.maxBytes) } catch {
            throw SagaFileError(source: path, problems: [.init(line: 0, column: 0, context: "", message: error.message)])
        }
        try self.init(text: text, source: path)
    }

    /// The saga types to register, one per definition.
    public var sagaTypes: [SagaType] { definitions.map(\.sagaType) }

    /// The triggers of the definitions that have one.
    public var triggers: [Trigger] { definitions.compactMap(\.trigger) }
}

/// Why a saga file was refused: every problem found, in the order of the file.
public struct SagaFileError: Error, Sendable, CustomStringConvertible {
    /// One problem: where it is and what is wrong.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// 1-based; 0 when the problem is the file itself (it could not be read).
        public var line: Int
        public var column: Int
        /// Which saga and step, e.g. `saga "refund", step 2 ("charge")`; empty for the file.
        public var context: String
        public var message: String

        public var description: String { context.isEmpty ? message : context + ": " + message }
    }

    /// The file's name as given, for messages.
    public var source: String
    public var problems: [Problem]

    /// Every problem, one a line, as `FILE:LINE:COLUMN: saga "x", step 1 ("y"): what`.
    public var description: String {
        problems.map { p in
            (p.line > 0 ? "\(source):\(p.line):\(p.column): " : "\(source): ") + p.description
        }.joined(separator: "\n")
    }
}

/// Reads a whole file of at most `limit` bytes as UTF-8 text.
func readWholeFile(_ path: String, limit: Int) throws(SagaLaneError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SagaLaneError(.cantOpen, "cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SagaLaneError(.cantOpen, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes += chunk[0..<n]
        if bytes.count > limit { throw SagaLaneError(.invalidArgument, "\(path) is larger than \(limit) bytes, the largest saga file accepted") }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw SagaLaneError(.invalidArgument, "\(path) is not UTF-8 text")
    }
    return text
}
