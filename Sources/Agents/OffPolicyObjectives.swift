import Foundation
import NeuralNetworks
import Tensors

/// The critics at the trained slots of the batch being learned from, as an algorithm's actor
/// objective sees them: Q for given actions, and dQ/da back from a gradient on Q. The critics'
/// own weights get no gradient through this view.
public protocol CriticView {
    /// Critics available (TD3's actor uses only the first).
    var count: Int { get }
    /// Q_i at every trained row: `rows x 1` for the given actions (continuous), `rows x n` for every
    /// discrete action (`actions` nil).
    func q(_ i: Int, actions: UnsafePointer<Float>?) -> Tensor
    /// d/da of Σ_rows qGradient · Q_i(h, a) for the actions of critic i's last `q` call (`rows x A`).
    func actionGradient(_ i: Int, qGradient: Tensor) -> Tensor
}

/// The agents of a batch whose rows are agent-inner (row r belongs to agent r % count): each
/// agent's temperature α (in), and each agent's Σ weight · entropy over its rows (out).
public struct AgentTemperatures {
    public let count: Int
    public let values: UnsafePointer<Float>
    public let entropies: UnsafeMutablePointer<Double>
    public init(count: Int, values: UnsafePointer<Float>, entropies: UnsafeMutablePointer<Double>) {
        self.count = count
        self.values = values
        self.entropies = entropies
    }
    /// The agent of row r.
    @inline(__always) public func agent(ofRow r: Int) -> Int { count == 1 ? 0 : r % count }
}

/// How an off-policy agent turns its acting network's output into actions.
public protocol ActionChoice: AnyObject {
    /// Floats the acting network's head emits per row.
    var policyOutputs: Int { get }
    /// Actions (stored form) for `rows` episodes from the acting network's output: the policy's
    /// mode (or the greedy action), or a draw (with exploration noise for a deterministic policy,
    /// ε-greedy for Q-values). Unavailable discrete actions carry `Categorical.maskedLogit`.
    func act(policyOutput: Tensor, rows: Int, deterministic: Bool, actions: UnsafeMutablePointer<Float>, rng: inout RandomGenerator)
}

/// ε-greedy over Q-values (VDN, QMIX): the greedy action, or with probability `epsilon` one drawn
/// uniformly among the available actions.
public final class EpsilonGreedy: ActionChoice {
    public let actions: Int
    public var epsilon: Float = 1
    public init(actions: Int) { self.actions = actions }
    public var policyOutputs: Int { actions }

    public func act(policyOutput out: Tensor, rows: Int, deterministic: Bool, actions chosen: UnsafeMutablePointer<Float>,
                    rng: inout RandomGenerator) {
        let n = actions, q = out.data
        Categorical.mode(logits: q, rows: rows, actions: n, into: chosen)
        guard !deterministic else { return }
        for r in 0..<rows where rng.uniform() < epsilon {
            if let j = Categorical.uniform(amongAvailable: n, rng: &rng, isAvailable: { q[r * n + $0] != Categorical.maskedLogit }) {
                chosen[r] = Float(j)
            }
        }
    }
}

/// The part of an off-policy actor-critic that depends on the algorithm and the action space;
/// `OffPolicyAgent` does the rest (networks, windows, the critics' regression, targets, schedules).
///
/// With the targets' minimum min_i Q'_i at the bootstrap slot, the critic target is
/// y = r + γ (1 - terminated) V(next) where `nextValue` is V; the actor minimises `actorLoss`.
public protocol OffPolicyObjective: ActionChoice {
    /// Draws a' at `rows` bootstrap rows from the (target) actor's output. Returns the actions the
    /// target critics take as input, or nil when the critics give Q for every discrete action.
    func drawNextActions(policyOutput: Tensor, rows: Int, rng: inout RandomGenerator) -> UnsafePointer<Float>?
    /// V at bootstrap row r from the target critics' minimum there (1 or n floats) and the row's temperature α.
    func nextValue(row r: Int, minimumQ: UnsafePointer<Float>, temperature alpha: Float) -> Float
    /// The actor's loss Σ_rows weight · ℓ(row) and the policy's entropy Σ_rows weight · H(row) at the
    /// trained rows; writes d(loss)/d(head output) into `gradient` (`rows x policyOutputs`). Rows are
    /// agent-inner over `agents.count` agents, each with its own temperature; `agents.entropies`
    /// receives each agent's rows' Σ weight · H.
    func actorLoss<Critics: CriticView>(policyOutput: Tensor, rows: Int, weights: UnsafePointer<Float>, agents: AgentTemperatures, critics: Critics,
                   gradient: Tensor, rng: inout RandomGenerator) -> (loss: Double, entropy: Double)
}

