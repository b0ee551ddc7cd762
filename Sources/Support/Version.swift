/// The library's version. Same major, same C ABI.
public enum SagaLaneVersion {
    public static let major = 0
    public static let minor = 1
    public static let patch = 0
    public static var string: String { "\(major).\(minor).\(patch)" }
}
