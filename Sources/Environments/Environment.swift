import Tensors

/// The set of valid observations or actions.
public enum Space: Equatable, CustomStringConvertible, Sendable {
    /// A vector of `low.count` floats, each within [low[i], high[i]] (bounds may be infinite).
    case box(low: [Float], high: [Float])
    /// One integer in 0..<n, carried as a single float.
    case discrete(Int)

    /// Floats needed to carry one value of this space.
    public var width: Int {
        switch self {
        case let .box(low, _): return low.count
        case .discrete: return 1
        }
    }

    /// True when `value` (of `width` floats) belongs to the space.
    public func contains(_ value: UnsafePointer<Float>) -> Bool {
        switch self {
        case let .box(low, high):
            for i in 0..<low.count where !(value[i] >= low[i] && value[i] <= high[i]) { return false }
            return true
        case let .discrete(n):
            let v = value[0]
            return v == v.rounded() && v >= 0 && v < Float(n)
        }
    }

    /// Writes a uniformly random member (for a box with infinite bounds, a standard normal draw).
    public func sample(into value: UnsafeMutablePointer<Float>, using rng: inout RandomGenerator) {
        switch self {
        case let .box(low, high):
            for i in 0..<low.count {
                value[i] = low[i].isFinite && high[i].isFinite ? rng.uniform(low[i], high[i]) : rng.normal()
            }
        case let .discrete(n):
            value[0] = Float(rng.integer(below: n))
        }
    }

    public var description: String {
        switch self {
        case let .box(low, high):
            let same = Set(low).count == 1 && Set(high).count == 1
            return same ? "Box(\(low.count), [\(low[0]), \(high[0])])" : "Box(\(low.count))"
        case let .discrete(n): return "Discrete(\(n))"
        }
    }
}

/// What one step returned (the observation is written into the caller's buffer).
public struct StepResult: Equatable, Sendable {
    public var reward: Float
    /// The episode ended in a terminal state of the task: no bootstrapping from it.
    public var terminated: Bool
    /// The episode was cut (time limit): the next state still has value; bootstrap from it.
    public var truncated: Bool

    public init(reward: Float, terminated: Bool = false, truncated: Bool = false) {
        self.reward = reward
        self.terminated = terminated
        self.truncated = truncated
    }

    /// The episode is over, for either reason.
    public var done: Bool { terminated || truncated }
}

/// A (partially observable) environment, Gymnasium-style: `reset` then `step` until
/// `terminated` or `truncated`. Observations and actions travel through caller-owned buffers
/// (`observationSpace.width` and `actionSpace.width` floats), so stepping allocates nothing.
///
/// Randomness: an environment owns a `RandomGenerator`; `reset(seed:)` with a seed restarts it,
/// without one it continues the stream, as in Gymnasium.
public protocol Environment: AnyObject {
    /// The registry name, e.g. `pendulum-velocity`.
    var name: String { get }
    var observationSpace: Space { get }
    var actionSpace: Space { get }
    /// Episodes are truncated after this many steps.
    var maxEpisodeSteps: Int { get }
    /// Starts an episode and writes its first observation.
    func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>)
    /// Applies `action` and writes the next observation.
    func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult
    /// Checkpointing: saves everything that the next steps depend on (episode state, random
    /// generator), so that a restored copy continues exactly. Environments that cannot be saved
    /// throw (the default), and training runs on them without checkpoints.
    func save(to archive: StateArchive, prefix: String) throws
    func restore(from archive: StateArchiveReader, prefix: String) throws
}

extension Environment {
    public func save(to archive: StateArchive, prefix: String) throws {
        throw EnvironmentError(environment: name, message: "cannot be checkpointed: it does not implement save(to:prefix:) and restore(from:prefix:), which training needs for its checkpoints")
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        throw EnvironmentError(environment: name, message: "cannot be restored from a checkpoint")
    }
}

/// An environment that broke its contract or was given something outside its spaces.
public struct EnvironmentError: Error, CustomStringConvertible, Equatable {
    public let environment: String
    public let message: String
    public init(environment: String, message: String) {
        self.environment = environment
        self.message = message
    }
    public var description: String { "environment '\(environment)': \(message)" }
}

/// An environment with a text view of its state, for `rrl evaluate --render` (goal-cycle).
public protocol TextRendering {
    /// The current state as lines of text.
    func render() -> String
    /// What an action (in the environment's space) does, in a few words.
    func describe(action: UnsafePointer<Float>) -> String
}

/// A task that measures memory directly, apart from its return: a probe is a fresh episode of a
/// given length after which the agent's last action is right or wrong (the memory task: the count of
/// ones among the last bits). Training reports the fraction right as `probe_accuracy`.
public protocol MemoryProbing {
    /// A fresh environment for one probe of `length` steps.
    func makeProbe(length: Int) -> any Environment & MemoryProbing
    /// Whether `action` (taken after the probe's last observation) is the right answer.
    func isCorrect(action: UnsafePointer<Float>) -> Bool
}
