import Foundation
import Tensors

/// What one replay step holds: its columns and their widths in floats.
///
/// Per-agent columns (observation, next observation, action, reward, actor state) hold `agents`
/// blocks per step, agent-inner (`[step, agent, feature]`): one step's blocks for all agents are
/// contiguous, so a batch of windows reads as `[time, batch · agents, feature]`, the rows a shared
/// actor network with an agent id takes. Per-step columns (flags, critic states, global state)
/// hold one block per step. A single-agent layout (`agents` 1) is the layout of earlier versions.
public struct ReplayLayout: Codable, Equatable, Sendable {
    /// Floats of one agent's observation.
    public var observationWidth: Int
    /// Floats of one agent's action (1 for a discrete action index).
    public var actionWidth: Int
    /// Floats of one agent's actor recurrent state stored per step (0: states are not stored).
    public var actorStateWidth: Int
    /// Floats of the critics' recurrent states stored per step, all critics side by side (0: none).
    public var criticStateWidth: Int
    /// Agents per step (1 for single-agent runs). Each has its own reward.
    public var agents: Int
    /// Floats of the global state per step, for centralised critics (0: none).
    public var globalStateWidth: Int
    /// Actions per agent in the stored action masks (0: none stored; every action available).
    public var actionMaskWidth: Int

    public init(observationWidth: Int, actionWidth: Int, actorStateWidth: Int = 0, criticStateWidth: Int = 0,
                agents: Int = 1, globalStateWidth: Int = 0, actionMaskWidth: Int = 0) {
        self.observationWidth = observationWidth
        self.actionWidth = actionWidth
        self.actorStateWidth = actorStateWidth
        self.criticStateWidth = criticStateWidth
        self.agents = agents
        self.globalStateWidth = globalStateWidth
        self.actionMaskWidth = actionMaskWidth
    }

    /// Floats per step of the per-agent columns, all agents together.
    public var observationFloats: Int { agents * observationWidth }
    public var actionFloats: Int { agents * actionWidth }
    public var actorStateFloats: Int { agents * actorStateWidth }
    public var actionMaskFloats: Int { agents * actionMaskWidth }
    /// Floats per step of each agent-activity column (active, finished): one per agent with several
    /// agents, none with one (a single agent is active until its episode ends).
    public var activityFloats: Int { agents > 1 ? agents : 0 }

    /// Checks the widths (a replay built from a bad layout would misread every step).
    public func validate() throws {
        guard agents >= 1 else { throw ReplayLayoutError("a replay needs at least one agent per step (got \(agents))") }
        for (name, w) in [("observation", observationWidth), ("action", actionWidth), ("actor state", actorStateWidth),
                          ("critic state", criticStateWidth), ("global state", globalStateWidth), ("action mask", actionMaskWidth)] where w < 0 {
            throw ReplayLayoutError("the replay's \(name) width must be 0 or more (got \(w))")
        }
    }

    enum CodingKeys: String, CodingKey {
        case observationWidth, actionWidth, actorStateWidth, criticStateWidth, agents, globalStateWidth, actionMaskWidth
    }

    /// Layouts written before multi-agent columns existed read as single-agent, without global state.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(observationWidth: try c.decode(Int.self, forKey: .observationWidth), actionWidth: try c.decode(Int.self, forKey: .actionWidth),
                  actorStateWidth: try c.decode(Int.self, forKey: .actorStateWidth), criticStateWidth: try c.decode(Int.self, forKey: .criticStateWidth),
                  agents: try c.decodeIfPresent(Int.self, forKey: .agents) ?? 1,
                  globalStateWidth: try c.decodeIfPresent(Int.self, forKey: .globalStateWidth) ?? 0,
                  actionMaskWidth: try c.decodeIfPresent(Int.self, forKey: .actionMaskWidth) ?? 0)
    }
}