/// SAC with a tanh-squashed Gaussian policy (Haarnoja et al. 2018):
/// V(s') = min_i Q'_i(s', a') - α log π(a'|s'), a' ~ π;  ℓ = α log π(a|s) - min_i Q_i(s, a), a = the
/// reparameterised draw, so the gradient flows through a into the policy's mean and log std.
/// With `actorQ` `.mean`, ℓ takes the mean of the Q_i instead of their minimum (REDQ, RESeL).
public final class SoftActorCriticObjective: OffPolicyObjective {
    public let actionWidth: Int
    public let actorQ: ActorQ
    let nextActions = Tensor([0]), nextLogProbabilities = Tensor([0]), noise = Tensor([0])
    let actions = Tensor([0]), logProbabilities = Tensor([0]), logProbabilityGradient = Tensor([0]), scratch = Tensor([0])
    let minimum = ContinuousCriticReduction()

    public init(actionWidth: Int, actorQ: ActorQ = .minimum) {
        self.actionWidth = actionWidth
        self.actorQ = actorQ
    }
    public var policyOutputs: Int { 2 * actionWidth }

    public func act(policyOutput out: Tensor, rows E: Int, deterministic: Bool, actions: UnsafeMutablePointer<Float>,
                    rng: inout RandomGenerator) {
        let A = actionWidth
        if deterministic {
            TanhGaussian.mode(parameters: out.data, rows: E, actionWidth: A, actions: actions)
        } else {
            scratch.resize(Shape(d0: E * A + E))
            TanhGaussian.sample(parameters: out.data, rows: E, actionWidth: A, noise: scratch.data, actions: actions,
                                logProbabilities: scratch.data + E * A, rng: &rng)
        }
    }

    public func drawNextActions(policyOutput out: Tensor, rows: Int, rng: inout RandomGenerator) -> UnsafePointer<Float>? {
        let A = actionWidth
        nextActions.resize(Shape(d0: rows, d1: A))
        nextLogProbabilities.resize(Shape(d0: rows))
        noise.resize(Shape(d0: rows, d1: A))
        TanhGaussian.sample(parameters: out.data, rows: rows, actionWidth: A, noise: noise.data, actions: nextActions.data,
                            logProbabilities: nextLogProbabilities.data, rng: &rng)
        return UnsafePointer(nextActions.data)
    }

    public func nextValue(row r: Int, minimumQ: UnsafePointer<Float>, temperature alpha: Float) -> Float {
        minimumQ[0] - alpha * nextLogProbabilities.data[r]
    }

    public func actorLoss<Critics: CriticView>(policyOutput out: Tensor, rows: Int, weights: UnsafePointer<Float>, agents: AgentTemperatures,
                          critics: Critics, gradient: Tensor, rng: inout RandomGenerator) -> (loss: Double, entropy: Double) {
        let A = actionWidth
        actions.resize(Shape(d0: rows, d1: A))
        logProbabilities.resize(Shape(d0: rows))
        noise.resize(Shape(d0: rows, d1: A))
        TanhGaussian.sample(parameters: out.data, rows: rows, actionWidth: A, noise: noise.data, actions: actions.data,
                            logProbabilities: logProbabilities.data, rng: &rng)
        minimum.evaluate(critics, count: critics.count, reduction: actorQ, actions: actions.data, rows: rows, actionWidth: A, weights: weights)
        var loss: Double = 0, entropy: Double = 0
        logProbabilityGradient.resize(Shape(d0: rows))
        for k in 0..<agents.count { agents.entropies[k] = 0 }
        let lp = logProbabilities.data, qmin = minimum.values.data, lpg = logProbabilityGradient.data
        for r in 0..<rows {
            let w = weights[r], logp = lp[r], agent = agents.agent(ofRow: r), alpha = agents.values[agent]
            loss += Double(w) * Double(alpha * logp - qmin[r])
            entropy -= Double(w * logp)
            agents.entropies[agent] -= Double(w * logp)
            lpg[r] = alpha * w
        }
        TanhGaussian.backward(parameters: out.data, rows: rows, actionWidth: A, noise: noise.data, actions: actions.data,
                              actionGradient: minimum.actionGradient.data, logProbabilityGradient: logProbabilityGradient.data,
                              into: gradient.data)
        return (loss, entropy)
    }
}

/// SAC for discrete actions (Christodoulou 2019): the critics give Q for every action, so the
/// expectations over the categorical policy are exact sums:
/// V(s') = Σ_a π(a|s') (min_i Q'_i(s', a) - α log π(a|s'));  ℓ = Σ_a π(a|s) (α log π(a|s) - min_i Q_i(s, a)),
/// or with `actorQ` `.mean` the mean of the Q_i in ℓ.
public final class DiscreteSoftActorCriticObjective: OffPolicyObjective {
    public let actions: Int
    public let actorQ: ActorQ
    let nextProbabilities = Tensor([0]), nextLogProbabilities = Tensor([0])
    let probabilities = Tensor([0]), logProbabilities = Tensor([0]), minimumQ = Tensor([0]), scratch = Tensor([0])

