import Tensors

/// Where a replayed window's recurrent state starts.
public enum InitialStateMode: String, Codable, CaseIterable, Sendable {
    /// Zeros (then optionally warmed up by burn-in steps).
    case zero
    /// The state recorded when the first step of the window was collected (R2D2).
    case stored
    /// The stored state, then burn-in steps (R2D2's best variant; needs `burnIn > 0`).
    case storedBurnIn = "stored+burnIn"

    public var usesStoredStates: Bool { self != .zero }
}

/// The hidden-state switches of the sampler (see DESIGN §4).
public struct SamplerConfiguration: Codable, Equatable, Sendable {
    /// L: the trained steps per batch row. A row has L + 1 time slots.
    public var sequenceLength: Int = 50
    /// The first `burnIn` slots of a row only warm up the state: no loss, no gradient.
    public var burnIn: Int = 0
    public var initialState: InitialStateMode = .zero
    /// Draw each window's length: L with probability `nominalLengthProbability`, else uniform in [1, L-1].
    public var randomSequenceLength = false
    public var nominalLengthProbability: Float = 0.5
    /// Windows start at the first step of an episode.
    public var alwaysStartAtEpisodeStart = false
    /// Target networks also see slot 0, so their state at the first next observation is not one step short.
    public var includeFirstStepInTargets = true
    /// Losses only at the last step of each window.
    public var maskNonFinal = false
    /// Treat a time-out like a terminal state: no bootstrap from the value of the last observation
    /// (the convention of many multi-agent benchmarks, available for comparison; nil or false: a
    /// truncated episode bootstraps, which is correct for time limits the agent does not observe).
    public var timeLimitsTerminal: Bool? = nil
    /// Whole episodes packed several to a row (RESeL's batches): each window is an episode from its
    /// first step to its end, drawn uniformly among the kept episodes; a row takes episodes while
    /// the next one fits in its remaining slots (its steps and its bootstrap slot), so no episode is
    /// cut at a row's end (the one that does not fit starts the next row), and the rest of the row
    /// is padding, masked out. An episode longer than the sequence length is trained on its first
    /// L steps: set the sequence length to at least the longest episode. Losses are means over the
    /// valid steps, so a batch of B rows of L + 1 slots weighs each valid step alike. Needs zero
    /// initial states, no burn-in and fixed lengths (nil or false: windows as the other switches say).
    public var packEpisodes: Bool? = nil

    public init() {}

    /// Checks the switches; the message says what is wrong and what to do.
    public func validate() throws {
        func fail(_ message: String) throws { throw ConfigurationError(message) }
        if sequenceLength < 1 { try fail("sequence length must be at least 1 (got \(sequenceLength))") }
        try checkUpperBound("sequence length", sequenceLength, SizeLimit.sequence)
        if burnIn < 0 || burnIn >= sequenceLength {
            try fail("burn-in must be in 0..<sequence length (\(sequenceLength)); got \(burnIn)")
        }
        if !(nominalLengthProbability >= 0 && nominalLengthProbability <= 1) {
            try fail("nominal length probability must be in [0, 1] (got \(nominalLengthProbability))")
        }
        if initialState == .storedBurnIn && burnIn == 0 {
            try fail("initial state 'stored+burnIn' needs a burn-in: set --burn-in to a positive number of steps, or use 'stored'")
        }
        if packEpisodes == true {
            if initialState != .zero { try fail("packed episodes start every episode from a zero state: use --initial-state zero, or leave out --pack-episodes") }
            if burnIn > 0 { try fail("packed episodes are trained from their first step: use --burn-in 0, or leave out --pack-episodes") }
            if randomSequenceLength { try fail("packed episodes have their own lengths: leave out --random-length, or --pack-episodes") }
        }
    }
}

/// Throws when a size is above the largest this library accepts (`name` as the user knows it):
/// the bound keeps every product of sizes inside `Int` and every allocation reasonable, before the
/// memory a run needs is checked against the machine's.
public func checkUpperBound(_ name: String, _ value: Int, _ limit: Int) throws {
    if value > limit { throw ConfigurationError("\(name) must be at most \(limit) (got \(value))") }
}

