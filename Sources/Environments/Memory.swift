import Tensors

/// The memory task (RLtools' benchmark for recurrent SAC): each step shows one bit, 1 with
/// probability 2/H; the action a ∈ [-1, 1] earns -10·|clamp(a, -1, 1) - c/10|, where c counts the
/// ones among the last H bits shown, the current one included. The history starts as zeros with a
/// random last bit; episodes last 2000 steps and never terminate.
///
/// A memoryless policy can only guess c from the current bit; remembering the last H bits
/// gives reward 0 (for H ≤ 10, where c/10 stays in [0, 1]).
public final class MemoryTask: Environment {
    /// H: how many of the last bits the agent must count.
    public let horizon: Int
    public let maxEpisodeSteps: Int
    /// Probability of a 1 at each step.
    public var onProbability: Float { 2 / Float(horizon) }
    public var rng = RandomGenerator(seed: 0)
    public internal(set) var elapsedSteps = 0
    var bits: [UInt8]
    var position = 0
    /// Ones among the last `horizon` bits (the current one included).
    public internal(set) var count = 0

    public init(horizon: Int = 10, maxEpisodeSteps: Int = 2000) {
        precondition(horizon >= 1, "memory: horizon must be at least 1")
        self.horizon = horizon
        self.maxEpisodeSteps = maxEpisodeSteps
        bits = [UInt8](repeating: 0, count: horizon)
    }

    public var name: String { "memory" }
    public var observationSpace: Space { .box(low: [0], high: [1]) }
    public var actionSpace: Space { .box(low: [-1], high: [1]) }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        for i in 0..<horizon { bits[i] = 0 }
        position = horizon - 1
        bits[position] = rng.uniform() < onProbability ? 1 : 0
        count = Int(bits[position])
        elapsedSteps = 0
        observation[0] = Float(bits[position])
    }

    /// The reward for `action` given the bits shown so far.
    public func reward(for action: Float) -> Float {
        -10 * abs(min(max(action, -1), 1) - Float(count) / 10)
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        let r = reward(for: action[0])
        // Show the next bit: it replaces the oldest of the last H.
        position = (position + 1) % horizon
        count -= Int(bits[position])
        bits[position] = rng.uniform() < onProbability ? 1 : 0
        count += Int(bits[position])
        elapsedSteps += 1
        observation[0] = Float(bits[position])
        return StepResult(reward: r, terminated: false, truncated: elapsedSteps >= maxEpisodeSteps)
    }
}

extension MemoryTask: MemoryProbing {
    public func makeProbe(length: Int) -> any Environment & MemoryProbing {
        MemoryTask(horizon: horizon, maxEpisodeSteps: length + 1)
    }

    /// Right when the action, read as count / 10 and rounded, names the count.
    public func isCorrect(action: UnsafePointer<Float>) -> Bool { Int((10 * action[0]).rounded()) == count }
}
