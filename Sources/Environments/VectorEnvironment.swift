import Tensors

/// N copies of an environment stepped in lockstep. When a copy's episode ends (terminated or
/// truncated) only that copy is reset: its row of `observations` then holds the first observation
/// of its next episode, `finalObservations` keeps the last observation of the episode that ended
/// (a truncated episode bootstraps from it), and `episodeStarts` marks the copy so that the caller
/// resets that copy's recurrent state, and nothing else.
///
/// Seeding: copy i is first reset with `seed + i`; later resets continue each copy's own stream.
public final class VectorEnvironment {
    /// The copies, for built-in environments (empty when a Python bridge serves them).
    public let copies: [any Environment]
    /// The child process that steps Python environments (`gym:` names), all copies in one message.
    public let bridge: PythonBridge?
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
    /// The seed of the last seeded reset (resuming a Python environment seeds its new episodes from it).
    var resetSeed: UInt64?
    private let actionScratch: UnsafeMutablePointer<Float>

    private let stepFlags: UnsafeMutablePointer<UInt8>
    public let count: Int
    public let name: String
    public let observationSpace: Space
    public let actionSpace: Space

    public convenience init(_ copies: [any Environment]) {
        precondition(!copies.isEmpty, "a vector environment needs at least one copy")
        self.init(copies: copies, bridge: nil)
    }

    /// The copies of a Python environment that `bridge` serves.
    public convenience init(bridge: PythonBridge) {
        self.init(copies: [], bridge: bridge)
    }

    private init(copies: [any Environment], bridge: PythonBridge?) {
        self.copies = copies
        self.bridge = bridge
        if let bridge {
            name = "gym:" + bridge.environment
            observationSpace = bridge.observationSpace
            actionSpace = bridge.actionSpace
            count = bridge.count
        } else {
            name = copies[0].name
            observationSpace = copies[0].observationSpace
            actionSpace = copies[0].actionSpace
            count = copies.count
        }
        observationWidth = observationSpace.width
        actionWidth = actionSpace.width
        let n = count
        observations = Tensor(Shape(d0: n, d1: observationWidth))
        finalObservations = Tensor(Shape(d0: n, d1: observationWidth))
        rewards = Tensor(Shape(d0: n))
        terminated = [Bool](repeating: false, count: n)
        truncated = terminated
        episodeStarts = [Bool](repeating: true, count: n)
        episodeReturns = [Double](repeating: 0, count: n)
        episodeLengths = [Int](repeating: 0, count: n)
        actionScratch = .allocate(capacity: max(actionWidth, 1))
        stepFlags = .allocate(capacity: n)
        stepFlags.initialize(repeating: 0, count: n)
    }

    /// The most copies of a Python environment one bridge serves.
    public static let maxPythonCopies = 1024

    /// `count` new copies of a registered environment, or of a Python one (`gym:ID`, served by a
    /// bridge that imports `modules` first).
    public convenience init(name: String, count: Int, modules: [String] = []) throws {
        try self.init(spec: EnvironmentSpec(name, modules: modules), count: count)
    }

    /// `count` new copies of the environment `spec` names, with its options.
    public convenience init(spec: EnvironmentSpec, count: Int) throws {
        precondition(count >= 1, "a vector environment needs at least one copy")
        if spec.isPython {
            guard count <= VectorEnvironment.maxPythonCopies else {
                throw EnvironmentError(environment: spec.name, message: "\(count) copies in one Python process is more than the \(VectorEnvironment.maxPythonCopies) the bridge serves; use fewer copies (--envs)")
            }
            self.init(bridge: try PythonBridge(environment: String(spec.name.dropFirst(4)), count: count, options: spec.bridgeOptions))
        } else {
            self.init(try (0..<count).map { _ in try spec.make() })
        }
    }

    deinit {
        actionScratch.deallocate()
        stepFlags.deallocate()
    }

    public func observation(_ i: Int) -> UnsafeMutablePointer<Float> { observations.data + i * observationWidth }
    public func finalObservation(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data + i * observationWidth }

