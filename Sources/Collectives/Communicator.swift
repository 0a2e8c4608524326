import Foundation

/// A group of processes (ranks) that train together: sums over every rank, a broadcast from one,
/// and messages between two. `MPIWorld` is the real one (`mpirun -np N rrl train ...`, with the MPI
/// package trait); `ThreadGroup` runs the same protocol between threads of one process, so that the
/// distributed algorithms are tested without MPI.
///
/// Every collective (`sum`, `broadcast`, `barrier`) must be called by every rank in the same order;
/// results are identical on every rank.
public protocol Communicator: AnyObject {
    /// This process's index, 0 ..< size. Rank 0 writes the run folder.
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` with their sum over the ranks (the same bits on every rank).
    func sum(_ values: UnsafeMutablePointer<Float>, count: Int)
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int)
    /// `root`'s bytes, on every rank (the argument is ignored elsewhere).
    func broadcast(_ data: Data, root: Int) -> Data
    /// Sends bytes to one rank; the receiver takes them with `receive(from:tag:)`, in order.
    func send(_ data: Data, to rank: Int, tag: Int)
    func receive(from rank: Int, tag: Int) -> Data
    /// `send`, giving up after `timeout` seconds when `rank` does not take the message (false then).
    func send(_ data: Data, to rank: Int, tag: Int, timeout: Double) -> Bool
    /// Whether a message from `rank` with `tag` waits to be received (never blocks).
    func isPending(from rank: Int, tag: Int) -> Bool
    /// Stops every rank of the job (after `message` is printed by the caller).
    func abort(code: Int32) -> Never
}

extension Communicator {
    /// One value summed over the ranks.
    public func sum(_ value: Double) -> Double {
        var v = value
        sum(&v, count: 1)
        return v
    }

    /// A message from `rank`, waiting at most `timeout` seconds (nil: for ever); nil when none came
    /// (the rank died, hangs or is too slow: the caller reports it by name). The wait sleeps between
    /// looks instead of spinning as MPI's blocking receive does, so a rank that waits leaves the
    /// processor to the ranks that work (several ranks often share a core).
    public func receive(from rank: Int, tag: Int, timeout: Double?) -> Data? {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var pause: UInt32 = 5
        while !isPending(from: rank, tag: tag) {
            if let deadline, Date() >= deadline { return nil }
            usleep(pause)
            pause = min(pause * 2, 200)
        }
        return receive(from: rank, tag: tag)
    }

    /// Every rank's bytes at `root`, in rank order (nil on the other ranks).
    public func gather(_ data: Data, root: Int = 0, tag: Int = MessageTags.gather) -> [Data]? {
        guard rank == root else {
            send(data, to: root, tag: tag)
            return nil
        }
        return (0..<size).map { $0 == root ? data : receive(from: $0, tag: tag) }
    }

    /// Rank `k` gets `parts[k]` from `root` (`parts` is read at the root only).
    public func scatter(_ parts: [Data]?, root: Int = 0, tag: Int = MessageTags.scatter) -> Data {
        guard rank == root else { return receive(from: root, tag: tag) }
        let parts = parts!
        precondition(parts.count == size, "scatter needs one part per rank")
        for k in 0..<size where k != root { send(parts[k], to: k, tag: tag) }
        return parts[root]
    }

    /// The ranks whose `value` differs from rank 0's (every rank gets the same answer).
    public func ranksDiffering(from value: UInt32) -> [Int] {
        var bytes = value
        let root = broadcast(withUnsafeBytes(of: &bytes) { Data($0) }, root: 0)
        let reference = root.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        var flags = [Double](repeating: 0, count: size)
        flags[rank] = value == reference ? 0 : 1
        flags.withUnsafeMutableBufferPointer { sum($0.baseAddress!, count: size) }
        return flags.indices.filter { flags[$0] != 0 }
    }
}

/// `ranks` when it holds two ranks or more, else nil: a single process has nothing to exchange,
/// and takes the single-process path.
public func severalRanks(_ ranks: (any Communicator)?) -> (any Communicator)? {
    ranks.flatMap { $0.size > 1 ? $0 : nil }
}

/// Message tags of the library's streams.
public enum MessageTags {
    public static let gather = 1
    public static let scatter = 2
    /// Actor-learner training: an actor's steps for the learner, the learner's answer.
    public static let steps = 3
    public static let answer = 4
}
