import Foundation
import Tensors

/// What one replay step holds, in floats.
public struct ReplayLayout: Codable, Equatable, Sendable {
    public var observationWidth: Int
    public var actionWidth: Int
    /// Floats of the actor's recurrent state stored per step (0: states are not stored).
    public var actorStateWidth: Int
    /// Floats of the critics' recurrent states stored per step, all critics side by side (0: none).
    public var criticStateWidth: Int

    public init(observationWidth: Int, actionWidth: Int, actorStateWidth: Int = 0, criticStateWidth: Int = 0) {
        self.observationWidth = observationWidth
        self.actionWidth = actionWidth
        self.actorStateWidth = actorStateWidth
        self.criticStateWidth = criticStateWidth
    }
}

/// A ring of environment steps that evicts whole episodes, for one or several environment copies.
///
/// Each step keeps its observation, action, reward, the next observation, the terminated and
/// truncated flags, and optionally the actor's and critics' recurrent states *entering* the step
/// (the states the agent had when it chose the action, as R2D2 stores them).
///
/// With `copies` environment copies stepping together, each copy has a ring of its own (an equal
/// share of the capacity, side by side in the same storage), so every copy's episode in progress
/// stays contiguous while the copies' steps arrive interleaved. Within a ring the kept steps always
/// form one contiguous stretch, oldest first: when a new step overwrites the first step of the
/// oldest episode, the rest of that episode is dropped too, so a sampled window never starts in the
/// middle of an episode whose beginning is gone. (An episode longer than its whole ring loses its
/// oldest steps one at a time.) Indices are storage indices, unique across rings; with one copy
/// the replay is exactly one ring.
public final class EpisodeReplay {
    /// Steps kept at most, over all copies.
    public let capacity: Int
    public let layout: ReplayLayout
    /// Environment copies (one ring each).
    public let copies: Int
    /// Steps kept at most per copy.
    public let ringCapacity: Int

    let observations: UnsafeMutablePointer<Float>
    let nextObservations: UnsafeMutablePointer<Float>
    let actions: UnsafeMutablePointer<Float>
    let rewards: UnsafeMutablePointer<Float>
    let terminatedFlags: UnsafeMutablePointer<Bool>
    let truncatedFlags: UnsafeMutablePointer<Bool>
    let firstStepFlags: UnsafeMutablePointer<Bool>
    let episodeIDs: UnsafeMutablePointer<Int>
    let actorStates: UnsafeMutablePointer<Float>
    let criticStates: UnsafeMutablePointer<Float>

    /// One copy's ring: where it starts in storage, its oldest kept step, how many it keeps, the
    /// first steps of its kept episodes (oldest first), and whether its last episode is still open.
    struct Ring {
        let base: Int
        var start: Int
        var count = 0
        var episodeStarts: [Int] = []
        var episodeOpen = false
        /// The id of the ring's newest episode.
        var currentEpisode = 0
    }
    var rings: [Ring]

    /// Number of kept steps (all copies).
    public internal(set) var count = 0
    /// Steps ever added.
    public internal(set) var totalSteps = 0
    /// Kept episodes (all copies; the ones in progress included).
    public internal(set) var episodeCount = 0
    var episodeID = 0

    /// `copies` rings of `capacity / copies` steps each.
    public init(capacity: Int, layout: ReplayLayout, copies: Int = 1) {
        precondition(capacity > 0 && copies >= 1 && capacity >= copies, "replay capacity must be positive and at least one step per copy")
        self.capacity = capacity
        self.layout = layout
        self.copies = copies
        ringCapacity = capacity / copies
        rings = (0..<copies).map { Ring(base: $0 * (capacity / copies), start: $0 * (capacity / copies)) }
        // One entry per kept episode, at most one per step: reserved up to a bound so that adding
        // steps allocates nothing (beyond it, the list grows by doubling, rarely).
        for c in 0..<copies { rings[c].episodeStarts.reserveCapacity(min(capacity / copies, (1 << 16) / copies + 1)) }
        // calloc: zeroed pages are committed by the system only when first written, so a large
        // capacity costs memory as the replay fills, not up front.
        func zeroed<T>(_ count: Int, _: T.Type) -> UnsafeMutablePointer<T> {
            guard let raw = calloc(max(1, count), MemoryLayout<T>.stride) else {
                fatalError("cannot allocate a replay of \(capacity) steps (\(count * MemoryLayout<T>.stride) bytes)")
            }
            return raw.bindMemory(to: T.self, capacity: max(1, count))
        }
        observations = zeroed(capacity * layout.observationWidth, Float.self)
        nextObservations = zeroed(capacity * layout.observationWidth, Float.self)
        actions = zeroed(capacity * layout.actionWidth, Float.self)
        rewards = zeroed(capacity, Float.self)
        actorStates = zeroed(capacity * layout.actorStateWidth, Float.self)
        criticStates = zeroed(capacity * layout.criticStateWidth, Float.self)
        terminatedFlags = zeroed(capacity, Bool.self)
        truncatedFlags = zeroed(capacity, Bool.self)
        firstStepFlags = zeroed(capacity, Bool.self)
        // Slots not yet written hold 0; only kept steps' ids are ever read.
        episodeIDs = zeroed(capacity, Int.self)
    }

