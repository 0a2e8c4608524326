import Inference
import NeuralNetworks
import Tensors

/// The deterministic policy as an ONNX model (opset 17), one step per call, batch size free.
///
/// Inputs: `observation` `[batch, observationWidth]`; `episode_start` `[batch, 1]` (1 where an
/// episode begins at this observation: the state and previous action count as zeros, the reward as
/// 0); `reward` `[batch, 1]` (the reward for the previous action; when the policy's context holds
/// it); `agent_id` `[batch, agents]` one-hot (policies shared by several agents); `h` `[layers,
/// batch, hidden]` and, for an LSTM, `c` (recurrent policies); `previous_action` `[batch, P]` (when
/// the context holds it: the `previous_action_next` of the last call); with one network per agent,
/// `agent_id` too; `previous_observation` `[batch, observationWidth]` (when the context holds it:
/// the `previous_observation_next` of the last call, the observation as the network saw it).
/// Outputs: `action` (the environment's action: `[batch, actionWidth]` floats, or `[batch]` int64
/// indices), `h_next`, `c_next`, `previous_action_next` and `previous_observation_next`, fed back at
/// the next call. A discrete policy trained with action masks also takes `action_mask` `[batch,
/// actions]` (1: available).
///
/// The recurrent layers are ONNX's own GRU (gates reordered from PyTorch's r, z, n to z, r, h,
/// `linear_before_reset` 1, PyTorch's formula) and LSTM (i, f, g, o reordered to i, o, f, c);
/// observation and reward normalisation are folded into the graph. RESeL's context encoder is built
/// from its parts: each context input embedded by its own Gemm, the dense layers, the recurrence,
/// the activation, the layer after it, and the observation's projection beside its output.
public enum ONNXExport {
    /// The model's bytes (an ONNX `ModelProto`).
    public static func model(of policy: Policy) -> [UInt8] {
        precondition(policy.manifest.context.observation || !policy.manifest.context.holdsLastObservation,
                     "a context with the previous observation holds the current one too")
        var g = ONNXGraph()
        let m = policy.manifest, o = m.observationWidth, batch = "batch"
        g.input("observation", [.symbol(batch), .value(o)])
        g.input("episode_start", [.symbol(batch), .value(1)])
        let one = g.constant([1], [1])
        let keep = g.node("Sub", [one, "episode_start"])
        var parts: [String] = []
        if m.context.observation {
            var x = "observation"
            if let n = m.observationNormalizer, let mean = n.mean {
                let meanT = g.constant([o], mean.map { Float($0) })
                let std = g.constant([o], n.variance.map { Float(($0 + 1e-8).squareRoot()) })
                x = clip(&g, g.node("Div", [g.node("Sub", [x, meanT]), std]), 10)
            }
            parts.append(x)
            if m.context.holdsLastObservation {
                // The observation as the network saw it is the next call's previous observation.
                g.input("previous_observation", [.symbol(batch), .value(o)])
                parts.append(g.node("Mul", ["previous_observation", keep]))
                g.rename(x, to: "previous_observation_next")
            }
        }
        if m.context.agentID {
            g.input("agent_id", [.symbol(batch), .value(m.agents)])
            parts.append("agent_id")
        }
        let P = policy.previousActionWidth
        if P > 0 {
            g.input("previous_action", [.symbol(batch), .value(P)])
            parts.append(g.node("Mul", ["previous_action", keep]))
        }
        if m.context.lastReward {
            g.input("reward", [.symbol(batch), .value(1)])
            var r = "reward"
            if let n = m.rewardNormalizer { r = clip(&g, g.node("Div", [r, g.constant([1], [Float((n.variance[0] + 1e-8).squareRoot())])]), 10) }
            parts.append(g.node("Mul", [r, keep]))
        }
        let context = parts.count == 1 ? parts[0] : g.node("Concat", parts, attributes: [.int("axis", 1)])
        let N = policy.networks.count
        if N > 1 && !m.context.agentID { g.input("agent_id", [.symbol(batch), .value(m.agents)]) }
        if let encoder = stack(of: policy.encoder) {
            let H = encoder.hiddenSize, L = encoder.layers.count
            g.input("h", [.value(L), .symbol(batch), .value(H)])
            if encoder.layers[0] is LSTM { g.input("c", [.value(L), .symbol(batch), .value(H)]) }
        }
        // Every network on every row; with one network per agent each row keeps its agent's
        // (the others' results are multiplied by 0 and added).
        var results: [(output: String, h: String?, c: String?)] = []
        for network in policy.networks { results.append(self.network(network, context: context, parts: parts, keep: keep, graph: &g)) }
        var x = results[0].output, hNext = results[0].h, cNext = results[0].c
        if N > 1 {
            func select(_ values: [String], rank3: Bool) -> String {
                var sum: String?
                for (k, v) in values.enumerated() {
                    var weight = g.node("Slice", ["agent_id", g.int64s([k]), g.int64s([k + 1]), g.int64s([1])])  // [batch, 1]
                    if rank3 { weight = g.node("Unsqueeze", [weight, g.int64s([0])]) }  // [1, batch, 1]
                    let term = g.node("Mul", [v, weight])
                    sum = sum.map { g.node("Add", [$0, term]) } ?? term
                }
                return sum!
            }
            x = select(results.map(\.output), rank3: false)
            if hNext != nil { hNext = select(results.map { $0.h! }, rank3: true) }
            if cNext != nil { cNext = select(results.map { $0.c! }, rank3: true) }
        }
        if let encoder = stack(of: policy.encoder) {
            let H = encoder.hiddenSize, L = encoder.layers.count
            g.rename(hNext!, to: "h_next")
            g.output("h_next", [.value(L), .symbol(batch), .value(H)])
            if let cNext {
                g.rename(cNext, to: "c_next")
                g.output("c_next", [.value(L), .symbol(batch), .value(H)])
            }
        }

        let A = m.actions.count == nil ? m.actions.width : 1
        switch m.distribution {
        case .categorical, .greedy:
            let n = m.actions.count!
            if m.actionMasks == true {
                // Unavailable actions (mask 0) get the logit -1e9, as in training.
                g.input("action_mask", [.symbol(batch), .value(n)])
                let unavailable = g.node("Equal", ["action_mask", g.constant([], [0])])
                x = g.node("Where", [unavailable, g.constant([], [-1e9]), x])
            }
            let index = g.node("ArgMax", [x], attributes: [.int("axis", 1), .int("keepdims", 0)])
            g.rename(index, to: "action")
            g.output("action", [.symbol(batch)], elementType: .int64)
            if P > 0 {
                let hot = g.node("OneHot", [index, g.int64s([n], scalar: true), g.constant([2], [0, 1])], attributes: [.int("axis", -1)])
                g.rename(hot, to: "previous_action_next")
            }
        case .tanhGaussian, .deterministic, .gaussian:
            var a = x
            if m.distribution == .tanhGaussian {
                a = g.node("Tanh", [g.node("Slice", [x, g.int64s([0]), g.int64s([A]), g.int64s([1])])])
            } else if m.distribution == .deterministic {
                a = clip(&g, x, 1)
            }
            if P > 0 { g.rename(a, to: "previous_action_next") }
            let low = m.actions.low!, high = m.actions.high!
            let lowT = g.constant([A], low), highT = g.constant([A], high)
            let range = g.constant([A], zip(low, high).map { $1 - $0 })
            let unit = g.node("Mul", [g.node("Add", [clip(&g, a, 1), one]), g.constant([1], [0.5])])
            let mapped = g.node("Add", [lowT, g.node("Mul", [unit, range])])
            g.rename(g.node("Min", [g.node("Max", [mapped, lowT]), highT]), to: "action")
            g.output("action", [.symbol(batch), .value(A)])
        }
        if P > 0 { g.output("previous_action_next", [.symbol(batch), .value(P)]) }
        if m.context.holdsLastObservation { g.output("previous_observation_next", [.symbol(batch), .value(o)]) }
        return g.model(name: "rrl \(m.algorithm) policy")
    }

