import CSagaLane
import SagaLane

@implementation @_cdecl("sl_version")
public func sl_version() -> UnsafePointer<CChar>? {
    VersionCString.shared.pointer
}

@implementation @_cdecl("sl_version_hex")
public func sl_version_hex() -> UInt32 {
    UInt32(SagaLaneVersion.major << 16 | SagaLaneVersion.minor << 8 | SagaLaneVersion.patch)
}

/// The version as a C string that lives as long as the process.
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
