import Tensors

/// What an on-policy rollout of `steps` steps of `envs` rows (environment copies run in lockstep, or
/// with several agents one row per copy and agent, agent-inner) keeps, time-major (`[steps, envs, ...]`):
/// the encoder inputs (contexts), actions, log-probabilities, values, rewards, terminated and
/// truncated flags, episode starts, and the recurrent states entering every step.
///
/// Several agents: `criticContexts` holds a central critic's inputs (MAPPO: the global state and the
/// agent's id) when they are not the actor's, `actionMasks` the actions each row could take, and
/// `active` 0 where the row's agent had left the episode (the step weighs nothing in any loss).
///
/// States: `actorStates[t]` and `criticStates[t]` are the states the networks start step t from
/// (zeros at an episode start). `collectedActorStates` and `collectedCriticStates` keep the states
/// as collected, whatever refreshing later writes over `actorStates`/`criticStates`.
///
/// Bootstrapping: for a truncated step, `finalContexts[t]` is the input built from the last
/// observation of the episode and `finalValues[t]` its value; after the last step, `lastContexts`,
/// `lastActorStates`, `lastCriticStates`, `lastEpisodeStarts` and `lastValues` describe step T.
public final class RolloutBuffer {
    public let steps: Int
    public let envs: Int
    public let contextWidth: Int
    public let actionWidth: Int
    public let actorStateWidth: Int
    public let criticStateWidth: Int
    /// Floats of a central critic's input (0: the critic reads `contexts`).
    public let criticContextWidth: Int
    /// Actions per row in `actionMasks` (0: no masks).
    public let actionMaskWidth: Int

    public let contexts: Tensor
    public let criticContexts: Tensor
    public let actionMasks: Tensor
    /// 1 where the row's agent took part in the step, 0 where it had left the episode.
    public let active: Tensor
    public let actions: Tensor
    public let logProbabilities: Tensor
    public let values: Tensor
    public let rewards: Tensor
    /// 1 where the step ended its episode in a terminal state (no bootstrap), else 0.
    public let terminated: Tensor
    /// 1 where the step ended its episode by a time limit (bootstrap from `finalValues`), else 0.
    public let truncated: Tensor
    /// 1 where the step is the first of an episode (the recurrent state restarts from zeros).
    public let episodeStarts: Tensor
    public let actorStates: Tensor
    public let criticStates: Tensor
    public let collectedActorStates: Tensor
    public let collectedCriticStates: Tensor
    public let finalContexts: Tensor
    public let finalCriticContexts: Tensor
    public let finalValues: Tensor
    public let lastContexts: Tensor
    public let lastCriticContexts: Tensor
    public let lastActorStates: Tensor
    public let lastCriticStates: Tensor
    public let lastEpisodeStarts: Tensor
    public let lastValues: Tensor
    public let advantages: Tensor
    public let returns: Tensor

    /// Steps written so far (0...steps).
    public private(set) var count = 0

