import SagaLane

/// `const char *sl_version(void)`: a static string, never freed.
@_cdecl("sl_version")
public func sl_version() -> UnsafePointer<CChar> {
    VersionCString.shared.pointer
}

private final class VersionCString: Sendable {
    static let shared = VersionCString()
    nonisolated(unsafe) let pointer: UnsafePointer<CChar>
    private init() {
        let bytes = Array(SagaLaneVersion.string.utf8CString)
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        p.initialize(from: bytes, count: bytes.count)
        pointer = UnsafePointer(p)
    }
}
