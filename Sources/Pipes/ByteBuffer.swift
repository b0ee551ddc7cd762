import Glibc

/// A growable byte buffer in malloc'd memory, whose bytes stay where they are while a write
/// of them is in flight (an `Array` may move its storage on any mutation). Freed with `free()`
/// by its owner.
struct ByteBuffer {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var count = 0
    private var capacity = 0

    /// Buffers larger than this are given back to the allocator when emptied, so one burst
    /// does not pin its memory for the connection's life.
    private static let keptCapacity = 1 << 20

    var isEmpty: Bool { count == 0 }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(count + bytes.count)
        memcpy(base! + count, bytes.baseAddress!, bytes.count)
        count += bytes.count
    }

    mutating func append(byte: UInt8) {
        reserve(count + 1)
        base!.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    mutating func removeAll() {
        count = 0
        if capacity > Self.keptCapacity {
            Glibc.free(base)
            base = nil
            capacity = 0
        }
    }

    private mutating func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        var grown = max(capacity * 2, 4096)
        while grown < needed { grown *= 2 }
        guard let moved = realloc(base, grown) else {
            // Out of memory: the process cannot go on sending; say so rather than corrupt.
            fatalError("sagalane: out of memory growing a pipe buffer to \(grown) bytes")
        }
        base = moved
        capacity = grown
    }

    mutating func free() {
        Glibc.free(base)
        base = nil
        count = 0
        capacity = 0
    }
}
