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

/// A ring of environment steps that evicts whole episodes.
///
/// Each step keeps its observation, action, reward, the next observation, the terminated and
/// truncated flags, and optionally the actor's and critics' recurrent states *entering* the step
/// (the states the agent had when it chose the action, as R2D2 stores them).
///
/// The kept steps always form one contiguous stretch of the ring, oldest first: when a new step
/// overwrites the first step of the oldest episode, the rest of that episode is dropped too, so a
/// sampled window never starts in the middle of an episode whose beginning is gone. (An episode
/// longer than the whole ring loses its oldest steps one at a time.)
public final class EpisodeReplay {
    public let capacity: Int
    public let layout: ReplayLayout

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

    /// Ring index of the oldest kept step.
    public internal(set) var start = 0
    /// Number of kept steps.
    public internal(set) var count = 0
    /// Steps ever added.
    public internal(set) var totalSteps = 0
    /// Ring indices of the first steps of kept episodes, oldest first (may include the episode in
    /// progress).
    public internal(set) var episodeStarts: [Int] = []
    var episodeID = 0
    var episodeOpen = false

    public init(capacity: Int, layout: ReplayLayout) {
        precondition(capacity > 0, "replay capacity must be positive")
        self.capacity = capacity
        self.layout = layout
        // One entry per kept episode, at most one per step: reserved up to a bound so that adding
        // steps allocates nothing (beyond it, the list grows by doubling, rarely).
        episodeStarts.reserveCapacity(min(capacity, 1 << 16))
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

    /// The ring index of the step `offset` places after the oldest kept one.
    @inline(__always) public func index(_ offset: Int) -> Int {
        let i = start + offset
        return i >= capacity ? i - capacity : i
    }

    /// Ring index one after the newest step (where the next step goes).
    public var writeIndex: Int { index(count) }

    /// Stores one step. `actorState` and `criticState` must be given when the layout stores them.
    public func add(observation: UnsafePointer<Float>, action: UnsafePointer<Float>, reward: Float,
                    nextObservation: UnsafePointer<Float>, terminated: Bool, truncated: Bool,
                    actorState: UnsafePointer<Float>? = nil, criticState: UnsafePointer<Float>? = nil) {
        if count == capacity { evictOldest() }
        let i = writeIndex
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
        firstStepFlags[i] = !episodeOpen
        if !episodeOpen {
            episodeID += 1
            episodeStarts.append(i)
        }
        episodeIDs[i] = episodeID
        episodeOpen = !(terminated || truncated)
        count += 1
        totalSteps += 1
    }

    /// Ends the episode in progress at its last stored step, as a truncation (the step's next
    /// observation is real, so targets still bootstrap from it): for an environment that starts a
    /// new episode without the old one having ended, such as a Python one after a resume. The next
    /// step added starts a new episode. Does nothing when no episode is open.
    public func cutOpenEpisode() {
        guard episodeOpen, count > 0 else { return }
        truncatedFlags[index(count - 1)] = true
        episodeOpen = false
    }

    /// Drops the oldest episode (or, for an episode in progress that fills the ring, its oldest step).
    private func evictOldest() {
        let id = episodeIDs[start]
        let wholeEpisode = !(id == episodeID && episodeOpen)
        repeat {
            episodeIDs[start] = -1
            firstStepFlags[start] = false
            start = start + 1 == capacity ? 0 : start + 1
            count -= 1
        } while wholeEpisode && count > 0 && episodeIDs[start] == id
        if let first = episodeStarts.first, episodeIDs[first] == -1 { episodeStarts.removeFirst() }
        // An episode in progress that lost its first step now starts at the oldest kept step.
        if count > 0 && !firstStepFlags[start] {
            firstStepFlags[start] = true
            episodeStarts.insert(start, at: 0)
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

    /// The ring index after `i`, or nil when `i` is the newest step.
    @inline(__always) public func successor(_ i: Int) -> Int? {
        let next = i + 1 == capacity ? 0 : i + 1
        return next == writeIndex ? nil : next
    }

    /// The ring index before `i` in the same episode, or nil at the episode's first kept step.
    @inline(__always) public func predecessor(_ i: Int) -> Int? {
        if firstStepFlags[i] { return nil }
        return i == 0 ? capacity - 1 : i - 1
    }
}
