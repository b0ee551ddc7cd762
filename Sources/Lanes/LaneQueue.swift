/// The jobs a lane holds ready to run, as a plain value: no threads, no locks (the lane keeps
/// it under its own lock).
///
/// Higher priority leaves first, FIFO within a priority. Each priority has a level of its own
/// with a count of the elements still in it, so where a new element stands is the sum of the
/// counts at or above its priority, without walking the queue.
///
/// Removing an element from the middle (a cancel) only marks it: it leaves its level when it
/// reaches the front, or when marked elements outnumber the others and the level is compacted.
/// So cancelling many queued jobs costs no more than queueing them did.
struct LaneQueue<Element> {
    /// An element's place: its priority and its turn, in the order elements were appended.
    struct Ticket: Hashable, Sendable {
        let priority: Int
        let sequence: UInt64
    }

    private struct Slot {
        let sequence: UInt64
        let element: Element
    }

    /// The elements of one priority, in ticket order. `removed` holds the sequence numbers of
    /// those taken out by `remove` that are still in `slots`.
    private struct Level {
        let priority: Int
        var slots = Ring<Slot>()
        var removed: Set<UInt64> = []

        /// Elements of this level still queued.
        var live: Int { slots.count - removed.count }

        /// The index in `slots` of `sequence`, or where it would go.
        func search(_ sequence: UInt64) -> (index: Int, found: Bool) {
            var low = 0, high = slots.count
            while low < high {
                let mid = low + (high - low) / 2
                let here = slots[mid].sequence
                if here == sequence { return (mid, true) }
                if here < sequence { low = mid + 1 } else { high = mid }
            }
            return (low, false)
        }

        /// Drops the marked slots once they dominate, so a level of mostly cancelled jobs does
        /// not keep them all.
        mutating func compactIfSparse() {
            if removed.count == slots.count {
                slots.removeAll()
                removed.removeAll()
            } else if removed.count > live + 64 {
                let removed = self.removed
                slots.removeAll { removed.contains($0.sequence) }
                self.removed.removeAll()
            }
        }
    }

    /// Highest priority first. Empty levels are dropped when the list grows, so priorities
    /// that come and go do not make it long.
    private var levels: [Level] = []
    private var lastSequence: UInt64 = 0
    /// Elements queued, over every level.
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// Appends `element` behind everything queued at `priority`.
    /// - Returns: Its ticket, and its position: how many queued elements leave before it.
    mutating func append(_ element: Element, priority: Int) -> (ticket: Ticket, position: Int) {
        lastSequence &+= 1
        let ticket = Ticket(priority: priority, sequence: lastSequence)
        var ahead = 0
        var index = 0
        while index < levels.count && levels[index].priority > priority {
            ahead += levels[index].live
            index += 1
        }
        if index == levels.count || levels[index].priority != priority {
            if levels.count >= 16 { dropEmptyLevels(keeping: &index) }
            levels.insert(Level(priority: priority), at: index)
        }
        ahead += levels[index].live
        levels[index].slots.append(Slot(sequence: ticket.sequence, element: element))
        count += 1
        return (ticket, ahead)
    }

    /// Takes out the element that leaves next: the oldest of the highest priority.
    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        for index in levels.indices where levels[index].live > 0 {
            while let slot = levels[index].slots.popFirst() {
                if !levels[index].removed.isEmpty && levels[index].removed.remove(slot.sequence) != nil { continue }
                count -= 1
                return slot.element
            }
        }
        return nil
    }

    /// Takes out the element holding `ticket`, wherever it stands.
    /// - Returns: The element, or `nil` if no queued element holds that ticket.
    mutating func remove(_ ticket: Ticket) -> Element? {
        guard let index = levelIndex(ticket.priority) else { return nil }
        let (slot, found) = levels[index].search(ticket.sequence)
        guard found, !levels[index].removed.contains(ticket.sequence) else { return nil }
        let element = levels[index].slots[slot].element
        levels[index].removed.insert(ticket.sequence)
        count -= 1
        levels[index].compactIfSparse()
        return element
    }

    /// Puts back an element that `remove` took out, in the place its ticket gives it (a
    /// cancel that could not be recorded leaves the job where it was).
    /// - Returns: `false`, changing nothing, if an element already holds the ticket or the
    ///   ticket is not one this queue handed out.
    @discardableResult
    mutating func reinstate(_ element: Element, _ ticket: Ticket) -> Bool {
        guard ticket.sequence >= 1 && ticket.sequence <= lastSequence else { return false }
        var index = 0
        while index < levels.count && levels[index].priority > ticket.priority { index += 1 }
        if index == levels.count || levels[index].priority != ticket.priority {
            levels.insert(Level(priority: ticket.priority), at: index)
        }
        let (slot, found) = levels[index].search(ticket.sequence)
        if found {
            guard levels[index].removed.remove(ticket.sequence) != nil else { return false }
        } else {
            levels[index].slots.insert(Slot(sequence: ticket.sequence, element: element), at: slot)
        }
        count += 1
        return true
    }

    /// Empties the queue.
    /// - Returns: The elements it held, in the order they would have left.
    @discardableResult
    mutating func removeAll() -> [Element] {
        var elements: [Element] = []
        elements.reserveCapacity(count)
        while let element = popFirst() { elements.append(element) }
        levels.removeAll()
        count = 0
        return elements
    }

    /// Elements queued at `priority`.
    func count(atPriority priority: Int) -> Int {
        levelIndex(priority).map { levels[$0].live } ?? 0
    }

    private func levelIndex(_ priority: Int) -> Int? {
        levels.firstIndex { $0.priority == priority }
    }

    /// Keeps the level list short when priorities come and go; `index` follows its level.
    private mutating func dropEmptyLevels(keeping index: inout Int) {
        let before = levels[..<index].reduce(0) { $0 + ($1.live == 0 ? 1 : 0) }
        levels.removeAll { $0.live == 0 }
        index -= before
    }
}

