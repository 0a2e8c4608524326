import Tensors

/// N copies of a multi-agent environment stepped in lockstep, tracking which copies are running.
///
/// Two ways to handle a copy whose episode ended:
/// - `.resetEachCopy`: the copy is reset at once, alone (its row then holds the first observation
///   of its next episode; `episodeStarts` marks it so that the caller resets that copy's recurrent
///   states and nothing else), as `VectorEnvironment` does.
/// - `.resetTogether`: the copy stops (`running` false) and keeps its last observation; it is not
///   stepped, its rewards are 0 and its actions ignored, until every copy has ended; then all are
///   reset together (CleanMARL's way, which keeps the copies' episodes aligned in time).
///
/// A stopped copy's rows never change, so nothing of it leaks into the other copies or into a
/// learner that masks it with `running`. Per-agent buffers are agent-inner: observations
/// `[N, agents, observationWidth]`, rewards and activity `[N, agents]`.
///
/// Seeding: copy i is first reset with `seed + i`; later resets continue each copy's own stream.
public final class MultiAgentVectorEnvironment {
    /// What happens to a copy whose episode ended (see above).
    public enum ResetMode: String, Codable, Sendable { case resetEachCopy, resetTogether }

    public let copies: [any MultiAgentEnvironment]
    public let mode: ResetMode
    public let count: Int, agents: Int
    public let name: String
    public let observationSpace: Space, actionSpace: Space
    public let observationWidth: Int, actionWidth: Int, globalStateWidth: Int
    /// How the agents' rewards make a copy's return.
    public let teamReturn: TeamReturn
    /// `[N, agents, observationWidth]`: what each agent acts on next.
    public let observations: Tensor
    /// `[N, agents, observationWidth]`: the last observations of an episode that ended at the last step.
    public let finalObservations: Tensor
    /// `[N, globalStateWidth]`: the global state each copy is in, and the last one of an episode that ended.
    public let globalStates: Tensor
    public let finalGlobalStates: Tensor
    /// `[N, agents]`: the last step's rewards.
    public let rewards: Tensor
    /// Actions per agent in the action masks: the discrete action count when the environment has
    /// masks (`hasActionMasks`), else 0.
    public let actionMaskWidth: Int
    /// `[N, agents, actionMaskWidth]`: the actions each agent may take now, and at the last
    /// observations of an episode that ended at the last step.
    public let actionMasks: Tensor
    public let finalActionMasks: Tensor
    /// `[N, agents]`: whether each agent is still active in its episode.
    public internal(set) var active: [Bool]
    public internal(set) var terminated: [Bool]
    public internal(set) var truncated: [Bool]
    /// True where the copy's observations are the first of an episode.
    public internal(set) var episodeStarts: [Bool]
    /// False for a copy that ended and waits for the others (`.resetTogether` only).
    public internal(set) var running: [Bool]
    /// Each copy's running team return (`teamReturn`), and the episode's length.
    public internal(set) var episodeReturns: [Double]
    public internal(set) var episodeLengths: [Int]
    var finished: [(return: Double, length: Int)] = []
    /// Environment steps taken, summed over the copies that were stepped.
    public internal(set) var totalSteps = 0
    /// The seed of the last seeded reset (resuming Python copies seeds their new episodes from it).
    var resetSeed: UInt64?

    public init(_ copies: [any MultiAgentEnvironment], mode: ResetMode = .resetEachCopy) {
        precondition(!copies.isEmpty, "a vector environment needs at least one copy")
        self.copies = copies
        self.mode = mode
        let first = copies[0]
        count = copies.count
        agents = first.agents
        name = first.name
        observationSpace = first.observationSpace
        actionSpace = first.actionSpace
        observationWidth = observationSpace.width
        actionWidth = actionSpace.width
        globalStateWidth = first.globalStateWidth
        teamReturn = first.teamReturn
        let n = count
        observations = Tensor(Shape(d0: n, d1: agents, d2: observationWidth))
        finalObservations = Tensor(Shape(d0: n, d1: agents, d2: observationWidth))
        globalStates = Tensor(Shape(d0: n, d1: max(globalStateWidth, 0)))
        finalGlobalStates = Tensor(Shape(d0: n, d1: max(globalStateWidth, 0)))
        rewards = Tensor(Shape(d0: n, d1: agents))
        actionMaskWidth = first.actionMaskWidth
        actionMasks = Tensor(Shape(d0: n, d1: agents, d2: actionMaskWidth))
        finalActionMasks = Tensor(Shape(d0: n, d1: agents, d2: actionMaskWidth))
        active = [Bool](repeating: true, count: n * agents)
        terminated = [Bool](repeating: false, count: n)
        truncated = terminated
        episodeStarts = [Bool](repeating: true, count: n)
        running = [Bool](repeating: true, count: n)
        episodeReturns = [Double](repeating: 0, count: n)
        episodeLengths = [Int](repeating: 0, count: n)
    }

    /// `count` new copies of the environment `spec` names (a single-agent one adapted as one agent;
    /// a Python one served by a bridge process per copy).
    public convenience init(spec: EnvironmentSpec, count: Int, mode: ResetMode = .resetEachCopy) throws {
        precondition(count >= 1, "a vector environment needs at least one copy")
        if spec.isPython && count > MultiAgentVectorEnvironment.maxPythonCopies {
            throw EnvironmentError(environment: spec.name, message: "\(count) copies of a Python multi-agent environment (one process each) is more than the \(MultiAgentVectorEnvironment.maxPythonCopies) rrl starts; use fewer copies (--envs)")
        }
        self.init(try (0..<count).map { _ in try spec.makeMultiAgent() }, mode: mode)
    }

