/// Heap room for at least `needed` elements (twice `capacity` at least) holding the `count`
/// elements moved from `base`, whose room is given back if it was on the heap: how the buffers
/// that start in lent stack space (`TemporaryStack`, `JSONWriter`) outgrow it.
@inline(never)
func moveToLargerRoom<Element>(_ base: UnsafeMutablePointer<Element>, count: Int, capacity: Int, needed: Int,
                               onHeap: Bool) -> (UnsafeMutablePointer<Element>, Int) {
    let newCapacity = max(capacity * 2, needed)
    let newBase = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
    newBase.moveInitialize(from: base, count: count)
    if onHeap { base.deallocate() }
    return (newBase, newCapacity)
}

/// A stack of values that starts in space the caller lends (stack space, from
/// `withUnsafeTemporaryAllocation`) and moves to the heap only when it outgrows it. Not a
/// value type: copying one shares its storage. `release()` ends it.
struct TemporaryStack<Element> {
    private var base: UnsafeMutablePointer<Element>
    private var capacity: Int
    private(set) var count = 0
    /// Whether it outgrew the space it was lent.
    private(set) var isOnHeap = false

    init(_ space: UnsafeMutableBufferPointer<Element>) {
        base = space.baseAddress!
        capacity = space.count
    }

    var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: base, count: count) }

    @inline(__always)
    mutating func append(_ element: Element) {
        if count == capacity { grow() }
        (base + count).initialize(to: element)
        count += 1
    }

    private mutating func grow() {
        (base, capacity) = moveToLargerRoom(base, count: count, capacity: capacity, needed: count + 1, onHeap: isOnHeap)
        isOnHeap = true
    }

    /// The elements from `start` on, moved (not copied) into an array of exactly their count.
    mutating func removeAll(from start: Int) -> [Element] {
        let moved = count - start
        guard moved > 0 else { return [] }
        let elements = [Element](unsafeUninitializedCapacity: moved) { target, initialized in
            target.baseAddress!.moveInitialize(from: base + start, count: moved)
            initialized = moved
        }
        count = start
        return elements
    }

    /// Destroys what is left and gives back heap storage.
    mutating func release() {
        base.deinitialize(count: count)
        count = 0
        if isOnHeap { base.deallocate() }
        isOnHeap = false
    }
}
