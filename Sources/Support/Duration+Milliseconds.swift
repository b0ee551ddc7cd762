extension Duration {
    /// The duration in whole milliseconds, rounded down, saturating (never trapping) for
    /// durations past what an Int64 of milliseconds holds.
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return seconds < 0 ? Int64.min : Int64.max }
        return ms.addingReportingOverflow(attoseconds / 1_000_000_000_000_000).partialValue
    }
}