/// The last 64 run times of a lane's jobs: their mean, and the wait a new job can expect.
struct RunTimeWindow {
    private var samples = [Int64](repeating: 0, count: 64)
    private var filled = 0, cursor = 0
    private var sum: Int64 = 0

    /// A sample is capped so that 64 of them cannot overflow the sum (no job runs 4,000 years).
    private static var longestSample: Int64 { Int64.max / 64 }

    init() {}

    mutating func record(nanoseconds: Int64) {
        let sample = min(max(0, nanoseconds), Self.longestSample)
        if filled < samples.count {
            samples[filled] = sample
            filled += 1
        } else {
            sum -= samples[cursor]
            samples[cursor] = sample
            cursor = (cursor + 1) % samples.count
        }
        sum += sample
    }

    /// Zero until something ran.
    var mean: Duration {
        filled == 0 ? .zero : .nanoseconds(sum / Int64(filled))
    }

    /// How long a job `ahead` places from the front waits, with `running` jobs holding some
    /// of `slots` slots: the rounds of work before it, spread over the slots, each taking the
    /// mean run time. Zero until something ran; saturates rather than overflowing.
    func estimatedWait(ahead: Int, running: Int, slots: Int) -> Duration {
        guard filled > 0 else { return .zero }
        let slots = max(1, slots)
        // A job at the front still waits for a slot while every slot is taken.
        let busy = running >= slots ? Double(running) - Double(slots) + 1 : 0
        let rounds = (Double(max(0, ahead)) + busy) / Double(slots)
        let nanos = Double(sum / Int64(filled)) * rounds
        guard nanos < Double(Int64.max) else { return .nanoseconds(Int64.max) }
        return .nanoseconds(Int64(nanos))
    }
}

/// A FIFO in a power-of-two ring, so a queue that keeps draining to empty costs no
/// reallocation.
struct Ring<Element> {
    private var storage: [Element?] = []
    private var head = 0
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// The element `index` places from the front.
    subscript(index: Int) -> Element {
        storage[(head + index) & (storage.count - 1)]!
    }

    mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = element
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = storage[head]
        storage[head] = nil
        head = (head + 1) & (storage.count - 1)
        count -= 1
        return element
    }

    /// Inserts `element` `index` places from the front. Linear: for the rare put-back.
    mutating func insert(_ element: Element, at index: Int) {
        var rebuilt = Ring()
        rebuilt.reserve(count + 1)
        for i in 0..<index { rebuilt.append(self[i]) }
        rebuilt.append(element)
        for i in index..<count { rebuilt.append(self[i]) }
        self = rebuilt
    }

    /// Keeps the elements `shouldRemove` rejects, in order.
    mutating func removeAll(where shouldRemove: (Element) -> Bool) {
        var kept = Ring()
        while let element = popFirst() {
            if !shouldRemove(element) { kept.append(element) }
        }
        self = kept
    }

    mutating func removeAll() { self = Ring() }

    private mutating func reserve(_ capacity: Int) {
        var size = 8
        while size < capacity { size *= 2 }
        if size > storage.count { resize(to: size) }
    }

    private mutating func grow() { resize(to: max(8, storage.count * 2)) }

    private mutating func resize(to size: Int) {
        var bigger = [Element?](repeating: nil, count: size)
        for index in 0..<count { bigger[index] = storage[(head + index) & (storage.count - 1)] }
        storage = bigger
        head = 0
    }
}