    /// The GRU/LSTM stack of an encoder (a stack, or the one inside RESeL's context encoder).
    static func stack(of encoder: (any RecurrentLayer)?) -> RecurrentStack? {
        encoder as? RecurrentStack ?? (encoder as? ContextEncoder)?.recurrent
    }

    /// One network on `context` (`[batch, inputWidth]`; `parts`: its context inputs, one per group of
    /// a context encoder): its outputs, and its next h and c (`[layers, batch, hidden]`) for a
    /// recurrent network.
    static func network(_ network: Policy.Network, context: String, parts: [String], keep: String,
                        graph g: inout ONNXGraph) -> (output: String, h: String?, c: String?) {
        var x = context
        var hNext: String?, cNext: String?
        let contextEncoder = network.encoder as? ContextEncoder
        if let contextEncoder {
            // Each context input embedded by its own layer, side by side, then the dense layers.
            precondition(parts.count == contextEncoder.groups.count, "a context encoder embeds one group per context input")
            let embedded = zip(contextEncoder.embeddings, parts).map { dense($0, $1, graph: &g) }
            x = embedded.count == 1 ? embedded[0] : g.node("Concat", embedded, attributes: [.int("axis", 1)])
            for layer in contextEncoder.before { x = dense(layer, x, graph: &g) }
        }
        if let encoder = stack(of: network.encoder) {
            (x, hNext, cNext) = recurrence(encoder, x, keep: keep, graph: &g)
        }
        if let contextEncoder {
            // The activation, the layer after the recurrence, and the observation's projection beside it.
            x = dense(contextEncoder.afterLayer, activate(contextEncoder.activation, x, graph: &g), graph: &g)
            if let projection = contextEncoder.projection {
                x = g.node("Concat", [x, dense(projection, parts[0], graph: &g)], attributes: [.int("axis", 1)])
            }
        }
        for layer in network.head.layers { x = dense(layer as! Dense, x, graph: &g) }
        return (x, hNext, cNext)
    }