    deinit {
        for p in [observations, nextObservations, actions, rewards, actorStates, criticStates] { free(p) }
        for p in [terminatedFlags, truncatedFlags, firstStepFlags] { free(p) }
        free(episodeIDs)
    }

    /// The storage index of the step `offset` places after the oldest kept one, counting the rings'
    /// kept steps one ring after another (0..<count covers every kept step once).
    @inline(__always) public func index(_ offset: Int) -> Int {
        var offset = offset, c = 0
        while c < copies - 1 && offset >= rings[c].count {
            offset -= rings[c].count
            c += 1
        }
        return position(rings[c].start, plus: offset, in: c)
    }

    /// `i` moved `k` places forward within ring `c`.
    @inline(__always) func position(_ i: Int, plus k: Int, in c: Int) -> Int {
        let j = i + k, end = rings[c].base + ringCapacity
        return j >= end ? j - ringCapacity : j
    }

    /// The ring (copy) that holds storage index `i`.
    @inline(__always) public func copy(of i: Int) -> Int { copies == 1 ? 0 : i / ringCapacity }

    /// Storage index one after copy `c`'s newest step (where its next step goes).
    public func writeIndex(copy c: Int = 0) -> Int { position(rings[c].start, plus: rings[c].count, in: c) }

    /// The first step of the `k`-th kept episode, counting the rings' episodes one ring after another.
    @inline(__always) public func episodeStart(_ k: Int) -> Int {
        var k = k, c = 0
        while c < copies - 1 && k >= rings[c].episodeStarts.count {
            k -= rings[c].episodeStarts.count
            c += 1
        }
        return rings[c].episodeStarts[k]
    }

    /// Whether copy `c`'s last episode is still open (its next step continues it).
    public func isEpisodeOpen(copy c: Int) -> Bool { rings[c].episodeOpen }

    /// The first steps of every kept episode (a new array: for checks and tests, not hot loops).
    public var episodeStarts: [Int] { rings.flatMap(\.episodeStarts) }

    /// Stores one step of copy `copy`. `actorState` and `criticState` must be given when the layout
    /// stores them.
    public func add(copy c: Int = 0, observation: UnsafePointer<Float>, action: UnsafePointer<Float>, reward: Float,
                    nextObservation: UnsafePointer<Float>, terminated: Bool, truncated: Bool,
                    actorState: UnsafePointer<Float>? = nil, criticState: UnsafePointer<Float>? = nil) {
        if rings[c].count == ringCapacity { evictOldest(c) }
        let i = writeIndex(copy: c)
        let o = layout.observationWidth, a = layout.actionWidth
        (observations + i * o).update(from: observation, count: o)
        (nextObservations + i * o).update(from: nextObservation, count: o)
        (actions + i * a).update(from: action, count: a)
        rewards[i] = reward
        terminatedFlags[i] = terminated
        truncatedFlags[i] = truncated
        if layout.actorStateWidth > 0 {
            guard let actorState else { preconditionFailure("replay stores actor states: pass actorState") }
            (actorStates + i * layout.actorStateWidth).update(from: actorState, count: layout.actorStateWidth)
        }
        if layout.criticStateWidth > 0 {
            guard let criticState else { preconditionFailure("replay stores critic states: pass criticState") }
            (criticStates + i * layout.criticStateWidth).update(from: criticState, count: layout.criticStateWidth)
        }
        let opensEpisode = !rings[c].episodeOpen
        firstStepFlags[i] = opensEpisode
        if opensEpisode {
            episodeID += 1
            rings[c].currentEpisode = episodeID
            rings[c].episodeStarts.append(i)
            episodeCount += 1
        }
        episodeIDs[i] = rings[c].currentEpisode
        rings[c].episodeOpen = !(terminated || truncated)
        rings[c].count += 1
        count += 1
        totalSteps += 1
    }