    /// Resets every copy (copy i with `seed + i`, or continuing its stream without a seed).
    public func reset(seed: UInt64?) throws {
        if let seed { resetSeed = seed }
        if let bridge {
            try bridge.reset(seed: seed, observations: observations.data)
        } else {
            for (i, env) in copies.enumerated() { env.reset(seed: seed.map { $0 &+ UInt64(i) }, observation: observation(i)) }
        }
        for i in 0..<count {
            try checkObservation(i, step: 0, what: "observation after reset")
            episodeStarts[i] = true
            episodeReturns[i] = 0
            episodeLengths[i] = 0
        }
    }

    /// Steps every copy with its row of `actions` (`[N, actionWidth]`, in the environment's space):
    /// built-in copies one by one, Python ones in one message to the bridge; either way a copy whose
    /// episode ended is reset alone. Throws when an action lies outside the action space, or a copy
    /// returns a non-finite observation or reward.
    public func step(_ actions: UnsafePointer<Float>) throws {
        for i in 0..<count where !actionSpace.contains(actions + i * actionWidth) {
            let values = Array(UnsafeBufferPointer(start: actions + i * actionWidth, count: actionWidth))
            throw EnvironmentError(environment: copyName(i), message: "copy \(i), episode step \(episodeLengths[i] + 1): action \(values) is outside the action space \(actionSpace)")
        }
        if let bridge {
            try bridge.step(actions: actions, observations: observations.data, finalObservations: finalObservations.data,
                            rewards: rewards.data, flags: stepFlags)
        } else {
            for (i, env) in copies.enumerated() {
                actionScratch.update(from: actions + i * actionWidth, count: actionWidth)
                let result = env.step(action: actionScratch, observation: observation(i))
                rewards.data[i] = result.reward
                stepFlags[i] = (result.terminated ? 1 : 0) | (result.truncated ? 2 : 0)
                if result.done {
                    finalObservation(i).update(from: observation(i), count: observationWidth)
                    env.reset(seed: nil, observation: observation(i))
                }
            }
        }
        for i in 0..<count {
            episodeLengths[i] += 1
            totalSteps += 1
            let ended = stepFlags[i] & 3 != 0
            if ended { try checkObservation(i, step: episodeLengths[i], what: "observation", in: finalObservations) }
            try checkObservation(i, step: ended ? 0 : episodeLengths[i], what: ended ? "observation after reset" : "observation")
            guard rewards.data[i].isFinite else {
                throw EnvironmentError(environment: copyName(i), message: "copy \(i), episode step \(episodeLengths[i]): reward is \(rewards.data[i]); fix the environment's reward")
            }
            terminated[i] = stepFlags[i] & 1 != 0
            truncated[i] = stepFlags[i] & 2 != 0 && !terminated[i]
            episodeReturns[i] += Double(rewards.data[i])
            if ended {
                finished.append((episodeReturns[i], episodeLengths[i]))
                episodeReturns[i] = 0
                episodeLengths[i] = 0
            }
            episodeStarts[i] = ended
        }
    }

    /// The name of copy i's environment (for messages).
    private func copyName(_ i: Int) -> String { copies.isEmpty ? name : copies[i].name }

    /// Hands over the episodes that finished since the last call, oldest first, and forgets them
    /// (no array is built: this runs every step).
    public func drainFinishedEpisodes(_ body: (_ return: Double, _ length: Int) -> Void) {
        for episode in finished { body(episode.return, episode.length) }
        finished.removeAll(keepingCapacity: true)
    }

    private func checkObservation(_ i: Int, step: Int, what: String, in rows: Tensor? = nil) throws {
        let o = (rows ?? observations).data + i * observationWidth
        for j in 0..<observationWidth where !o[j].isFinite {
            throw EnvironmentError(environment: copyName(i), message: "copy \(i), episode step \(step): \(what)[\(j)] is \(o[j]); fix the environment (a NaN usually means a division by zero or an unbounded state)")
        }
    }
}