    /// A GRU/LSTM stack on `x` (`[batch, in]`), one step from the state inputs `h` (and `c`), zeroed
    /// where `keep` is 0: its output `[batch, hidden]` and next h and c `[layers, batch, hidden]`.
    static func recurrence(_ encoder: RecurrentStack, _ x: String, keep: String, graph g: inout ONNXGraph) -> (output: String, h: String, c: String?) {
        let H = encoder.hiddenSize, isLSTM = encoder.layers[0] is LSTM
        var sequence = g.node("Unsqueeze", [x, g.int64s([0])])  // [1, batch, in]
        var hs: [String] = [], cs: [String] = []
        for (l, layer) in encoder.layers.enumerated() {
            func initial(_ name: String) -> String {
                let state = g.node("Gather", [name, g.int64s([l], scalar: true)], attributes: [.int("axis", 0)])  // [batch, H]
                return g.node("Unsqueeze", [g.node("Mul", [state, keep]), g.int64s([0])])
            }
            let weights: GateWeights, order: [Int]
            if let gru = layer as? GRU { weights = gru.weights; order = [1, 0, 2] } else { weights = (layer as! LSTM).weights; order = [0, 3, 1, 2] }
            let gates = order.count, inputSize = layer.inputSize
            let W = g.constant([1, gates * H, inputSize], reorder(weights.weightIH.value, gates: order, hidden: H))
            let R = g.constant([1, gates * H, H], reorder(weights.weightHH.value, gates: order, hidden: H))
            let B = g.constant([1, 2 * gates * H], reorder(weights.biasIH.value, gates: order, hidden: H) + reorder(weights.biasHH.value, gates: order, hidden: H))
            if isLSTM {
                let out = g.node("LSTM", [sequence, W, R, B, "", initial("h"), initial("c")], outputs: 3, attributes: [.int("hidden_size", H)])
                hs.append(out[1]); cs.append(out[2])
                sequence = g.node("Squeeze", [out[0], g.int64s([1])])
            } else {
                let out = g.node("GRU", [sequence, W, R, B, "", initial("h")], outputs: 2,
                                 attributes: [.int("hidden_size", H), .int("linear_before_reset", 1)])
                hs.append(out[1])
                sequence = g.node("Squeeze", [out[0], g.int64s([1])])
            }
        }
        let hNext = hs.count == 1 ? hs[0] : g.node("Concat", hs, attributes: [.int("axis", 0)])
        let cNext = isLSTM ? (cs.count == 1 ? cs[0] : g.node("Concat", cs, attributes: [.int("axis", 0)])) : nil
        return (g.node("Squeeze", [sequence, g.int64s([0])]), hNext, cNext)  // [batch, H]
    }

    /// A dense layer on `x` (`[batch, inputSize]`): a Gemm, then its activation.
    static func dense(_ layer: Dense, _ x: String, graph g: inout ONNXGraph) -> String {
        let W = g.constant([layer.outputSize, layer.inputSize], layer.weight.value.array)
        let b = g.constant([layer.outputSize], layer.bias.value.array)
        return activate(layer.activation, g.node("Gemm", [x, W, b], attributes: [.int("transB", 1)]), graph: &g)
    }

    static func activate(_ activation: Activation, _ x: String, graph g: inout ONNXGraph) -> String {
        switch activation {
        case .identity: return x
        case .relu: return g.node("Relu", [x])
        case .tanh: return g.node("Tanh", [x])
        case .sigmoid: return g.node("Sigmoid", [x])
        case .elu: return g.node("Elu", [x], attributes: [.float("alpha", 1)])
        }
    }

    /// clip(x, -bound, bound).
    static func clip(_ g: inout ONNXGraph, _ x: String, _ bound: Float) -> String {
        g.node("Clip", [x, g.constant([], [-bound]), g.constant([], [bound])])
    }