/// Throws when a real-valued option is NaN or infinite (every option must be a finite number).
public func checkFinite(_ values: [(name: String, value: Float)]) throws {
    for (name, value) in values where !value.isFinite {
        throw ConfigurationError("\(name) must be a finite number (got \(value))")
    }
}

/// The largest sizes accepted (shared by every configuration).
public enum SizeLimit {
    public static let layers = 64, width = 16_384, listLength = 64, batch = 1 << 24, sequence = 1 << 20
    public static let replay = 1 << 34, copies = 65_536, episodes = 100_000, steps = 1 << 50, epochs = 100_000, critics = 64
}

/// A configuration or option value that cannot be used, with what to do about it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A batch of replayed windows, time-major: every tensor is `[slots, batch, ...]` with
/// `slots = L + 1`.
///
/// A row holds one or more back-to-back windows (sub-windows). Each window occupies consecutive
/// slots with its steps; the slot after its last step is a *bootstrap slot* holding that step's
/// next observation; the following window starts with a reset. So the "current" view of a row is
/// slots 0..<L and the "next" view (each step's next observation) is slots 1...L.
public final class SequenceBatch {
    public let slots: Int, batchSize: Int
    /// Agents per step: the per-agent tensors hold `agents` blocks per slot and row, agent-inner.
    public let agents: Int
    public let observations = Tensor([0])
    /// The observation before each slot's in its episode (zeros at an episode's first step, whose
    /// `hasPreviousAction` is 0): RESeL's previous-observation input.
    public let previousObservations = Tensor([0])
    /// Recorded actions (zeros at bootstrap and padding slots).
    public let actions = Tensor([0])
    /// The action and reward before each slot's observation in its episode (zeros at an
    /// episode's first step): the context inputs of RESeL.
    public let previousActions = Tensor([0])
    public let previousRewards = Tensor([0])
    /// `[slots, batch]`: 1 where the slot's step has a previous action in its episode (0 at an
    /// episode's first step, whose previous action is "none", not a zero action or index 0).
    public let hasPreviousAction = Tensor([0])
    /// `[slots, batch]` (one agent) or `[slots, batch, agents]`: each agent's reward.
    public let rewards = Tensor([0])
    /// `[slots, batch, globalStateWidth]`: the global state at each slot (the next global state at
    /// bootstrap slots); empty without global states.
    public let globalStates = Tensor([0])
    /// `[slots, batch, agents · actionMaskWidth]`: every agent's action mask at each slot (the next
    /// observation's at bootstrap slots); empty without stored masks.
    public let actionMasks = Tensor([0])
    /// Several agents, `[slots, batch, agents]`: 1 where the agent is active at the slot's
    /// observation (acts at a step slot; at a bootstrap slot, is still in the episode after the
    /// step), 0 for an agent that finished early, and at padding slots; empty with one agent.
    public let agentActive = Tensor([0])
    /// Several agents, `[slots, batch, agents]`: 1 where the agent finished at the slot's step while
    /// its episode went on (its own terminal step); empty with one agent.
    public let agentFinished = Tensor([0])
    /// 1 where the step ended its episode in a terminal state (no bootstrapping).
    public let terminated = Tensor([0])
    /// 1 where a window starts (the recurrent state restarts).
    public let resetMask = Tensor([0])
    /// 1 at trained steps: not burn-in, bootstrap or padding.
    public let validMask = Tensor([0])
    /// 1 at the last trained step of each window.
    public let finalStepMask = Tensor([0])
    /// `[batch, agents · actorStateWidth]`: the stored actor states entering slot 0 (zeros when not stored).
    public let initialActorState = Tensor([0])
    /// `[batch, criticStateWidth]`: the stored critic states entering slot 0.
    public let initialCriticState = Tensor([0])
    /// `[batch, criticStateWidth]`: the stored critic states entering slot 1, for target networks
    /// that start there (`includeFirstStepInTargets` off).
    public let targetInitialCriticState = Tensor([0])
    /// Every tensor a new sample starts by clearing (listed once, so sampling allocates nothing).
    private(set) lazy var clearedBySampling: [Tensor] = [
        observations, previousObservations, actions, previousActions, hasPreviousAction, previousRewards, rewards, globalStates, actionMasks, agentActive, agentFinished, terminated, resetMask, validMask,
        finalStepMask, initialActorState, initialCriticState, targetInitialCriticState,
    ]
    /// The replay ring index of the step at each slot (`slot * batch + row`), -1 at bootstrap and padding slots.
    public internal(set) var stepIndices: [Int]

