import Tensors

/// What one multi-agent step returned besides the per-agent buffers it wrote.
public struct MultiAgentStepResult: Equatable, Sendable {
    /// The episode ended in a terminal state of the task (no bootstrapping from it).
    public var terminated: Bool
    /// The episode was cut (time limit): bootstrap from the next state.
    public var truncated: Bool

    public init(terminated: Bool = false, truncated: Bool = false) {
        self.terminated = terminated
        self.truncated = truncated
    }

    public var done: Bool { terminated || truncated }
}

/// How the agents' rewards make the team's return (what training and evaluation report).
public enum TeamReturn: String, Codable, Sendable {
    /// The sum of the agents' rewards (foraging: the agents' shares of the food add up to 1).
    case sum
    /// Their mean (environments whose agents all receive one common reward).
    case mean

    /// The team's value of `agents` rewards.
    @inline(__always) public func of(_ rewards: UnsafePointer<Float>, agents: Int) -> Double {
        var sum = Double(rewards[0])
        for k in 1..<max(agents, 1) { sum += Double(rewards[k]) }
        return self == .mean ? sum / Double(agents) : sum
    }
}

/// A cooperative or mixed environment of `agents` agents acting together, PettingZoo-parallel
/// style: every agent has its own observation, action and reward each step; the episode ends for
/// all at once (terminated or truncated, kept apart); an agent may finish earlier (it is then
/// inactive: its reward is 0 and its action is ignored until the episode ends).
///
/// Per-agent data travels agent-inner through caller-owned buffers: observations `[agents,
/// observationWidth]`, actions `[agents, actionWidth]`, rewards and activity `[agents]`, action
/// masks `[agents, n]`. Every agent has the same spaces (environments whose agents differ pad to
/// the widest, as the replay stores fixed-width per-agent columns).
///
/// Randomness as in `Environment`: `reset(seed:)` with a seed restarts the environment's own
/// generator, without one it continues the stream.
public protocol MultiAgentEnvironment: AnyObject {
    /// The registry name, e.g. `foraging`.
    var name: String { get }
    var agents: Int { get }
    /// One agent's observation space.
    var observationSpace: Space { get }
    /// One agent's action space.
    var actionSpace: Space { get }
    /// Floats of the global state a centralised critic may see (0: none; critics then see the
    /// joint observation).
    var globalStateWidth: Int { get }
    /// Episodes are truncated after this many steps.
    var maxEpisodeSteps: Int { get }
    /// Whether `availableActions` restricts the discrete actions (otherwise every action is valid).
    var hasActionMasks: Bool { get }
    /// How the agents' rewards make the team's return (default: their sum).
    var teamReturn: TeamReturn { get }
    /// Starts an episode and writes every agent's first observation. (Built-in environments never
    /// throw; one served by a Python process throws what went wrong there.)
    func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) throws
    /// Applies every agent's action; writes the next observations, the rewards, and which agents
    /// are still active (an agent that finished stays inactive until the episode ends).
    func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
              active: UnsafeMutablePointer<Bool>) throws -> MultiAgentStepResult
    /// Writes the current global state (`globalStateWidth` floats).
    func globalState(into state: UnsafeMutablePointer<Float>)
    /// Writes 1 for each action each agent may take now, 0 otherwise (`[agents, n]`).
    func availableActions(into mask: UnsafeMutablePointer<Float>)
    /// Checkpointing, as `Environment`.
    func save(to archive: StateArchive, prefix: String) throws
    func restore(from archive: StateArchiveReader, prefix: String) throws
}

/// Actions per agent in the action masks of an environment with `space` (0 unless it is discrete and masked).
func maskWidth(of space: Space, masked: Bool) -> Int {
    if case .discrete(let n) = space, masked { return n }
    return 0
}

extension MultiAgentEnvironment {
    /// Actions per agent in `availableActions`' masks: the discrete action count when the environment
    /// has masks, else 0.
    public var actionMaskWidth: Int { maskWidth(of: actionSpace, masked: hasActionMasks) }
    public var globalStateWidth: Int { 0 }
    public var hasActionMasks: Bool { false }
    public var teamReturn: TeamReturn { .sum }
    public func globalState(into state: UnsafeMutablePointer<Float>) {}
    public func availableActions(into mask: UnsafeMutablePointer<Float>) {
        guard case .discrete(let n) = actionSpace else { return }
        mask.update(repeating: 1, count: agents * n)
    }
    public func save(to archive: StateArchive, prefix: String) throws {
        throw EnvironmentError(environment: name, message: "cannot be checkpointed: it does not implement save(to:prefix:) and restore(from:prefix:), which training needs for its checkpoints")
    }
    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        throw EnvironmentError(environment: name, message: "cannot be restored from a checkpoint")
    }
}

/// A single-agent environment seen as a multi-agent one with one agent: the same spaces, reward
/// and flags, no global state. Nothing is copied; every call goes to the wrapped environment.
public final class SingleAgentAdapter: MultiAgentEnvironment {
    public let environment: any Environment
    public init(_ environment: any Environment) { self.environment = environment }

    public var name: String { environment.name }
    public var agents: Int { 1 }
    public var observationSpace: Space { environment.observationSpace }
    public var actionSpace: Space { environment.actionSpace }
    public var maxEpisodeSteps: Int { environment.maxEpisodeSteps }

    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) {
        environment.reset(seed: seed, observation: observations)
    }

    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
                     active: UnsafeMutablePointer<Bool>) -> MultiAgentStepResult {
        let result = environment.step(action: actions, observation: observations)
        rewards[0] = result.reward
        active[0] = true
        return MultiAgentStepResult(terminated: result.terminated, truncated: result.truncated)
    }

    public func save(to archive: StateArchive, prefix: String) throws { try environment.save(to: archive, prefix: prefix) }
    public func restore(from archive: StateArchiveReader, prefix: String) throws { try environment.restore(from: archive, prefix: prefix) }
}
