import Foundation

/// Ranks that are threads of one process: the `Communicator` protocol without MPI, for tests of the
/// distributed algorithms (each rank's code runs on its own thread, as it would in its own process).
/// Sums add the ranks' values in rank order, so every rank gets the same bits.
public final class ThreadGroup: @unchecked Sendable {
    public let size: Int
    let condition = NSCondition()
    // A reusable barrier: arrivals in the current generation.
    var arrived = 0, generation = 0
    var slots: [UnsafeMutableRawPointer?]
    var shared = Data()
    var mailboxes: [[Int: [Data]]]

    public init(size: Int) {
        precondition(size >= 1)
        self.size = size
        slots = Array(repeating: nil, count: size)
        mailboxes = Array(repeating: [:], count: size)
    }

    /// The communicator of rank `rank`.
    public func member(_ rank: Int) -> ThreadGroupMember { ThreadGroupMember(group: self, rank: rank) }

    /// Runs `body(member)` for every rank on its own thread and waits for all.
    public func run(_ body: @escaping @Sendable (ThreadGroupMember) -> Void) {
        let done = DispatchGroup()
        for r in 0..<size {
            done.enter()
            let member = self.member(r)
            Thread.detachNewThread {
                body(member)
                done.leave()
            }
        }
        done.wait()
    }

    func barrier() {
        condition.lock()
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        condition.unlock()
    }

    func sum<T: FloatingPoint>(_ values: UnsafeMutablePointer<T>, count: Int, rank: Int) {
        condition.lock(); slots[rank] = UnsafeMutableRawPointer(values); condition.unlock()
        barrier()
        let total = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        defer { total.deallocate() }
        total.initialize(repeating: 0, count: count)
        for r in 0..<size {
            let other = slots[r]!.assumingMemoryBound(to: T.self)
            for i in 0..<count { total[i] += other[i] }
        }
        barrier()
        values.update(from: total, count: count)
        barrier()
    }

    func broadcast(_ data: Data, root: Int, rank: Int) -> Data {
        if rank == root { condition.lock(); shared = data; condition.unlock() }
        barrier()
        condition.lock(); let out = shared; condition.unlock()
        barrier()
        return out
    }

    func send(_ data: Data, from: Int, to: Int, tag: Int) {
        condition.lock()
        mailboxes[to][tag * size + from, default: []].append(data)
        condition.broadcast()
        condition.unlock()
    }

    func isPending(from: Int, to: Int, tag: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return !(mailboxes[to][tag * size + from]?.isEmpty ?? true)
    }

    func receive(from: Int, to: Int, tag: Int) -> Data {
        condition.lock()
        defer { condition.unlock() }
        while mailboxes[to][tag * size + from]?.isEmpty ?? true { condition.wait() }
        return mailboxes[to][tag * size + from]!.removeFirst()
    }
}

/// One rank of a `ThreadGroup`.
public final class ThreadGroupMember: Communicator, @unchecked Sendable {
    let group: ThreadGroup
    public let rank: Int
    public var size: Int { group.size }

    init(group: ThreadGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) { group.sum(values, count: count, rank: rank) }
    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) { group.sum(values, count: count, rank: rank) }
    public func broadcast(_ data: Data, root: Int) -> Data { group.broadcast(data, root: root, rank: rank) }
    public func send(_ data: Data, to destination: Int, tag: Int) { group.send(data, from: rank, to: destination, tag: tag) }
    public func receive(from source: Int, tag: Int) -> Data { group.receive(from: source, to: rank, tag: tag) }
    public func send(_ data: Data, to destination: Int, tag: Int, timeout: Double) -> Bool {
        send(data, to: destination, tag: tag)
        return true
    }
    public func isPending(from source: Int, tag: Int) -> Bool { group.isPending(from: source, to: rank, tag: tag) }
    public func abort(code: Int32) -> Never { fatalError("rank \(rank) of a thread group aborted with code \(code)") }
}
