import Glibc
import SagaLaneJSON
import SagaLaneLog
import SagaLaneSupport
import Synchronization

struct Vacuum: Command {
    static let about = CommandInfo(
        name: "vacuum",
        abstract: "Delete sagas that ended long ago; shrink the file.",
        discussion: """
            --older-than deletes the sagas in a final state (completed, failed, compensated, \
            failed_compensation) that ended over DURATION ago, with their steps, in batches that \
            are each a transaction of their own. Unfinished sagas are never deleted, and the ids \
            of deleted ones are never handed out again.

            Deleting leaves the file its size: new rows reuse the room. --compact rewrites the \
            file without that room, in one transaction (a crash meanwhile leaves the file as it \
            was); it needs about as much free disk as the log's data takes.

            vacuum opens the log for writing, so it is refused while another process writes it \
            (stop that process first), and it never creates a log. --dry-run only reads: it \
            works while the log's owner runs. Progress goes to standard error when it is a \
            terminal; a one-line summary (JSON when standard output is not a terminal) ends it.

            Examples:
              sagalane vacuum app.db --older-than 30d --dry-run
              sagalane vacuum app.db --older-than 30d
              sagalane vacuum app.db --older-than 7d --compact
              sagalane vacuum app.db --compact
            """)

    var log = LogArgument()
    var olderThan: Duration?
    var dryRun = false
    var compact = false
    var batchSize = 500
    var output = OutputOptions()

    static func declare(_ arguments: inout Declarations<Self>) {
        arguments.group(\.log)
        arguments.option("--older-than", valueName: "duration",
                         help: "Delete final sagas that ended over DURATION ago: 30s, 15m, 12h, 7d, 2w.",
                         transform: durationArgument) { $0.olderThan = $1 }
        arguments.flag("--dry-run", help: "Count what would be deleted and reclaimed; change nothing.") { $0.dryRun = true }
        arguments.flag("--compact", help: "Rewrite the file without its free room, giving it back to the disk.") { $0.compact = true }
        arguments.option("--batch-size", valueName: "count", help: "Sagas deleted per transaction (default 500).",
                         transform: validLimit) { $0.batchSize = $1 }
        arguments.group(\.output)
    }

    func validate() throws {
        if olderThan == nil && !compact {
            throw ValidationError("vacuum needs --older-than DURATION (which sagas to delete), --compact (shrink the file), or both")
        }
    }

    func run() async throws {
        let cutoff = olderThan.map { Timestamp.now().advanced(by: .zero - $0) }
        if dryRun {
            try estimate(cutoff: cutoff)
        } else {
            try await vacuum(cutoff: cutoff)
        }
    }

    private func estimate(cutoff: Timestamp?) throws(CommandFailure) {
        let log = try self.log.openForReading()
        defer { log.close() }
        let estimate: VacuumEstimate
        let usage: LogFileUsage
        do throws(SagaLaneError) {
            estimate = try cutoff.map(log.vacuumEstimate(olderThan:)) ?? VacuumEstimate()
            usage = try log.fileUsage()
        } catch {
            throw failure(error, log)
        }
        switch output.resolved {
        case .json, .jsonl:
            let summary: JSON = [
                "dry_run": true,
                "cutoff": cutoff.map { .string($0.iso8601) } ?? .null,
                "sagas": .int(Int64(estimate.counts.sagas)),
                "steps": .int(Int64(estimate.counts.steps)),
                "oldest_end": estimate.oldestEnd.map { .string($0.iso8601) } ?? .null,
                "newest_end": estimate.newestEnd.map { .string($0.iso8601) } ?? .null,
                "bytes_on_disk": .int(Int64(usage.bytesOnDisk)),
                "free_bytes": .int(Int64(usage.freeBytes)),
                "used_bytes": .int(Int64(usage.usedBytes)),
            ]
            emit(summary.serialized + "\n")
        case .table:
            var line = ""
            if let cutoff {
                line = "would delete \(grouped(estimate.counts.sagas)) sagas and \(grouped(estimate.counts.steps)) steps"
                if let first = estimate.oldestEnd, let last = estimate.newestEnd {
                    line += " (ended \(shortTime(first)) to \(shortTime(last)))"
                } else {
                    line += " (none ended before \(shortTime(cutoff)))"
                }
                line += "; "
            }
            line += "\(byteCount(usage.bytesOnDisk)) on disk, \(byteCount(usage.freeBytes)) of it free"
            if compact { line += "; --compact would leave about \(byteCount(usage.usedBytes)) before this vacuum's deletions" }
            emit(line + "\n")
        }
    }

