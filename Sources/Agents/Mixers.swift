import Foundation
import NeuralNetworks
import Tensors

/// How VDN and QMIX make the team's Q from the agents' chosen Q-values: `rows` rows, each with
/// `agents` Q-values and (QMIX) the state they are mixed under.
public protocol Mixer: AnyObject {
    var agents: Int { get }
    /// Floats of the state each row is mixed under (0: none, VDN).
    var stateWidth: Int { get }
    var parameters: [Parameter] { get }
    func namedParameters(prefix: String) -> [NamedParameter]
    /// Q_tot for `rows` rows of `q` (`rows x agents`) and `states` (`rows x stateWidth`), written to `out`;
    /// keeps what `backward` needs.
    func forward(q: UnsafePointer<Float>, states: UnsafePointer<Float>?, rows: Int, into out: UnsafeMutablePointer<Float>)
    /// Accumulates the parameters' gradients from d(loss)/d(Q_tot) (`rows`) of the last forward and writes
    /// d(loss)/d(q) (`rows x agents`).
    func backward(totalGradient: UnsafePointer<Float>, qGradient: UnsafeMutablePointer<Float>)
}

/// VDN: Q_tot = Σ_k Q_k.
public final class SumMixer: Mixer {
    public let agents: Int
    var rows = 0
    public init(agents: Int) { self.agents = agents }
    public var stateWidth: Int { 0 }
    public var parameters: [Parameter] { [] }
    public func namedParameters(prefix: String) -> [NamedParameter] { [] }

    public func forward(q: UnsafePointer<Float>, states: UnsafePointer<Float>?, rows: Int, into out: UnsafeMutablePointer<Float>) {
        self.rows = rows
        let N = agents
        for r in 0..<rows {
            var s: Float = 0
            for k in 0..<N { s += q[r * N + k] }
            out[r] = s
        }
    }

    public func backward(totalGradient: UnsafePointer<Float>, qGradient: UnsafeMutablePointer<Float>) {
        let N = agents
        for r in 0..<rows { for k in 0..<N { qGradient[r * N + k] = totalGradient[r] } }
    }
}

/// QMIX's monotonic mixer (Rashid et al. 2018, with EPyMARL's two-layer hypernetworks): from the
/// state s,
///   W1 = |hyperW1(s)| (`agents x E`), b1 = hyperB1(s), W2 = |hyperW2(s)| (`E`), V = value(s),
///   Q_tot = W2 · elu(q W1 + b1) + V,
/// so dQ_tot/dq_k ≥ 0 for every agent: the absolute values keep the mixing weights non-negative.
public final class MonotonicMixer: Mixer {
    public let agents: Int, stateWidth: Int, embed: Int
    /// s → |W1| (`agents · embed`), s → b1 (`embed`), s → |W2| (`embed`), s → V (1).
    public let hyperW1: Sequential, hyperB1: Dense, hyperW2: Sequential, value: Sequential
    let stateInput = Tensor([0])
    /// Per row: the hidden layer elu(q W1 + b1), and the q the last forward mixed.
    let hidden = Tensor([0]), mixedQ = Tensor([0])
    /// The hypernetworks' outputs of the last forward (the layers' own tensors, valid until the next).
    var w1Output = Tensor([0]), w2Output = Tensor([0])
    let w1Gradient = Tensor([0]), b1Gradient = Tensor([0]), w2Gradient = Tensor([0]), valueGradient = Tensor([0])

    public init(agents: Int, stateWidth: Int, embed: Int, hypernetEmbed: Int, using rng: inout RandomGenerator) {
        self.agents = agents
        self.stateWidth = stateWidth
        self.embed = embed
        hyperW1 = .mlp(inputSize: stateWidth, hiddenSizes: [hypernetEmbed], outputSize: agents * embed, using: &rng)
        hyperB1 = Dense(inputSize: stateWidth, outputSize: embed, using: &rng)
        hyperW2 = .mlp(inputSize: stateWidth, hiddenSizes: [hypernetEmbed], outputSize: embed, using: &rng)
        value = .mlp(inputSize: stateWidth, hiddenSizes: [embed], outputSize: 1, using: &rng)
    }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        hyperW1.namedParameters(prefix: prefix + "hyper_w1.") + hyperB1.namedParameters(prefix: prefix + "hyper_b1.")
            + hyperW2.namedParameters(prefix: prefix + "hyper_w2.") + value.namedParameters(prefix: prefix + "value.")
    }
    public var parameters: [Parameter] { namedParameters(prefix: "").map(\.parameter) }

    public func forward(q: UnsafePointer<Float>, states: UnsafePointer<Float>?, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let N = agents, E = embed
        stateInput.resize(Shape(d0: rows, d1: stateWidth))
        if let states { stateInput.data.update(from: states, count: rows * stateWidth) }
        mixedQ.resize(Shape(d0: rows, d1: N))
        mixedQ.data.update(from: q, count: rows * N)
        w1Output = hyperW1.forward(stateInput)
        w2Output = hyperW2.forward(stateInput)
        let w1 = w1Output.data, b1 = hyperB1.forward(stateInput).data, w2 = w2Output.data, v = value.forward(stateInput).data
        hidden.resize(Shape(d0: rows, d1: E))
        let h = hidden.data
        for r in 0..<rows {
            var total = v[r]
            for e in 0..<E {
                var x = b1[r * E + e]
                for k in 0..<N { x += q[r * N + k] * abs(w1[r * N * E + k * E + e]) }
                let y = x > 0 ? x : Foundation.expm1(x)
                h[r * E + e] = y
                total += y * abs(w2[r * E + e])
            }
            out[r] = total
        }
    }

    public func backward(totalGradient dy: UnsafePointer<Float>, qGradient dq: UnsafeMutablePointer<Float>) {
        let rows = hidden.shape[0], N = agents, E = embed
        let w1 = w1Output.data, w2 = w2Output.data
        let h = hidden.data, q = mixedQ.data
        for t in [w1Gradient] { t.resize(Shape(d0: rows, d1: N * E)) }
        for t in [b1Gradient, w2Gradient] { t.resize(Shape(d0: rows, d1: E)) }
        valueGradient.resize(Shape(d0: rows, d1: 1))
        let gw1 = w1Gradient.data, gb1 = b1Gradient.data, gw2 = w2Gradient.data
        for r in 0..<rows {
            let g = dy[r]
            valueGradient.data[r] = g
            for k in 0..<N { dq[r * N + k] = 0 }
            for e in 0..<E {
                let y = h[r * E + e], a2 = w2[r * E + e]
                // d/d(w2 raw) of |w2| y: sign(w2) y; d/d(pre-activation) through elu: 1 (x > 0) or y + 1.
                gw2[r * E + e] = g * y * (a2 < 0 ? -1 : 1)
                let pre = g * abs(a2) * (y > 0 ? 1 : y + 1)
                gb1[r * E + e] = pre
                for k in 0..<N {
                    let a1 = w1[r * N * E + k * E + e]
                    gw1[r * N * E + k * E + e] = pre * q[r * N + k] * (a1 < 0 ? -1 : 1)
                    dq[r * N + k] += pre * abs(a1)
                }
            }
        }
        _ = hyperW1.backward(w1Gradient, needsInputGradient: false)
        _ = hyperB1.backward(b1Gradient, needsInputGradient: false)
        _ = hyperW2.backward(w2Gradient, needsInputGradient: false)
        _ = value.backward(valueGradient, needsInputGradient: false)
    }
}