    public init(steps: Int, envs: Int, contextWidth: Int, actionWidth: Int, actorStateWidth: Int, criticStateWidth: Int,
                criticContextWidth: Int = 0, actionMaskWidth: Int = 0) {
        precondition(steps >= 1 && envs >= 1, "a rollout needs at least one step and one environment")
        self.steps = steps
        self.envs = envs
        self.contextWidth = contextWidth
        self.actionWidth = actionWidth
        self.actorStateWidth = actorStateWidth
        self.criticStateWidth = criticStateWidth
        self.criticContextWidth = criticContextWidth
        self.actionMaskWidth = actionMaskWidth
        let T = steps, N = envs
        func grid(_ width: Int) -> Tensor { Tensor(Shape(d0: T, d1: N, d2: max(width, 1))) }
        contexts = grid(contextWidth)
        criticContexts = grid(criticContextWidth)
        actionMasks = grid(actionMaskWidth)
        active = Tensor(Shape(d0: T, d1: N))
        active.fill(1)
        actions = grid(actionWidth)
        logProbabilities = Tensor(Shape(d0: T, d1: N))
        values = Tensor(Shape(d0: T, d1: N))
        rewards = Tensor(Shape(d0: T, d1: N))
        terminated = Tensor(Shape(d0: T, d1: N))
        truncated = Tensor(Shape(d0: T, d1: N))
        episodeStarts = Tensor(Shape(d0: T, d1: N))
        actorStates = grid(actorStateWidth)
        criticStates = grid(criticStateWidth)
        collectedActorStates = grid(actorStateWidth)
        collectedCriticStates = grid(criticStateWidth)
        finalContexts = grid(contextWidth)
        finalCriticContexts = grid(criticContextWidth)
        finalValues = Tensor(Shape(d0: T, d1: N))
        lastContexts = Tensor(Shape(d0: N, d1: contextWidth))
        lastCriticContexts = Tensor(Shape(d0: N, d1: max(criticContextWidth, 1)))
        lastActorStates = Tensor(Shape(d0: N, d1: max(actorStateWidth, 1)))
        lastCriticStates = Tensor(Shape(d0: N, d1: max(criticStateWidth, 1)))
        lastEpisodeStarts = Tensor(Shape(d0: N))
        lastValues = Tensor(Shape(d0: N))
        advantages = Tensor(Shape(d0: T, d1: N))
        returns = Tensor(Shape(d0: T, d1: N))
        for t in [values, finalValues, terminated, truncated, episodeStarts, actorStates, criticStates] { t.zero() }
    }

    /// Starts a new rollout (the contents are overwritten step by step).
    public func clear() { count = 0 }

    public var isFull: Bool { count == steps }

    /// Index of (t, env) in a `[steps, envs]` grid.
    @inline(__always) public func index(_ t: Int, _ env: Int) -> Int { t * envs + env }

    /// Pointers into step `count`'s rows, for the collector to fill; then call `commit()`.
    public func context(_ t: Int, _ env: Int) -> UnsafeMutablePointer<Float> { contexts.data + index(t, env) * contextWidth }
    public func action(_ t: Int, _ env: Int) -> UnsafeMutablePointer<Float> { actions.data + index(t, env) * actionWidth }
    public func actorState(_ t: Int, _ env: Int) -> UnsafeMutablePointer<Float> { actorStates.data + index(t, env) * actorStateWidth }
    public func criticState(_ t: Int, _ env: Int) -> UnsafeMutablePointer<Float> { criticStates.data + index(t, env) * criticStateWidth }

    /// Marks step `count` written.
    public func commit() {
        precondition(count < steps, "the rollout is full; clear() it first")
        count += 1
    }

    /// Keeps the collected states (refreshing later overwrites `actorStates` and `criticStates`).
    public func keepCollectedStates() {
        collectedActorStates.copy(from: actorStates)
        collectedCriticStates.copy(from: criticStates)
    }

    /// Flags as booleans.
    @inline(__always) public func isTerminated(_ t: Int, _ env: Int) -> Bool { terminated.data[index(t, env)] != 0 }
    @inline(__always) public func isTruncated(_ t: Int, _ env: Int) -> Bool { truncated.data[index(t, env)] != 0 }
    @inline(__always) public func isEpisodeStart(_ t: Int, _ env: Int) -> Bool { episodeStarts.data[index(t, env)] != 0 }
    @inline(__always) public func isActive(_ t: Int, _ env: Int) -> Bool { active.data[index(t, env)] != 0 }