    private func vacuum(cutoff: Timestamp?) async throws(CommandFailure) {
        let log = try self.log.openForWriting()
        let name = log.path ?? self.log.database
        let progress = ProgressLine()
        let before = diskBytes(name)
        let deleting = Stopwatch()
        var counts = VacuumCounts()
        var compacting: Duration?
        var freeAfter = 0
        do throws(SagaLaneError) {
            if let cutoff {
                let total = try log.vacuumEstimate(olderThan: cutoff).counts.sagas
                progress.update("vacuum \(name): deleting \(grouped(total)) sagas…", force: true)
                counts = try await log.vacuum(olderThan: cutoff, batchSize: batchSize) { done in
                    let percent = total == 0 ? 100 : min(100, done.sagas * 100 / total)
                    progress.update("vacuum \(name): deleted \(grouped(done.sagas)) of \(grouped(total)) sagas (\(percent)%) "
                                    + "and \(grouped(done.steps)) steps, \(seconds(deleting.elapsed))", force: done.sagas >= total)
                }
            }
            if compact {
                let started = Stopwatch()
                let used = try log.fileUsage().usedBytes
                let ticker = Task { [progress] in
                    while !Task.isCancelled {
                        progress.update("compacting \(name): about \(byteCount(used)) to rewrite, \(seconds(started.elapsed))", force: true)
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                }
                // The ticker is over before anything else is written.
                func stopTicker() async {
                    ticker.cancel()
                    await ticker.value
                }
                do throws(SagaLaneError) {
                    _ = try await log.compact()
                } catch {
                    await stopTicker()
                    throw error
                }
                await stopTicker()
                compacting = started.elapsed
            }
            freeAfter = try log.fileUsage().freeBytes
        } catch {
            progress.finish()
            log.close()
            throw failure(error, log)
        }
        let deleteTime = deleting.elapsed - (compacting ?? .zero)
        // Closing checkpoints the write-ahead log into the file: the sizes after are the file's.
        log.close()
        progress.finish()
        let after = diskBytes(name)
        let reclaimed = max(0, before - after)
        switch output.resolved {
        case .json, .jsonl:
            let summary: JSON = [
                "dry_run": false,
                "cutoff": cutoff.map { .string($0.iso8601) } ?? .null,
                "sagas_deleted": .int(Int64(counts.sagas)),
                "steps_deleted": .int(Int64(counts.steps)),
                "delete_seconds": cutoff == nil ? .null : .double(secondsValue(deleteTime)),
                "compacted": .bool(compacting != nil),
                "compact_seconds": compacting.map { .double(secondsValue($0)) } ?? .null,
                "bytes_before": .int(Int64(before)),
                "bytes_after": .int(Int64(after)),
                "bytes_reclaimed": .int(Int64(reclaimed)),
                "free_bytes": .int(Int64(freeAfter)),
            ]
            emit(summary.serialized + "\n")
        case .table:
            var parts: [String] = []
            if cutoff != nil {
                parts.append("deleted \(grouped(counts.sagas)) sagas and \(grouped(counts.steps)) steps in \(seconds(deleteTime))")
            }
            if let compacting {
                parts.append("compacted in \(seconds(compacting)): \(byteCount(before)) → \(byteCount(after)), \(byteCount(reclaimed)) reclaimed")
            } else if freeAfter > 0 {
                parts.append("\(byteCount(reclaimed)) reclaimed — run with --compact to shrink the file")
            } else {
                parts.append("\(byteCount(reclaimed)) reclaimed")
            }
            emit(parts.joined(separator: "; ") + "\n")
        }
    }
}

/// The log's file and its write-ahead log, on disk.
private func diskBytes(_ path: String) -> Int {
    func size(_ file: String) -> Int {
        var info = stat()
        return stat(file, &info) == 0 ? Int(info.st_size) : 0
    }
    return size(path) + size(path + "-wal")
}

private func secondsValue(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return ((Double(whole) + Double(attoseconds) / 1e18) * 1000).rounded() / 1000
}