    public init(actions: Int, actorQ: ActorQ = .minimum) {
        self.actions = actions
        self.actorQ = actorQ
    }
    public var policyOutputs: Int { actions }

    public func act(policyOutput out: Tensor, rows E: Int, deterministic: Bool, actions chosen: UnsafeMutablePointer<Float>,
                    rng: inout RandomGenerator) {
        let n = actions
        if deterministic {
            Categorical.mode(logits: out.data, rows: E, actions: n, into: chosen)
        } else {
            scratch.resize(Shape(d0: 2 * E * n))
            Categorical.probabilities(logits: out.data, rows: E, actions: n, probabilities: scratch.data,
                                      logProbabilities: scratch.data + E * n)
            Categorical.sample(probabilities: scratch.data, rows: E, actions: n, into: chosen, rng: &rng)
        }
    }

    public func drawNextActions(policyOutput out: Tensor, rows: Int, rng: inout RandomGenerator) -> UnsafePointer<Float>? {
        nextProbabilities.resize(Shape(d0: rows, d1: actions))
        nextLogProbabilities.resize(Shape(d0: rows, d1: actions))
        Categorical.probabilities(logits: out.data, rows: rows, actions: actions, probabilities: nextProbabilities.data,
                                  logProbabilities: nextLogProbabilities.data)
        return nil
    }

    public func nextValue(row r: Int, minimumQ q: UnsafePointer<Float>, temperature alpha: Float) -> Float {
        let n = actions, p = nextProbabilities.data + r * n, lp = nextLogProbabilities.data + r * n
        var v: Float = 0
        for j in 0..<n { v += p[j] * (q[j] - alpha * lp[j]) }
        return v
    }

    public func actorLoss<Critics: CriticView>(policyOutput out: Tensor, rows: Int, weights: UnsafePointer<Float>, agents: AgentTemperatures,
                          critics: Critics, gradient: Tensor, rng: inout RandomGenerator) -> (loss: Double, entropy: Double) {
        let n = actions
        probabilities.resize(Shape(d0: rows, d1: n))
        logProbabilities.resize(Shape(d0: rows, d1: n))
        Categorical.probabilities(logits: out.data, rows: rows, actions: n, probabilities: probabilities.data,
                                  logProbabilities: logProbabilities.data)
        minimumQ.resize(Shape(d0: rows, d1: n))
        let count = critics.count
        for i in 0..<count {
            let q = critics.q(i, actions: nil)
            if i == 0 {
                minimumQ.copy(from: q)
            } else if actorQ == .minimum {
                let m = minimumQ.data, qs = q.data
                for j in 0..<(rows * n) { m[j] = min(m[j], qs[j]) }
            } else {
                let m = minimumQ.data, qs = q.data
                for j in 0..<(rows * n) { m[j] += qs[j] }
            }
        }
        if actorQ == .mean && count > 1 { let m = minimumQ.data; for j in 0..<(rows * n) { m[j] /= Float(count) } }
        // ℓ = Σ_a π_a f_a with f_a = α log π_a - Q_a;  dℓ/dlogit_k = π_k (f_k - Σ_a π_a f_a).
        var loss: Double = 0, entropy: Double = 0
        for k in 0..<agents.count { agents.entropies[k] = 0 }
        for r in 0..<rows {
            let p = probabilities.data + r * n, lp = logProbabilities.data + r * n, q = minimumQ.data + r * n
            let g = gradient.data + r * n
            let agent = agents.agent(ofRow: r), alpha = agents.values[agent]
            var mean: Float = 0
            for j in 0..<n { mean += p[j] * (alpha * lp[j] - q[j]) }
            let h = Categorical.entropy(probabilities: p, logProbabilities: lp, actions: n)
            let w = weights[r]
            for j in 0..<n { g[j] = w * p[j] * ((alpha * lp[j] - q[j]) - mean) }
            loss += Double(w * mean)
            entropy += Double(w * h)
            agents.entropies[agent] += Double(w * h)
        }
        return (loss, entropy)
    }
}

/// TD3 (Fujimoto et al. 2018): a deterministic actor μ (tanh output), exploration noise when acting,
/// target policy smoothing a' = clip(μ'(s') + clip(ε, -c, c), -1, 1) with ε ~ N(0, σ²), and
/// V(s') = min_i Q'_i(s', a');  ℓ = -Q_1(s, μ(s)).
public final class TD3Objective: OffPolicyObjective {
    public let actionWidth: Int
    public let explorationNoise: Float, policyNoise: Float, noiseClip: Float
    let nextActions = Tensor([0]), noise = Tensor([0])
    let minimum = ContinuousCriticReduction()