    /// A gate-stacked tensor (`[gates · H, ...]` or `[gates · H]`) with its gate blocks in `order`.
    static func reorder(_ t: Tensor, gates order: [Int], hidden H: Int) -> [Float] {
        let values = t.array, block = values.count / order.count
        return order.flatMap { Array(values[($0 * block)..<(($0 + 1) * block)]) }
    }
}

/// An ONNX graph under construction: nodes, initialisers (constants), inputs and outputs.
struct ONNXGraph {
    enum Dimension { case value(Int), symbol(String) }
    enum ElementType: Int { case float = 1, int64 = 7 }
    enum Attribute {
        case int(String, Int), float(String, Float)
    }

    var nodes: [[UInt8]] = [], initializers: [[UInt8]] = [], inputs: [[UInt8]] = [], outputs: [[UInt8]] = []
    var counter = 0
    /// Final names given to intermediate values (`rename`).
    var renames: [String: String] = [:]

    mutating func fresh(_ stem: String) -> String {
        counter += 1
        return "\(stem)_\(counter)"
    }

    static func valueInfo(_ name: String, _ dims: [Dimension], _ type: ElementType) -> [UInt8] {
        var w = ProtobufWriter()
        w.string(1, name)
        w.message(2) { t in
            t.message(1) { tensor in
                tensor.int(1, type.rawValue)
                tensor.message(2) { shape in
                    for d in dims {
                        shape.message(1) { dim in
                            switch d {
                            case .value(let v): dim.int(1, v)
                            case .symbol(let s): dim.string(2, s)
                            }
                        }
                    }
                }
            }
        }
        return w.bytes
    }

    mutating func input(_ name: String, _ dims: [Dimension]) { inputs.append(ONNXGraph.valueInfo(name, dims, .float)) }
    mutating func output(_ name: String, _ dims: [Dimension], elementType: ElementType = .float) {
        outputs.append(ONNXGraph.valueInfo(name, dims, elementType))
    }

    /// A float constant of shape `dims` (empty: a scalar).
    mutating func constant(_ dims: [Int], _ values: [Float]) -> String {
        let name = fresh("const")
        var w = ProtobufWriter()
        w.packedInts(1, dims)
        w.int(2, ElementType.float.rawValue)
        w.string(8, name)
        var raw: [UInt8] = []
        raw.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw += $0 } }
        w.data(9, raw)
        initializers.append(w.bytes)
        return name
    }

    /// An int64 constant: a vector, or with `scalar` a single number of rank 0.
    mutating func int64s(_ values: [Int], scalar: Bool = false) -> String {
        let name = fresh("ints")
        var w = ProtobufWriter()
        if !scalar { w.packedInts(1, [values.count]) }
        w.int(2, ElementType.int64.rawValue)
        w.string(8, name)
        var raw: [UInt8] = []
        for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { raw += $0 } }
        w.data(9, raw)
        initializers.append(w.bytes)
        return name
    }

    /// Adds a node; returns its first output's name.
    mutating func node(_ op: String, _ inputs: [String], attributes: [Attribute] = []) -> String {
        node(op, inputs, outputs: 1, attributes: attributes)[0]
    }

    mutating func node(_ op: String, _ inputs: [String], outputs count: Int, attributes: [Attribute] = []) -> [String] {
        let outputs = (0..<count).map { _ in fresh(op.lowercased()) }
        var w = ProtobufWriter()
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.string(3, fresh("node_" + op))
        w.string(4, op)
        for a in attributes {
            w.message(5) { attr in
                switch a {
                case .int(let name, let v):
                    attr.string(1, name); attr.int(3, v); attr.int(20, 2)
                case .float(let name, let v):
                    attr.string(1, name); attr.float(2, v); attr.int(20, 1)
                }
            }
        }
        nodes.append(w.bytes)
        return outputs
    }

    /// Gives the value `name` (a node's output) the final name `final` (a graph output), through an Identity node.
    mutating func rename(_ name: String, to final: String) {
        var w = ProtobufWriter()
        w.string(1, name)
        w.string(2, final)
        w.string(3, "output_" + final)
        w.string(4, "Identity")
        nodes.append(w.bytes)
    }

    /// The whole `ModelProto`.
    func model(name: String) -> [UInt8] {
        var w = ProtobufWriter()
        w.int(1, 8)  // ir_version
        w.string(2, "RecurrentRL")
        w.string(3, "1")
        w.message(7) { graph in
            for n in nodes { graph.data(1, n) }
            graph.string(2, name)
            for i in initializers { graph.data(5, i) }
            for i in inputs { graph.data(11, i) }
            for o in outputs { graph.data(12, o) }
        }
        w.message(8) { opset in
            opset.string(1, "")
            opset.int(2, 17)
        }
        return w.bytes
    }
}