    /// The replay layout the batch was shaped for.
    public let layout: ReplayLayout

    init(slots: Int, batchSize: Int, layout: ReplayLayout) {
        self.layout = layout
        self.slots = slots
        self.batchSize = batchSize
        let s = slots, b = batchSize
        agents = layout.agents
        observations.resize(Shape(d0: s, d1: b, d2: layout.observationFloats))
        previousObservations.resize(Shape(d0: s, d1: b, d2: layout.observationFloats))
        actions.resize(Shape(d0: s, d1: b, d2: layout.actionFloats))
        previousActions.resize(Shape(d0: s, d1: b, d2: layout.actionFloats))
        for t in [hasPreviousAction, terminated, resetMask, validMask, finalStepMask] { t.resize(Shape(d0: s, d1: b)) }
        for t in [previousRewards, rewards] { t.resize(agents == 1 ? Shape(d0: s, d1: b) : Shape(d0: s, d1: b, d2: agents)) }
        globalStates.resize(Shape(d0: s, d1: b, d2: layout.globalStateWidth))
        actionMasks.resize(Shape(d0: s, d1: b, d2: layout.actionMaskFloats))
        for t in [agentActive, agentFinished] { t.resize(Shape(d0: s, d1: b, d2: layout.activityFloats)) }
        initialActorState.resize(Shape(d0: b, d1: layout.actorStateFloats))
        initialCriticState.resize(Shape(d0: b, d1: layout.criticStateWidth))
        targetInitialCriticState.resize(Shape(d0: b, d1: layout.criticStateWidth))
        stepIndices = [Int](repeating: -1, count: s * b)
    }

    /// The mask the losses use: final steps only, or every trained step.
    public func lossMask(maskNonFinal: Bool) -> Tensor { maskNonFinal ? finalStepMask : validMask }
}

/// Draws windows from an episode replay into a `SequenceBatch`, with every switch of
/// `SamplerConfiguration`.
///
/// With zero initial states a row is filled with back-to-back windows (each restarting from
/// zeros). With stored states a row holds one window (its start state is the stored one) and the
/// rest of the row is padding, since a reset inside a row could not restore a second stored state.
public final class SequenceSampler {
    public let configuration: SamplerConfiguration
    public let batch: SequenceBatch
    public var rng: RandomGenerator

    public init(configuration: SamplerConfiguration, batchSize: Int, layout: ReplayLayout, seed: UInt64) {
        self.configuration = configuration
        batch = SequenceBatch(slots: configuration.sequenceLength + 1, batchSize: batchSize, layout: layout)
        rng = RandomGenerator(seed: seed)
    }

    /// The window length to use: L, or with random lengths uniform in [1, L-1] with probability 1 - p.
    func drawLength() -> Int { drawLength(&rng) }

    func drawLength(_ rng: inout RandomGenerator) -> Int {
        let L = configuration.sequenceLength
        guard configuration.randomSequenceLength, L > 1, rng.uniform() >= configuration.nominalLengthProbability else { return L }
        return 1 + rng.integer(below: L - 1)
    }

    func drawStart(_ replay: EpisodeReplay, _ rng: inout RandomGenerator) -> Int {
        if configuration.alwaysStartAtEpisodeStart, replay.episodeCount > 0 {
            return replay.episodeStart(rng.integer(below: replay.episodeCount))
        }
        return replay.index(rng.integer(below: replay.count))
    }

