import Tensors

/// The passive T-maze (Ni et al., "When do transformers shine in RL?", 2023): a corridor of
/// `length` cells ends in a junction with an arm up and an arm down; the goal arm is shown at the
/// first step only. Observations `[cue, junction]`: the cue is +1 (goal up) or -1 (goal down) at
/// the first step and 0 afterwards; `junction` is 1 at the corridor's end. Actions: 0 right, 1 left,
/// 2 up, 3 down. In the corridor every action but "right" costs `penalty` (default 1/length), and
/// "up" or "down" does nothing; at the junction "up" or "down" ends the episode with reward 1 for
/// the goal arm and 0 for the other. The episode ends after `length + 1` steps (by default, just
/// enough to walk the corridor and choose), so the best return is 1, and a policy without memory
/// succeeds half the time at best. That horizon is part of the task (nothing can follow it), so the
/// episode's end there is terminal, not a truncation: bootstrapping a time-out here would tell the
/// agent that walking on at the junction leads somewhere (recurrent PPO then never learns to turn
/// with a horizon of length + 1, and does when the end is terminal).
///
/// With `continuousActions` the action is four scores in [-1, 1], one per move, and the move with
/// the largest score is taken (the first on a tie), as in the continuous-action T-maze of RESeL's
/// released code: continuous SAC then explores with its Gaussian rather than a discrete policy's
/// per-step entropy.
public final class TMaze: Environment {
    public let length: Int
    public let penalty: Float
    public let maxEpisodeSteps: Int
    public let continuousActions: Bool
    public var rng = RandomGenerator(seed: 0)
    public internal(set) var elapsedSteps = 0
    /// Cells walked from the start (0...length; `length` is the junction).
    public internal(set) var position = 0
    public internal(set) var goalUp = true

    public init(length: Int = 50, penalty: Float? = nil, maxEpisodeSteps: Int? = nil, continuousActions: Bool = false) {
        precondition(length >= 1, "t-maze: the corridor needs at least one cell")
        self.length = length
        self.penalty = penalty ?? 1 / Float(length)
        self.maxEpisodeSteps = maxEpisodeSteps ?? length + 1
        self.continuousActions = continuousActions
    }

    public var name: String { "t-maze" }
    public var observationSpace: Space { .box(low: [-1, 0], high: [1, 1]) }
    public var actionSpace: Space { continuousActions ? .box(low: [-1, -1, -1, -1], high: [1, 1, 1, 1]) : .discrete(4) }

    /// The move an action names: its index, or with continuous actions the highest score's.
    func move(_ action: UnsafePointer<Float>) -> Int {
        guard continuousActions else { return Int(action[0]) }
        var best = 0
        for i in 1..<4 where action[i] > action[best] { best = i }
        return best
    }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        goalUp = rng.uniform() < 0.5
        position = 0
        elapsedSteps = 0
        observation[0] = goalUp ? 1 : -1
        observation[1] = 0
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        elapsedSteps += 1
        let a = move(action)
        var reward: Float = 0, terminated = false
        if position == length && (a == 2 || a == 3) {
            reward = (a == 2) == goalUp ? 1 : 0
            terminated = true
        } else if a == 0 && position < length {
            position += 1
        } else {
            if a == 1 { position = max(position - 1, 0) }
            reward = -penalty
        }
        observation[0] = 0
        observation[1] = position == length ? 1 : 0
        return StepResult(reward: reward, terminated: terminated || elapsedSteps >= maxEpisodeSteps, truncated: false)
    }
}