    /// Fills `returns` (TD(λ), the value targets) and `advantages` (GAE(λ), or with `lambdaReturnAdvantages`
    /// the TD(λ) return minus the value) from the stored rewards, values and bootstrap values.
    public func computeAdvantagesAndReturns(gamma: Float, lambda: Float, lambdaReturnAdvantages: Bool = false) {
        ReturnEstimators.lambdaReturns(rewards: rewards.data, values: values.data, terminated: terminated.data,
                                       truncated: truncated.data, finalValues: finalValues.data, lastValues: lastValues.data,
                                       steps: steps, envs: envs, gamma: gamma, lambda: lambda, into: returns.data)
        if lambdaReturnAdvantages {
            for i in 0..<(steps * envs) { advantages.data[i] = returns.data[i] - values.data[i] }
        } else {
            ReturnEstimators.generalizedAdvantages(rewards: rewards.data, values: values.data, terminated: terminated.data,
                                                   truncated: truncated.data, finalValues: finalValues.data, lastValues: lastValues.data,
                                                   steps: steps, envs: envs, gamma: gamma, lambda: lambda, into: advantages.data)
        }
    }
}

/// GAE(λ) and TD(λ) over a time-major `[steps, envs]` rollout, by their backward recursions.
///
/// The value after step t is: 0 when t terminated; the value of the episode's last observation
/// (`finalValues[t]`) when t was truncated; `values[t+1]` inside an episode; `lastValues` after the
/// rollout's last step. The recursions stop at episode ends and at the end of the rollout.
public enum ReturnEstimators {
    @inline(__always)
    static func nextValue(_ t: Int, _ n: Int, steps T: Int, envs N: Int, values: UnsafePointer<Float>, terminated: UnsafePointer<Float>,
                          truncated: UnsafePointer<Float>, finalValues: UnsafePointer<Float>, lastValues: UnsafePointer<Float>) -> (value: Float, continues: Bool) {
        let i = t * N + n
        if terminated[i] != 0 { return (0, false) }
        if truncated[i] != 0 { return (finalValues[i], false) }
        if t == T - 1 { return (lastValues[n], false) }
        return (values[i + N], true)
    }

    /// A_t = δ_t + γλ A_{t+1} (within an episode and the rollout), δ_t = r_t + γ V(next) - V(s_t).
    public static func generalizedAdvantages(rewards: UnsafePointer<Float>, values: UnsafePointer<Float>, terminated: UnsafePointer<Float>,
                                             truncated: UnsafePointer<Float>, finalValues: UnsafePointer<Float>, lastValues: UnsafePointer<Float>,
                                             steps T: Int, envs N: Int, gamma: Float, lambda: Float, into advantages: UnsafeMutablePointer<Float>) {
        for n in 0..<N {
            var following: Float = 0
            for t in stride(from: T - 1, through: 0, by: -1) {
                let i = t * N + n
                let (next, continues) = nextValue(t, n, steps: T, envs: N, values: values, terminated: terminated, truncated: truncated,
                                                  finalValues: finalValues, lastValues: lastValues)
                let delta = rewards[i] + gamma * next - values[i]
                following = delta + (continues ? gamma * lambda * following : 0)
                advantages[i] = following
            }
        }
    }

    /// G_t = r_t + γ((1 - λ) V(next) + λ G_{t+1}) within an episode and the rollout, and
    /// G_t = r_t + γ V(next) where the recursion stops (V(next) = 0 after a terminal step).
    public static func lambdaReturns(rewards: UnsafePointer<Float>, values: UnsafePointer<Float>, terminated: UnsafePointer<Float>,
                                     truncated: UnsafePointer<Float>, finalValues: UnsafePointer<Float>, lastValues: UnsafePointer<Float>,
                                     steps T: Int, envs N: Int, gamma: Float, lambda: Float, into returns: UnsafeMutablePointer<Float>) {
        for n in 0..<N {
            var following: Float = 0
            for t in stride(from: T - 1, through: 0, by: -1) {
                let i = t * N + n
                let (next, continues) = nextValue(t, n, steps: T, envs: N, values: values, terminated: terminated, truncated: truncated,
                                                  finalValues: finalValues, lastValues: lastValues)
                following = continues ? rewards[i] + gamma * ((1 - lambda) * next + lambda * following) : rewards[i] + gamma * next
                returns[i] = following
            }
        }
    }
}