    /// Fills `batch` with fresh windows from `replay` (which must hold at least one step).
    @discardableResult
    public func sample(from replay: EpisodeReplay) -> SequenceBatch {
        precondition(replay.count > 0, "cannot sample from an empty replay")
        let c = configuration, B = batch.batchSize, L = c.sequenceLength
        let layout = replay.layout, o = layout.observationFloats, a = layout.actionFloats, n = layout.agents, g = layout.globalStateWidth
        let am = layout.actionMaskFloats, f = layout.activityFloats
        precondition(layout == batch.layout, "the sampler was made for replay layout \(batch.layout), not \(layout)")
        // The generator as a local for the whole draw (a class property is checked for exclusive
        // access at every use), stored back at the end.
        var rng = self.rng
        defer { self.rng = rng }
        let packing = c.packEpisodes == true
        if !packing { prefetchFirstSteps(replay, rows: B, rng: rng) }  // before the clearing, which overlaps its misses
        for t in batch.clearedBySampling { t.zero() }
        batch.stepIndices.withUnsafeMutableBufferPointer { $0.update(repeating: -1) }  // one access, not one per element
        // The batch's storage as plain pointers for the whole draw (measured: reading each tensor's
        // `data` in the loop instead doubles the sampler's time, through dynamic exclusivity checks).
        let observations = batch.observations.data, previousObservations = batch.previousObservations.data, actions = batch.actions.data
        let previousActions = batch.previousActions.data, hasPreviousAction = batch.hasPreviousAction.data, previousRewards = batch.previousRewards.data
        let rewards = batch.rewards.data, globalStates = batch.globalStates.data, actionMasks = batch.actionMasks.data
        let agentActive = batch.agentActive.data, agentFinished = batch.agentFinished.data, terminated = batch.terminated.data
        let resetMask = batch.resetMask.data, validMask = batch.validMask.data, finalStepMask = batch.finalStepMask.data
        let initialActorState = batch.initialActorState.data, initialCriticState = batch.initialCriticState.data, targetInitialCriticState = batch.targetInitialCriticState.data
        let stored = c.initialState.usesStoredStates, timeLimitsTerminal = c.timeLimitsTerminal == true

        var carried: Int? = nil  // packing: the episode that did not fit in the last row starts the next one
        batch.stepIndices.withUnsafeMutableBufferPointer { stepIndices in  // one access for the whole draw
            for row in 0..<B {
                var slot = 0
                var firstWindow = true
                while slot < L && (firstWindow || !stored) {
                    var i: Int
                    let steps: Int
                    if packing {
                        i = carried ?? replay.episodeStart(rng.integer(below: replay.episodeCount))
                        carried = nil
                        steps = min(episodeLength(replay, from: i), L)
                        if slot + steps > L {
                            carried = i
                            break
                        }
                    } else {
                        var length = drawLength(&rng)
                        if firstWindow && stored { length = max(length, min(L, c.burnIn + 1)) }
                        steps = min(length, L - slot)
                        i = drawStart(replay, &rng)
                    }
                    let k0 = slot * B + row
                    resetMask[k0] = 1
                    if firstWindow {
                        if layout.actorStateWidth > 0 {
                            let w = layout.actorStateFloats
                            (initialActorState + row * w).update(from: replay.actorState(i), count: w)
                        }
                        if layout.criticStateWidth > 0 {
                            let w = layout.criticStateWidth
                            (initialCriticState + row * w).update(from: replay.criticState(i), count: w)
                            (targetInitialCriticState + row * w).update(from: replay.criticState(i), count: w)
                        }
                    }
                    var m = 0
                    while true {
                        let s = slot + m, k = s * B + row
                        copyFloats(observations + k * o, from: replay.observation(i), count: o)
                        copyFloats(actions + k * a, from: replay.action(i), count: a)
                        if let p = replay.predecessor(i) {
                            copyFloats(previousObservations + k * o, from: replay.observation(p), count: o)
                            copyFloats(previousActions + k * a, from: replay.action(p), count: a)
                            hasPreviousAction[k] = 1
                            copyFloats(previousRewards + k * n, from: replay.rewards(p), count: n)
                        }
                        copyFloats(rewards + k * n, from: replay.rewards(i), count: n)
                        if g > 0 { copyFloats(globalStates + k * g, from: replay.globalState(i), count: g) }
                        if am > 0 { copyFloats(actionMasks + k * am, from: replay.actionMask(i), count: am) }
                        if f > 0 {
                            copyFloats(agentActive + k * f, from: replay.activity(i), count: f)
                            copyFloats(agentFinished + k * f, from: replay.agentFinished(i), count: f)
                        }
                        terminated[k] = replay.terminated(i) || (timeLimitsTerminal && replay.truncated(i)) ? 1 : 0
                        validMask[k] = s >= c.burnIn ? 1 : 0
                        stepIndices[k] = i
                        if firstWindow && m == 1 && layout.criticStateWidth > 0 {
                            let w = layout.criticStateWidth
                            (targetInitialCriticState + row * w).update(from: replay.criticState(i), count: w)
                        }
                        m += 1
                        guard m < steps, !replay.endsEpisode(i), let next = replay.successor(i) else { break }
                        i = next
                    }
                    let last = (slot + m - 1) * B + row
                    finalStepMask[last] = validMask[last]
                    // The bootstrap slot: the last step's next observation, with that step as its context.
                    let k = (slot + m) * B + row
                    copyFloats(observations + k * o, from: replay.nextObservation(i), count: o)
                    copyFloats(previousObservations + k * o, from: replay.observation(i), count: o)
                    copyFloats(previousActions + k * a, from: replay.action(i), count: a)
                    hasPreviousAction[k] = 1
                    copyFloats(previousRewards + k * n, from: replay.rewards(i), count: n)
                    if g > 0 { copyFloats(globalStates + k * g, from: replay.nextGlobalState(i), count: g) }
                    if am > 0 { copyFloats(actionMasks + k * am, from: replay.nextActionMask(i), count: am) }
                    if f > 0 {
                        // Still in the episode after the last step: active then and not finished there.
                        let active = replay.activity(i), finished = replay.agentFinished(i)
                        for j in 0..<f { agentActive[k * f + j] = active[j] * (1 - finished[j]) }
                    }
                    slot += m + 1
                    firstWindow = false
                }
                if slot < L + 1 { resetMask[slot * B + row] = 1 }  // padding starts clean
            }
        }
        return batch
    }