    /// Ends every copy's episode in progress at its last stored step, as a truncation (the step's
    /// next observation is real, so targets still bootstrap from it): for environments that start
    /// new episodes without the old ones having ended, such as Python ones after a resume. The next
    /// step a copy adds starts a new episode.
    public func cutOpenEpisode() {
        for c in 0..<copies where rings[c].episodeOpen && rings[c].count > 0 {
            truncatedFlags[position(rings[c].start, plus: rings[c].count - 1, in: c)] = true
            rings[c].episodeOpen = false
        }
    }

    /// Drops copy `c`'s oldest episode (or, for an episode in progress that fills its ring, its oldest step).
    private func evictOldest(_ c: Int) {
        let id = episodeIDs[rings[c].start], newest = episodeIDs[position(rings[c].start, plus: rings[c].count - 1, in: c)]
        let wholeEpisode = !(id == newest && rings[c].episodeOpen)
        repeat {
            let start = rings[c].start
            episodeIDs[start] = -1
            firstStepFlags[start] = false
            rings[c].start = position(start, plus: 1, in: c)
            rings[c].count -= 1
            count -= 1
        } while wholeEpisode && rings[c].count > 0 && episodeIDs[rings[c].start] == id
        if let first = rings[c].episodeStarts.first, episodeIDs[first] == -1 {
            rings[c].episodeStarts.removeFirst()
            episodeCount -= 1
        }
        // An episode in progress that lost its first step now starts at the oldest kept step.
        let start = rings[c].start
        if rings[c].count > 0 && !firstStepFlags[start] {
            firstStepFlags[start] = true
            rings[c].episodeStarts.insert(start, at: 0)
            episodeCount += 1
        }
    }

    // MARK: Reading steps

    public func observation(_ i: Int) -> UnsafeMutablePointer<Float> { observations + i * layout.observationWidth }
    public func nextObservation(_ i: Int) -> UnsafeMutablePointer<Float> { nextObservations + i * layout.observationWidth }
    public func action(_ i: Int) -> UnsafeMutablePointer<Float> { actions + i * layout.actionWidth }
    public func reward(_ i: Int) -> Float { rewards[i] }
    public func terminated(_ i: Int) -> Bool { terminatedFlags[i] }
    public func truncated(_ i: Int) -> Bool { truncatedFlags[i] }
    /// The step ends its episode (terminated or truncated).
    public func endsEpisode(_ i: Int) -> Bool { terminatedFlags[i] || truncatedFlags[i] }
    /// The step is the first of its episode.
    public func isFirstStep(_ i: Int) -> Bool { firstStepFlags[i] }
    /// An id shared by the steps of one episode.
    public func episode(_ i: Int) -> Int { episodeIDs[i] }
    public func actorState(_ i: Int) -> UnsafeMutablePointer<Float> { actorStates + i * layout.actorStateWidth }
    public func criticState(_ i: Int) -> UnsafeMutablePointer<Float> { criticStates + i * layout.criticStateWidth }

    /// The storage index after `i` in its copy's ring, or nil when `i` is that copy's newest step.
    @inline(__always) public func successor(_ i: Int) -> Int? {
        let c = copy(of: i)
        let next = position(i, plus: 1, in: c)
        return next == writeIndex(copy: c) ? nil : next
    }

    /// The storage index before `i` in the same episode, or nil at the episode's first kept step.
    @inline(__always) public func predecessor(_ i: Int) -> Int? {
        if firstStepFlags[i] { return nil }
        let c = copy(of: i)
        return i == rings[c].base ? rings[c].base + ringCapacity - 1 : i - 1
    }
}