    /// The most copies of a Python multi-agent environment (one bridge process each).
    public static let maxPythonCopies = 64

    /// Copy i's observations (all agents).
    public func observation(_ i: Int) -> UnsafeMutablePointer<Float> { observations.data + i * agents * observationWidth }
    public func finalObservation(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data + i * agents * observationWidth }
    public func globalState(_ i: Int) -> UnsafeMutablePointer<Float> { globalStates.data + i * globalStateWidth }
    public func finalGlobalState(_ i: Int) -> UnsafeMutablePointer<Float> { finalGlobalStates.data + i * globalStateWidth }
    public func actionMask(_ i: Int) -> UnsafeMutablePointer<Float> { actionMasks.data + i * agents * actionMaskWidth }
    public func finalActionMask(_ i: Int) -> UnsafeMutablePointer<Float> { finalActionMasks.data + i * agents * actionMaskWidth }

    /// Resets every copy (copy i with `seed + i`, or continuing its stream).
    public func reset(seed: UInt64?) throws {
        if let seed { resetSeed = seed }
        for i in 0..<count { try resetCopy(i, seed: seed.map { $0 &+ UInt64(i) }) }
    }

    func resetCopy(_ i: Int, seed: UInt64?) throws {
        try copies[i].reset(seed: seed, observations: observation(i))
        copies[i].globalState(into: globalState(i))
        if actionMaskWidth > 0 { copies[i].availableActions(into: actionMask(i)) }
        try check(i, step: 0, what: "observation after reset", in: observation(i))
        for k in 0..<agents { active[i * agents + k] = true }
        episodeStarts[i] = true
        running[i] = true
        episodeReturns[i] = 0
        episodeLengths[i] = 0
    }

    /// Steps every running copy with its agents' actions (`[N, agents, actionWidth]`, in the
    /// action space; a stopped copy's and an inactive agent's are ignored), then resets as the mode
    /// says. Throws on an action outside the space or a non-finite observation or reward.
    public func step(_ actions: UnsafePointer<Float>) throws {
        let a = actionWidth
        for i in 0..<count where running[i] {
            for k in 0..<agents where active[i * agents + k] && !actionSpace.contains(actions + (i * agents + k) * a) {
                let values = Array(UnsafeBufferPointer(start: actions + (i * agents + k) * a, count: a))
                throw EnvironmentError(environment: name, message: "copy \(i), agent \(k), episode step \(episodeLengths[i] + 1): action \(values) is outside the action space \(actionSpace)")
            }
        }
        for i in 0..<count {
            episodeStarts[i] = false
            guard running[i] else {
                for k in 0..<agents { rewards.data[i * agents + k] = 0 }
                continue
            }
            let env = copies[i], obs = observation(i), r = rewards.data + i * agents, offset = i * agents
            let result = try active.withUnsafeMutableBufferPointer {
                try env.step(actions: actions + offset * a, observations: obs, rewards: r, active: $0.baseAddress! + offset)
            }
            copies[i].globalState(into: globalState(i))
            if actionMaskWidth > 0 { copies[i].availableActions(into: actionMask(i)) }
            episodeLengths[i] += 1
            totalSteps += 1
            try check(i, step: episodeLengths[i], what: "observation", in: observation(i))
            for k in 0..<agents {
                let r = rewards.data[i * agents + k]
                guard r.isFinite else {
                    throw EnvironmentError(environment: name, message: "copy \(i), agent \(k), episode step \(episodeLengths[i]): reward is \(r); fix the environment's reward")
                }
            }
            episodeReturns[i] += teamReturn.of(rewards.data + i * agents, agents: agents)
            terminated[i] = result.terminated
            truncated[i] = result.truncated && !result.terminated
            guard result.done else { continue }
            finished.append((episodeReturns[i], episodeLengths[i]))
            finalObservation(i).update(from: observation(i), count: agents * observationWidth)
            finalGlobalState(i).update(from: globalState(i), count: globalStateWidth)
            finalActionMask(i).update(from: actionMask(i), count: agents * actionMaskWidth)
            switch mode {
            case .resetEachCopy: try resetCopy(i, seed: nil)
            case .resetTogether: running[i] = false
            }
        }
        if mode == .resetTogether && !running.contains(true) {
            for i in 0..<count { try resetCopy(i, seed: nil) }
        }
    }

    /// Hands over the episodes that finished since the last call (team return, length).
    public func drainFinishedEpisodes(_ body: (_ return: Double, _ length: Int) -> Void) {
        for episode in finished { body(episode.return, episode.length) }
        finished.removeAll(keepingCapacity: true)
    }

    private func check(_ i: Int, step: Int, what: String, in rows: UnsafeMutablePointer<Float>) throws {
        for j in 0..<(agents * observationWidth) where !rows[j].isFinite {
            throw EnvironmentError(environment: name, message: "copy \(i), agent \(j / observationWidth), episode step \(step): \(what)[\(j % observationWidth)] is \(rows[j]); fix the environment")
        }
    }
}
