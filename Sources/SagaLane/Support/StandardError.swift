import Glibc

/// Writes `text` to standard error unbuffered. (Glibc's `stderr` is a mutable global, which
/// Swift 6 refuses to touch from arbitrary contexts.)
public func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
        offset += n
    }
}
