import CKernels
import Foundation
import Tensors

/// Parameters that share a learning rate and weight decay (RESeL trains the recurrent encoder
/// with about 1/30 of the MLP's learning rate: two groups).
public struct ParameterGroup {
    public var name: String
    public var parameters: [Parameter]
    public var learningRate: Float
    /// L2 penalty (Adam) or decoupled decay (AdamW); nil takes the optimiser's default.
    public var weightDecay: Float?

    public init(name: String, parameters: [Parameter], learningRate: Float, weightDecay: Float? = nil) {
        self.name = name
        self.parameters = parameters
        self.learningRate = learningRate
        self.weightDecay = weightDecay
    }
}

/// Adam (Kingma & Ba 2015) with bias correction, and AdamW (Loshchilov & Hutter 2019).
///
/// The update matches `torch.optim.Adam` / `torch.optim.AdamW` step for step:
///
///     g ← g + λθ                         (Adam's L2 weight decay, when λ > 0)
///     θ ← θ (1 - ηλ)                     (AdamW's decoupled weight decay)
///     m ← β1 m + (1 - β1) g;   v ← β2 v + (1 - β2) g²
///     θ ← θ - η m / (1 - β1^t) / (sqrt(v / (1 - β2^t)) + ε)
///
/// Defaults are PyTorch's and explicit: β1 = 0.9, β2 = 0.999, ε = 1e-8, weight decay 0 for
/// Adam and 0.01 for AdamW.
public final class Adam {
    /// Adam's constants: the moments' decay rates, ε and the decoupled weight decay.
    public struct Configuration: Codable, Equatable, Sendable {
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var epsilon: Float = 1e-8
        /// Default weight decay for groups that do not set their own.
        public var weightDecay: Float = 0
        /// true: AdamW (decay applied to the weights, outside the moments).
        public var decoupledWeightDecay = false

        public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0, decoupledWeightDecay: Bool = false) {
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
            self.decoupledWeightDecay = decoupledWeightDecay
        }

        /// PyTorch's AdamW defaults (weight decay 0.01).
        public static var adamW: Configuration { Configuration(weightDecay: 0.01, decoupledWeightDecay: true) }
    }

    public private(set) var groups: [ParameterGroup]
    public let configuration: Configuration
    /// Number of steps taken (t in the bias corrections).
    public private(set) var stepCount = 0
    /// First and second moments, one pair per parameter, in group order.
    public let firstMoments: [Tensor]
    public let secondMoments: [Tensor]

    public init(groups: [ParameterGroup], configuration: Configuration = Configuration()) {
        var seen = Set<ObjectIdentifier>()
        for group in groups {
            precondition(group.learningRate >= 0, "learning rate of group \(group.name) must be non-negative")
            for p in group.parameters {
                precondition(seen.insert(ObjectIdentifier(p)).inserted, "a parameter appears twice in the optimiser's groups (group \(group.name))")
            }
        }
        self.groups = groups
        self.configuration = configuration
        let all = groups.flatMap(\.parameters)
        firstMoments = all.map { Tensor($0.shape) }
        secondMoments = all.map { Tensor($0.shape) }
    }

    /// One group with one learning rate.
    public convenience init(parameters: [Parameter], learningRate: Float, configuration: Configuration = Configuration()) {
        self.init(groups: [ParameterGroup(name: "all", parameters: parameters, learningRate: learningRate)], configuration: configuration)
    }

    /// Changes a group's learning rate (for schedules).
    public func setLearningRate(_ rate: Float, group index: Int) { groups[index].learningRate = rate }

    /// Applies one update to every parameter from its accumulated gradient.
    public func step() {
        stepCount += 1
        let c = configuration
        let t = Float(stepCount)
        let correction1 = 1 - Float(pow(Double(c.beta1), Double(t))), correction2 = 1 - Float(pow(Double(c.beta2), Double(t)))
        let invSqrtCorrection2 = 1 / correction2.squareRoot()
        var index = 0
        for group in groups {
            let lr = group.learningRate
            let decay = group.weightDecay ?? c.weightDecay
            let stepSize = lr / correction1
            let decoupled = c.decoupledWeightDecay && decay != 0
            let coupled = !c.decoupledWeightDecay && decay != 0
            let shrink = 1 - lr * decay
            for p in group.parameters {
                rrl_adam_update(p.value.count, p.value.data, p.gradient.data, firstMoments[index].data, secondMoments[index].data,
                                c.beta1, c.beta2, stepSize, invSqrtCorrection2, c.epsilon, coupled ? decay : 0, decoupled ? shrink : 1)
                index += 1
            }
        }
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        for group in groups { for p in group.parameters { p.zeroGradient() } }
    }

    /// Restores the step counter (with the moments, for resuming a run).
    public func restore(stepCount: Int) { self.stepCount = stepCount }

    /// The moments and the step counter, to undo a trial step (diagnostics).
    public struct Snapshot {
        let first: [[Float]], second: [[Float]], stepCount: Int
    }

    public func snapshot() -> Snapshot {
        Snapshot(first: firstMoments.map(\.array), second: secondMoments.map(\.array), stepCount: stepCount)
    }

    /// Puts back the state of `snapshot` (taken from this optimiser).
    public func restore(_ snapshot: Snapshot) {
        for (m, v) in zip(firstMoments, snapshot.first) { m.data.update(from: v, count: min(v.count, m.count)) }
        for (m, v) in zip(secondMoments, snapshot.second) { m.data.update(from: v, count: min(v.count, m.count)) }
        stepCount = snapshot.stepCount
    }
}

/// Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`: when the L2 norm of all
/// gradients together exceeds `maxNorm`, every gradient is scaled by maxNorm / (norm + 1e-6).
/// Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let norm = gradientNorm(parameters)
    if norm > maxNorm {
        let scale = maxNorm / (norm + 1e-6)
        for p in parameters {
            let g = p.gradient.data
            for i in 0..<p.gradient.count { g[i] *= scale }
        }
    }
    return norm
}

/// L2 norm of the gradients of `parameters` (a diagnostic per parameter group).
public func gradientNorm(_ parameters: [Parameter]) -> Float {
    var sum: Double = 0
    for p in parameters { sum += Double(p.gradient.sumOfSquares()) }
    return Float(sum.squareRoot())
}

/// Polyak averaging into a target copy: θ' ← (1 - τ) θ' + τ θ, parameter by parameter.
public func polyakUpdate(target: [Parameter], source: [Parameter], tau: Float) {
    precondition(target.count == source.count, "Polyak update: \(target.count) target parameters for \(source.count) source parameters")
    for (t, s) in zip(target, source) {
        precondition(t.shape == s.shape, "Polyak update: shapes \(t.shape) and \(s.shape) differ")
        let a = t.value.data, b = s.value.data
        for i in 0..<t.value.count { a[i] += tau * (b[i] - a[i]) }
    }
}

/// Copies the values of `source` into `target` (hard target update).
public func copyParameters(from source: [Parameter], to target: [Parameter]) {
    precondition(target.count == source.count, "copyParameters: \(target.count) targets for \(source.count) sources")
    for (t, s) in zip(target, source) {
        precondition(t.shape == s.shape, "copyParameters: shapes \(t.shape) and \(s.shape) differ")
        t.value.data.update(from: s.value.data, count: s.value.count)
    }
}

/// A copy of some parameters' values, and optionally of their optimiser's moments and step count,
/// that can be put back: KL rollback in PPO ("undo the last step"), and the before/after
/// comparisons of diagnostics. Its storage is allocated once, so taking one allocates nothing.
public final class ParameterSnapshot {
    public let parameters: [Parameter]
    /// The optimiser whose state is saved with the values (its parameters must be `parameters`, in order).
    public let optimizer: Adam?
    let values: [Tensor]
    let firstMoments: [Tensor]
    let secondMoments: [Tensor]
    var stepCount = 0
    /// A snapshot has been taken since the last `invalidate()`.
    public private(set) var isValid = false

    public init(of parameters: [Parameter], optimizer: Adam? = nil) {
        if let optimizer { precondition(optimizer.firstMoments.count == parameters.count, "the optimiser must own exactly these parameters") }
        self.parameters = parameters
        self.optimizer = optimizer
        values = parameters.map { Tensor($0.shape) }
        firstMoments = optimizer == nil ? [] : parameters.map { Tensor($0.shape) }
        secondMoments = optimizer == nil ? [] : parameters.map { Tensor($0.shape) }
    }

    /// Saves the current values (and optimiser state).
    public func take() {
        for (i, p) in parameters.enumerated() {
            values[i].copy(from: p.value)
            if let optimizer {
                firstMoments[i].copy(from: optimizer.firstMoments[i])
                secondMoments[i].copy(from: optimizer.secondMoments[i])
            }
        }
        stepCount = optimizer?.stepCount ?? 0
        isValid = true
    }

    /// Puts the saved values (and optimiser state) back; returns false, changing nothing, when no snapshot was taken.
    @discardableResult
    public func restore() -> Bool {
        guard isValid else { return false }
        for (i, p) in parameters.enumerated() {
            p.value.copy(from: values[i])
            if let optimizer {
                optimizer.firstMoments[i].copy(from: firstMoments[i])
                optimizer.secondMoments[i].copy(from: secondMoments[i])
            }
        }
        optimizer?.restore(stepCount: stepCount)
        return true
    }

    /// Forgets the snapshot (a later `restore()` does nothing until the next `take()`).
    public func invalidate() { isValid = false }

    /// The saved value of parameter `index`.
    public func value(_ index: Int) -> Tensor { values[index] }
}