    public init(actionWidth: Int, explorationNoise: Float, policyNoise: Float, noiseClip: Float) {
        self.actionWidth = actionWidth
        self.explorationNoise = explorationNoise
        self.policyNoise = policyNoise
        self.noiseClip = noiseClip
    }
    public var policyOutputs: Int { actionWidth }

    public func act(policyOutput out: Tensor, rows E: Int, deterministic: Bool, actions: UnsafeMutablePointer<Float>,
                    rng: inout RandomGenerator) {
        for i in 0..<(E * actionWidth) {
            var a = out.data[i]
            if !deterministic { a += explorationNoise * rng.normal() }
            actions[i] = min(max(a, -1), 1)
        }
    }

    public func drawNextActions(policyOutput out: Tensor, rows: Int, rng: inout RandomGenerator) -> UnsafePointer<Float>? {
        nextActions.resize(Shape(d0: rows, d1: actionWidth))
        noise.resize(Shape(d0: rows, d1: actionWidth))
        rng.fillNormal(noise.data, count: rows * actionWidth)
        let next = nextActions.data, o = out.data, z = noise.data
        for i in 0..<(rows * actionWidth) {
            let e = min(max(policyNoise * z[i], -noiseClip), noiseClip)
            next[i] = min(max(o[i] + e, -1), 1)
        }
        return UnsafePointer(nextActions.data)
    }

    public func nextValue(row r: Int, minimumQ: UnsafePointer<Float>, temperature alpha: Float) -> Float { minimumQ[0] }

    public func actorLoss<Critics: CriticView>(policyOutput out: Tensor, rows: Int, weights: UnsafePointer<Float>, agents: AgentTemperatures,
                          critics: Critics, gradient: Tensor, rng: inout RandomGenerator) -> (loss: Double, entropy: Double) {
        minimum.evaluate(critics, count: 1, reduction: .minimum, actions: out.data, rows: rows, actionWidth: actionWidth, weights: weights)
        var loss: Double = 0
        let q = minimum.values.data
        for r in 0..<rows { loss += Double(weights[r]) * Double(-q[r]) }
        gradient.copy(from: minimum.actionGradient)
        return (loss, 0)
    }
}

/// min_i Q_i(s, a) (or their mean) over the first `count` critics at each row for given actions,
/// and the gradient of -Σ_rows weight · min_i Q_i (mean_i Q_i) with respect to the actions (it flows
/// through the smallest critic of each row, or through every critic equally): the deterministic
/// policy gradient shared by SAC and TD3.
final class ContinuousCriticReduction {
    let values = Tensor([0]), actionGradient = Tensor([0]), qGradient = Tensor([0])
    var perCritic: [Tensor] = []
    /// Their storage pointers (the list is kept, so that filling it allocates nothing).
    var storage: [UnsafeMutablePointer<Float>] = []

    func evaluate<Critics: CriticView>(_ critics: Critics, count: Int, reduction: ActorQ, actions: UnsafePointer<Float>, rows: Int,
                  actionWidth A: Int, weights: UnsafePointer<Float>) {
        while self.perCritic.count < count {
            self.perCritic.append(Tensor([0]))
            storage.append(self.perCritic[0].data)
        }
        // A local copy of the list: reading a class's `var` property in the loops below would check
        // exclusive access dynamically at every read.
        let perCritic = self.perCritic
        for i in 0..<count { perCritic[i].copy(from: critics.q(i, actions: actions)) }
        actionGradient.resize(Shape(d0: rows, d1: A))
        actionGradient.zero()
        qGradient.resize(Shape(d0: rows, d1: 1))
        // Storage pointers read once (each read of a tensor's storage is checked for exclusive access).
        for i in 0..<count { storage[i] = perCritic[i].data }
        let q = storage, qg = qGradient.data, ag = actionGradient.data
        let share = 1 / Float(count)
        for i in 0..<count {
            for r in 0..<rows {
                if reduction == .mean {
                    qg[r] = -weights[r] * share
                } else {
                    var smallest = 0
                    for k in 1..<count where q[k][r] < q[smallest][r] { smallest = k }
                    qg[r] = smallest == i ? -weights[r] : 0
                }
            }
            let g = critics.actionGradient(i, qGradient: qGradient).data
            for j in 0..<(rows * A) { ag[j] += g[j] }
        }
        values.resize(Shape(d0: rows))
        let v = values.data
        for r in 0..<rows {
            var value = q[0][r]
            for k in 1..<count { value = reduction == .mean ? value + q[k][r] : min(value, q[k][r]) }
            v[r] = reduction == .mean ? value * share : value
        }
    }
}
