import Glibc

/// A name compared byte for byte, by its UTF-8: how sagalane tells every name apart (saga
/// types, targets, lanes, event types, job ids, fan-out keys).
///
/// Swift's `String` compares by Unicode canonical equivalence, so "é" written as one scalar
/// and as "e" plus a combining accent would be one name, and the Kelvin sign would find
/// "Kafka" triggers as "Kafka"'s K; SQLite, where the names are stored, compares bytes.
/// Names are identifiers, not text to display: an exact match is the only rule that keeps the
/// runtime and its log in agreement. Use it as a dictionary key instead of `String`.
public struct ExactName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let string: String

    public init(_ string: String) { self.string = string }
    public init(stringLiteral value: String) { string = value }

    public static func == (a: ExactName, b: ExactName) -> Bool { a.string.isExactly(b.string) }

    public func hash(into hasher: inout Hasher) {
        var text = string
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    public var description: String { string }
}

extension String {
    /// Whether the two are the same bytes (see `ExactName`). Lengths first (a native string
    /// knows its own): most names compared differ in length.
    public func isExactly(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        // One memcmp of the two buffers: walking two UTF-8 views byte by byte through their
        // iterators costs some ten instructions a byte.
        var a = self, b = other
        return a.withUTF8 { x in b.withUTF8 { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
    }

    /// Whether `part`'s bytes occur in the string's, as `isExactly` compares. (The standard
    /// library's `contains` for a string comes from _StringProcessing, a megabyte of regular
    /// expression machinery that the static binary would carry for it.)
    public func containsExactly(_ part: String) -> Bool {
        var text = self, part = part
        return text.withUTF8 { whole in
            part.withUTF8 { piece in
                guard let first = piece.first else { return true }
                guard whole.count >= piece.count else { return false }
                for start in 0...(whole.count - piece.count)
                where whole[start] == first && memcmp(whole.baseAddress! + start, piece.baseAddress!, piece.count) == 0 {
                    return true
                }
                return false
            }
        }
    }
}
