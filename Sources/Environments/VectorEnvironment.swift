import Tensors

/// N copies of an environment stepped in lockstep. When a copy's episode ends (terminated or
/// truncated) only that copy is reset: its row of `observations` then holds the first observation
/// of its next episode, `finalObservations` keeps the last observation of the episode that ended
/// (a truncated episode bootstraps from it), and `episodeStarts` marks the copy so that the caller
/// resets that copy's recurrent state, and nothing else.
///
/// Seeding: copy i is first reset with `seed + i`; later resets continue each copy's own stream.
public final class VectorEnvironment {
    public let copies: [any Environment]
    public let observationWidth: Int
    public let actionWidth: Int
    /// `[N, observationWidth]`: the observation each copy acts on next.
    public let observations: Tensor
    /// `[N, observationWidth]`: the last observation of an episode that ended at the last step.
    public let finalObservations: Tensor
    /// `[N]` each: the last step's reward and flags.
    public let rewards: Tensor
    public internal(set) var terminated: [Bool]
    public internal(set) var truncated: [Bool]
    /// True where the copy's observation is the first of an episode (after `reset` or an auto-reset).
    public internal(set) var episodeStarts: [Bool]
    /// Return and length of each copy's running episode.
    public internal(set) var episodeReturns: [Double]
    public internal(set) var episodeLengths: [Int]
    /// Episodes finished since the last `drainFinishedEpisodes(_:)`: (return, length).
    var finished: [(return: Double, length: Int)] = []
    /// Environment steps taken, summed over copies.
    public internal(set) var totalSteps = 0
    private let actionScratch: UnsafeMutablePointer<Float>

    public var count: Int { copies.count }
    public var name: String { copies[0].name }
    public var observationSpace: Space { copies[0].observationSpace }
    public var actionSpace: Space { copies[0].actionSpace }

    public init(_ copies: [any Environment]) {
        precondition(!copies.isEmpty, "a vector environment needs at least one copy")
        self.copies = copies
        observationWidth = copies[0].observationSpace.width
        actionWidth = copies[0].actionSpace.width
        let n = copies.count
        observations = Tensor(Shape(d0: n, d1: observationWidth))
        finalObservations = Tensor(Shape(d0: n, d1: observationWidth))
        rewards = Tensor(Shape(d0: n))
        terminated = [Bool](repeating: false, count: n)
        truncated = terminated
        episodeStarts = [Bool](repeating: true, count: n)
        episodeReturns = [Double](repeating: 0, count: n)
        episodeLengths = [Int](repeating: 0, count: n)
        actionScratch = .allocate(capacity: max(actionWidth, 1))
    }

    /// `count` new copies of a registered environment.
    public convenience init(name: String, count: Int) throws {
        precondition(count >= 1, "a vector environment needs at least one copy")
        self.init(try (0..<count).map { _ in try EnvironmentRegistry.make(name) })
    }

    deinit { actionScratch.deallocate() }

    public func observation(_ i: Int) -> UnsafeMutablePointer<Float> { observations.data + i * observationWidth }
    public func finalObservation(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data + i * observationWidth }

    /// Resets every copy (copy i with `seed + i`, or continuing its stream without a seed).
    public func reset(seed: UInt64?) throws {
        for (i, env) in copies.enumerated() {
            env.reset(seed: seed.map { $0 &+ UInt64(i) }, observation: observation(i))
            try checkObservation(i, step: 0, what: "observation after reset")
            episodeStarts[i] = true
            episodeReturns[i] = 0
            episodeLengths[i] = 0
        }
    }

    /// Steps every copy with its row of `actions` (`[N, actionWidth]`, in the environment's space).
    /// Throws when a copy returns a non-finite observation or reward, or when an action lies
    /// outside the action space.
    public func step(_ actions: UnsafePointer<Float>) throws {
        for (i, env) in copies.enumerated() {
            let a = actions + i * actionWidth
            guard env.actionSpace.contains(a) else {
                let values = Array(UnsafeBufferPointer(start: a, count: actionWidth))
                throw EnvironmentError(environment: env.name, message: "copy \(i), episode step \(episodeLengths[i] + 1): action \(values) is outside the action space \(env.actionSpace)")
            }
            actionScratch.update(from: a, count: actionWidth)
            let result = env.step(action: actionScratch, observation: observation(i))
            episodeLengths[i] += 1
            totalSteps += 1
            try checkObservation(i, step: episodeLengths[i], what: "observation")
            guard result.reward.isFinite else {
                throw EnvironmentError(environment: env.name, message: "copy \(i), episode step \(episodeLengths[i]): reward is \(result.reward); fix the environment's reward")
            }
            rewards.data[i] = result.reward
            terminated[i] = result.terminated
            truncated[i] = result.truncated && !result.terminated
            episodeReturns[i] += Double(result.reward)
            if result.done {
                finished.append((episodeReturns[i], episodeLengths[i]))
                finalObservation(i).update(from: observation(i), count: observationWidth)
                env.reset(seed: nil, observation: observation(i))
                try checkObservation(i, step: 0, what: "observation after reset")
                episodeReturns[i] = 0
                episodeLengths[i] = 0
                episodeStarts[i] = true
            } else {
                episodeStarts[i] = false
            }
        }
    }

    /// Hands over the episodes that finished since the last call, oldest first, and forgets them
    /// (no array is built: this runs every step).
    public func drainFinishedEpisodes(_ body: (_ return: Double, _ length: Int) -> Void) {
        for episode in finished { body(episode.return, episode.length) }
        finished.removeAll(keepingCapacity: true)
    }

    private func checkObservation(_ i: Int, step: Int, what: String) throws {
        let o = observation(i)
        for j in 0..<observationWidth where !o[j].isFinite {
            throw EnvironmentError(environment: copies[i].name, message: "copy \(i), episode step \(step): \(what)[\(j)] is \(o[j]); fix the environment (a NaN usually means a division by zero or an unbounded state)")
        }
    }
}