/// A replay layout that cannot work, with what is wrong.
public struct ReplayLayoutError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A ring of environment steps that evicts whole episodes, for one or several environment copies.
///
/// Each step keeps its observation, action, reward, the next observation, the terminated and
/// truncated flags, and optionally the actor's and critics' recurrent states *entering* the step
/// (the states the agent had when it chose the action, as R2D2 stores them) and the global state
/// before and after it; with several agents, each agent's observation, action, reward and actor
/// state side by side (see `ReplayLayout`).
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
    let globalStates: UnsafeMutablePointer<Float>
    let nextGlobalStates: UnsafeMutablePointer<Float>
    let actionMasks: UnsafeMutablePointer<Float>
    let nextActionMasks: UnsafeMutablePointer<Float>
    /// Several agents: per agent, 1 where it was active when the step was taken (an agent that
    /// finished before its episode is inactive until the episode ends), and 1 where it finished at
    /// the step while the episode went on (its own end: no bootstrapping for it).
    let agentActivity: UnsafeMutablePointer<Float>
    let agentFinishedFlags: UnsafeMutablePointer<Float>

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
    /// One ring per copy. A buffer, not an array property: the sampler reads a ring for every step
    /// it copies, and each read of a class's array property is a dynamic exclusivity check.
    let rings: UnsafeMutableBufferPointer<Ring>

    // (The counters are read for every sampled row: without dynamic exclusivity checks. The replay
    // is used from one thread at a time.)
    /// Number of kept steps (all copies).
    @exclusivity(unchecked) public internal(set) var count = 0
    /// Steps ever added.
    @exclusivity(unchecked) public internal(set) var totalSteps = 0
    /// Kept episodes (all copies; the ones in progress included).
    @exclusivity(unchecked) public internal(set) var episodeCount = 0
    var episodeID = 0

    /// `copies` rings of `capacity / copies` steps each.
    public init(capacity: Int, layout: ReplayLayout, copies: Int = 1) {
        precondition(capacity > 0 && copies >= 1 && capacity >= copies, "replay capacity must be positive and at least one step per copy")
        precondition((try? layout.validate()) != nil, "invalid replay layout \(layout)")
        self.capacity = capacity
        self.layout = layout
        self.copies = copies
        ringCapacity = capacity / copies
        rings = .allocate(capacity: copies)
        _ = rings.initialize(from: (0..<copies).map { Ring(base: $0 * (capacity / copies), start: $0 * (capacity / copies)) })
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
        observations = zeroed(capacity * layout.observationFloats, Float.self)
        nextObservations = zeroed(capacity * layout.observationFloats, Float.self)
        actions = zeroed(capacity * layout.actionFloats, Float.self)
        rewards = zeroed(capacity * layout.agents, Float.self)
        actorStates = zeroed(capacity * layout.actorStateFloats, Float.self)
        criticStates = zeroed(capacity * layout.criticStateWidth, Float.self)
        globalStates = zeroed(capacity * layout.globalStateWidth, Float.self)
        nextGlobalStates = zeroed(capacity * layout.globalStateWidth, Float.self)
        actionMasks = zeroed(capacity * layout.actionMaskFloats, Float.self)
        nextActionMasks = zeroed(capacity * layout.actionMaskFloats, Float.self)
        agentActivity = zeroed(capacity * layout.activityFloats, Float.self)
        agentFinishedFlags = zeroed(capacity * layout.activityFloats, Float.self)
        terminatedFlags = zeroed(capacity, Bool.self)
        truncatedFlags = zeroed(capacity, Bool.self)
        firstStepFlags = zeroed(capacity, Bool.self)
        // Slots not yet written hold 0; only kept steps' ids are ever read.
        episodeIDs = zeroed(capacity, Int.self)
    }

    deinit {
        for p in [observations, nextObservations, actions, rewards, actorStates, criticStates, globalStates, nextGlobalStates,
                  actionMasks, nextActionMasks, agentActivity, agentFinishedFlags] { free(p) }
        for p in [terminatedFlags, truncatedFlags, firstStepFlags] { free(p) }
        free(episodeIDs)
        rings.deinitialize().deallocate()
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
    /// stores them. A single-agent step.
    public func add(copy c: Int = 0, observation: UnsafePointer<Float>, action: UnsafePointer<Float>, reward: Float,
                    nextObservation: UnsafePointer<Float>, terminated: Bool, truncated: Bool,
                    actorState: UnsafePointer<Float>? = nil, criticState: UnsafePointer<Float>? = nil) {
        precondition(layout.agents == 1, "a replay of \(layout.agents) agents takes a reward per agent: use add(copy:observations:actions:rewards:...)")
        var r = reward
        add(copy: c, observations: observation, actions: action, rewards: &r, nextObservations: nextObservation, terminated: terminated,
            truncated: truncated, actorStates: actorState, criticState: criticState)
    }

    /// Stores one step of copy `copy` for every agent: `observations`, `nextObservations`, `actions`,
    /// `rewards` and `actorStates` hold the agents' blocks side by side (agent-inner). States and
    /// global states must be given when the layout stores them. Episode-level flags; with several
    /// agents, `active` (each agent acted at this step) and `finished` (each agent left the episode at
    /// this step while it went on), one float per agent: nil means every agent active, none finished.
    public func add(copy c: Int = 0, observations observation: UnsafePointer<Float>, actions action: UnsafePointer<Float>,
                    rewards reward: UnsafePointer<Float>, nextObservations nextObservation: UnsafePointer<Float>,
                    terminated: Bool, truncated: Bool, actorStates actorState: UnsafePointer<Float>? = nil,
                    criticState: UnsafePointer<Float>? = nil, globalState: UnsafePointer<Float>? = nil,
                    nextGlobalState: UnsafePointer<Float>? = nil, actionMask: UnsafePointer<Float>? = nil,
                    nextActionMask: UnsafePointer<Float>? = nil, active: UnsafePointer<Float>? = nil,
                    finished: UnsafePointer<Float>? = nil) {
        if rings[c].count == ringCapacity { evictOldest(c) }
        let i = writeIndex(copy: c)
        let o = layout.observationFloats, a = layout.actionFloats, n = layout.agents
        (observations + i * o).update(from: observation, count: o)
        (nextObservations + i * o).update(from: nextObservation, count: o)
        (actions + i * a).update(from: action, count: a)
        (rewards + i * n).update(from: reward, count: n)
        terminatedFlags[i] = terminated
        truncatedFlags[i] = truncated
        if layout.actorStateWidth > 0 {
            guard let actorState else { preconditionFailure("replay stores actor states: pass actorState") }
            (actorStates + i * layout.actorStateFloats).update(from: actorState, count: layout.actorStateFloats)
        }
        if layout.criticStateWidth > 0 {
            guard let criticState else { preconditionFailure("replay stores critic states: pass criticState") }
            (criticStates + i * layout.criticStateWidth).update(from: criticState, count: layout.criticStateWidth)
        }
        if layout.globalStateWidth > 0 {
            guard let globalState, let nextGlobalState else { preconditionFailure("replay stores global states: pass globalState and nextGlobalState") }
            let g = layout.globalStateWidth
            (globalStates + i * g).update(from: globalState, count: g)
            (nextGlobalStates + i * g).update(from: nextGlobalState, count: g)
        }
        if layout.actionMaskWidth > 0 {
            guard let actionMask, let nextActionMask else { preconditionFailure("replay stores action masks: pass actionMask and nextActionMask") }
            let m = layout.actionMaskFloats
            (actionMasks + i * m).update(from: actionMask, count: m)
            (nextActionMasks + i * m).update(from: nextActionMask, count: m)
        }
        let f = layout.activityFloats
        if f > 0 {
            if let active { (agentActivity + i * f).update(from: active, count: f) } else { (agentActivity + i * f).update(repeating: 1, count: f) }
            if let finished { (agentFinishedFlags + i * f).update(from: finished, count: f) } else { (agentFinishedFlags + i * f).update(repeating: 0, count: f) }
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

    /// Step `i`'s observation (all agents' side by side).
    public func observation(_ i: Int) -> UnsafeMutablePointer<Float> { observations + i * layout.observationFloats }
    public func nextObservation(_ i: Int) -> UnsafeMutablePointer<Float> { nextObservations + i * layout.observationFloats }
    public func action(_ i: Int) -> UnsafeMutablePointer<Float> { actions + i * layout.actionFloats }
    /// The (first) agent's reward at step `i`.
    public func reward(_ i: Int) -> Float { rewards[i * layout.agents] }
    /// Every agent's reward at step `i`.
    public func rewards(_ i: Int) -> UnsafeMutablePointer<Float> { rewards + i * layout.agents }
    public func terminated(_ i: Int) -> Bool { terminatedFlags[i] }
    public func truncated(_ i: Int) -> Bool { truncatedFlags[i] }
    /// The step ends its episode (terminated or truncated).
    public func endsEpisode(_ i: Int) -> Bool { terminatedFlags[i] || truncatedFlags[i] }
    /// The step is the first of its episode.
    public func isFirstStep(_ i: Int) -> Bool { firstStepFlags[i] }
    /// An id shared by the steps of one episode.
    public func episode(_ i: Int) -> Int { episodeIDs[i] }
    /// The actor states entering step `i` (all agents' side by side).
    public func actorState(_ i: Int) -> UnsafeMutablePointer<Float> { actorStates + i * layout.actorStateFloats }
    public func criticState(_ i: Int) -> UnsafeMutablePointer<Float> { criticStates + i * layout.criticStateWidth }
    /// The global state before and after step `i`.
    public func globalState(_ i: Int) -> UnsafeMutablePointer<Float> { globalStates + i * layout.globalStateWidth }
    public func nextGlobalState(_ i: Int) -> UnsafeMutablePointer<Float> { nextGlobalStates + i * layout.globalStateWidth }
    /// Every agent's action mask at step i's observation (`[agents, actionMaskWidth]`), and at its next one.
    public func actionMask(_ i: Int) -> UnsafeMutablePointer<Float> { actionMasks + i * layout.actionMaskFloats }
    public func nextActionMask(_ i: Int) -> UnsafeMutablePointer<Float> { nextActionMasks + i * layout.actionMaskFloats }
    /// Several agents: whether each agent was active at step `i` (1 or 0, `[agents]`), and whether
    /// each finished there while its episode went on.
    public func activity(_ i: Int) -> UnsafeMutablePointer<Float> { agentActivity + i * layout.activityFloats }
    public func agentFinished(_ i: Int) -> UnsafeMutablePointer<Float> { agentFinishedFlags + i * layout.activityFloats }

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
