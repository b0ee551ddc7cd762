import Glibc

// What this process's threads did, from /proc/self/task/*/schedstat: its first field is the
// nanoseconds a thread ran, its second the nanoseconds it waited on a run queue.

/// Calls `body` with each thread's folder (/proc/self/task/TID) and its schedstat fields.
private func forEachThread(_ body: (_ folder: String, _ schedstat: [Substring]) -> Void) {
    guard let dir = opendir("/proc/self/task") else { return }
    defer { closedir(dir) }
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid.first?.isNumber == true else { continue }
        let folder = "/proc/self/task/\(tid)"
        body(folder, firstLine(folder + "/schedstat").split(separator: " "))
    }
}

/// The time all of this process's threads have spent waiting on a run queue, in nanoseconds.
func runQueueNanos() -> Int {
    var total = 0
    forEachThread { _, fields in if fields.count > 1 { total += Int(fields[1]) ?? 0 } }
    return total
}

/// Nanoseconds on a CPU so far, by thread name (threads of one name, such as the
/// cooperative pool's, added together).
func cpuNanosByThread() -> [String: Int] {
    var times: [String: Int] = [:]
    forEachThread { folder, fields in
        if let ran = fields.first.flatMap({ Int($0) }) { times[firstLine(folder + "/comm"), default: 0] += ran }
    }
    return times
}

/// The threads busiest between `before` and `after` (two `cpuNanosByThread` readings taken
/// `seconds` apart), each as its share of one CPU, and the process's total.
func busiestThreads(from before: [String: Int], to after: [String: Int], seconds: Double, count: Int = 4) -> String {
    let busy = after.map { ($0.key, Double($0.value - (before[$0.key] ?? 0)) / 1e9 / seconds * 100) }.sorted { $0.1 > $1.1 }
    let total = busy.reduce(0) { $0 + $1.1 }
    return busy.prefix(count).map { "\($0.0) \(Int($0.1.rounded()))%" }.joined(separator: ", ")
        + "; the process \(Int(total.rounded()))% of one CPU"
}

/// The first line of the file at `path`, without its newline; empty when it cannot be read.
func firstLine(_ path: String) -> String {
    guard let f = fopen(path, "r") else { return "" }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, Int32(line.count), f) != nil else { return "" }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return text.split(separator: "\n").first.map(String.init) ?? ""
}