    /// Draws each row's first window as `sample` will, on a copy of the generator, and asks for the
    /// replay's cache lines of its first step: the reads of randomly drawn steps miss the caches, and
    /// in the copy loop each miss waits alone (measured: one load, the first of each row, took half
    /// of the sampler's time in `rrl bench sac`). Only a hint: a row with several windows makes the
    /// later guesses wrong, never the batch.
    func prefetchFirstSteps(_ replay: EpisodeReplay, rows: Int, rng: RandomGenerator) {
        var probe = rng
        let stored = configuration.initialState.usesStoredStates
        for _ in 0..<rows {
            _ = drawLength(&probe)
            let i = drawStart(replay, &probe)
            prefetch(replay.observation(i))
            prefetch(replay.nextObservation(i))
            prefetch(replay.action(i))
            prefetch(replay.rewards(i))
            if let p = replay.predecessor(i) { prefetch(replay.observation(p)) }
            if stored, replay.layout.actorStateWidth > 0 { prefetch(replay.actorState(i)) }
        }
    }

    /// Steps from `i` to the end of its episode (or to the replay's newest step for an episode still open).
    func episodeLength(_ replay: EpisodeReplay, from i: Int) -> Int {
        var i = i, n = 1
        while !replay.endsEpisode(i), let next = replay.successor(i) {
            i = next
            n += 1
        }
        return n
    }
}
