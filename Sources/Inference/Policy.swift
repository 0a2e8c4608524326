import CKernels
import Foundation
import NeuralNetworks
import Tensors

/// A trained policy, rebuilt from its weights file alone (the manifest in its metadata), for acting
/// only: no critics, no optimiser, no training code.
///
/// ```swift
/// let policy = try Policy(contentsOf: URL(fileURLWithPath: "runs/sac-memory-seed0/weights.safetensors"))
/// var state = policy.initialState()
/// var start = true, reward: Float = 0
/// while running {
///     let action = policy.act(observation: observation, reward: reward, episodeStart: start, state: &state)
///     (observation, reward, running) = environment.step(action)
///     start = false
/// }
/// ```
///
/// The state a caller carries per episode (`stateWidth` floats) is the encoder's recurrent state
/// (per layer: h for a GRU, h then c for an LSTM) followed by the previous action as the network
/// sees it (one-hot for discrete actions; only when the policy's context uses it) and the previous
/// normalised observation (only when the context uses it). `act` on a batch
/// of rows uses caller-owned buffers and allocates nothing once its workspaces have the batch's size.
/// See `PolicyManifest` for the exact step.
public final class Policy {
    public let manifest: PolicyManifest
    /// One network: an optional recurrent encoder and the head.
    public struct Network {
        /// A GRU/LSTM stack, or RESeL's context encoder around one.
        public let encoder: (any RecurrentLayer)?
        public let head: Sequential
    }
    /// The networks: one shared by the agents, or one per agent (`manifest.networks`).
    public let networks: [Network]
    /// The (first) network's encoder and head.
    public var encoder: (any RecurrentLayer)? { networks[0].encoder }
    public var head: Sequential { networks[0].head }
    /// Floats of the recurrent state per row (0 for an MLP policy).
    public let recurrentStateWidth: Int
    /// Floats of the previous action kept in the state (0 when the context does not use it).
    public let previousActionWidth: Int
    /// Floats of one row's state.
    public var stateWidth: Int { recurrentStateWidth + previousActionWidth + previousObservationWidth }
    /// Floats of the previous (normalised) observation kept in the state, after the previous action (0 when the context does not use it).
    public var previousObservationWidth: Int { manifest.context.holdsLastObservation ? manifest.observationWidth : 0 }
    /// Floats of one action sent to the environment (1 for a discrete index).
    public var actionWidth: Int { manifest.actions.width }
    /// The random generator of sampled actions.
    public var rng: RandomGenerator

    let logStd: Tensor?
    /// Floats of the policy's own (normalised) action per row: A, or 1 for an index.
    public let policyActionWidth: Int
    /// One layer of the acting path: its weights packed for one-row products (`rrl_affine_pack`),
    /// pointers into `rowWeights` (plain pointers, so that stepping retains nothing).
    struct RowLayer {
        let cell: CellKind?, activation: Activation, input: Int, output: Int
        let weightT: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
        let hiddenT: UnsafeMutablePointer<Float>?, hiddenBias: UnsafeMutablePointer<Float>?
    }
    let rowLayers: [RowLayer]
    /// The storage of every row layer's weights and biases.
    let rowWeights: UnsafeMutablePointer<Float>
    /// Whether `act` runs the one-row path (false: the training layers, for a context encoder).
    let usesRowLayers: Bool
    /// Network k's layers are `rowLayers[rowRanges[k]]`.
    let rowRanges: [Range<Int>]
    /// The acting path's workspace: two gate buffers and two layer buffers of `rowWidth` floats each.
    let rowScratch: UnsafeMutablePointer<Float>
    let rowWidth: Int
    // Workspaces, reused.
    let context = Tensor([0])
    let outputs = Tensor([0])
    let headInput = Tensor([0])
    let policyActions = Tensor([0])
    let noise = Tensor([0])
    let scratch = Tensor([0])
    /// One agent's rows of a batch (one network per agent).
    let agentContext = Tensor([0])
    /// The one-row path's buffers: a row's normalised observation, network input, network output and
    /// the policy's own action.
    struct RowIO {
        let observation: UnsafeMutablePointer<Float>, context: UnsafeMutablePointer<Float>
        let output: UnsafeMutablePointer<Float>, action: UnsafeMutablePointer<Float>
    }
    let rowIO: RowIO
    /// The observation normaliser's mean and sqrt(variance + 1e-8) per feature (nil: none), and the
    /// reward normaliser's scale, read from the manifest once.
    let observationStatistics: (mean: UnsafeMutablePointer<Double>, scale: UnsafeMutablePointer<Double>)?
    let rewardScale: Double?
    /// The environment's action bounds (nil: discrete actions).
    let actionBounds: (low: UnsafeMutablePointer<Float>, high: UnsafeMutablePointer<Float>)?
    /// Every block `rowIO`, `observationStatistics` and `actionBounds` point into.
    let rowConstants: UnsafeMutableRawPointer

    deinit {
        UnsafeMutableRawPointer(rowWeights).deallocate()
        UnsafeMutableRawPointer(rowScratch).deallocate()
        rowConstants.deallocate()
    }

    /// A weight matrix `[out, in]` in the order the one-row kernel reads it (`rrl_affine_pack`).
    static func packed(_ w: Tensor) -> [Float] {
        let out = w.shape[0], input = w.count / max(out, 1)
        var p = [Float](repeating: 0, count: w.count)
        rrl_affine_pack(input, out, w.data, &p)
        return p
    }

    /// Zeroed storage for `count` floats starting on a cache line (64 bytes): the one-row kernels'
    /// vector loads then never straddle two lines.
    static func cacheLineAligned(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(count, 1), alignment: 64).bindMemory(to: Float.self, capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        return p
    }

    /// Loads the policy in a weights file written by rrl (`weights.safetensors` of a run, or an export).
    public convenience init(contentsOf url: URL, seed: UInt64 = 0) throws {
        let file: (tensors: [String: Tensor], metadata: [String: String])
        do { file = try SafeTensors.read(url) } catch { throw PolicyError("\(error)") }
        let manifest = try PolicyManifest(metadata: file.metadata, path: url.path)
        try self.init(manifest: manifest, tensors: file.tensors, path: url.path, seed: seed)
    }

    /// The policy a manifest describes, with its weights from `tensors` (by name; other tensors, such
    /// as critics, are ignored). `path` names their file in messages.
    public init(manifest: PolicyManifest, tensors: [String: Tensor], path: String = "<memory>", seed: UInt64 = 0) throws {
        try manifest.validate(path: path)
        self.manifest = manifest
        let n = manifest.network
        var placeholder = RandomGenerator(seed: 0)  // every value is replaced by the file's
        networks = (0..<manifest.networkCount).map { _ in
            let encoder: (any RecurrentLayer)? = n.cell.map { cell in
                if let layout = n.contextEncoder {
                    return ContextEncoder(groups: manifest.contextGroups, layout: layout, cell: cell, hiddenSize: n.hiddenSize, layers: n.layers,
                                          activation: n.activation, using: &placeholder)
                }
                return RecurrentStack(cell: cell, inputSize: n.inputWidth, hiddenSize: n.hiddenSize, layers: n.layers, using: &placeholder)
            }
            let head = Sequential.mlp(inputSize: encoder?.hiddenSize ?? n.inputWidth, hiddenSizes: n.headHiddenSizes, outputSize: n.outputWidth,
                                      activation: n.activation, outputActivation: n.outputActivation, using: &placeholder)
            return Network(encoder: encoder, head: head)
        }
        let parameters = Policy.namedParameters(networks, manifest: manifest)
        do { try SafeTensors.assign(tensors, path: path, into: parameters, strict: false) } catch { throw PolicyError("\(error)") }
        if let bad = parameters.first(where: { !$0.parameter.value.isFinite }) {
            throw PolicyError("\(path): parameter \(bad.name) holds NaN or infinite values (the run diverged); these weights cannot act")
        }
        if manifest.distribution == .gaussian, let name = manifest.logStdName {
            guard let t = tensors[name], t.count == manifest.actions.width else {
                throw PolicyError("\(path) lacks the tensor \(name) of \(manifest.actions.width) floats that its manifest names")
            }
            logStd = Tensor(copying: t)
        } else {
            logStd = nil
        }
        // Every layer's packed weights and biases in one block, in the order a step reads them, each
        // piece starting on a cache line: a step streams through one run of memory.
        typealias Spec = (cell: CellKind?, activation: Activation, input: Int, output: Int, pieces: [[Float]])
        var specs: [Spec] = [], ranges: [Range<Int>] = []
        for network in networks {
            let first = specs.count
            for layer in (network.encoder as? RecurrentStack)?.layers ?? [] {
                let w: GateWeights = (layer as? GRU)?.weights ?? (layer as! LSTM).weights
                specs.append((layer is GRU ? .gru : .lstm, .identity, layer.inputSize, layer.hiddenSize,
                              [Policy.packed(w.weightIH.value), w.biasIH.value.array, Policy.packed(w.weightHH.value), w.biasHH.value.array]))
            }
            for layer in network.head.layers {
                let d = layer as! Dense
                specs.append((nil, d.activation, d.inputSize, d.outputSize, [Policy.packed(d.weight.value), d.bias.value.array]))
            }
            ranges.append(first..<specs.count)
        }
        let lines = { (count: Int) in (count + 15) / 16 * 16 }
        rowWeights = Policy.cacheLineAligned(specs.reduce(0) { $0 + $1.pieces.reduce(0) { $0 + lines($1.count) } })
        var next = rowWeights
        let rows = specs.map { spec -> RowLayer in
            let pointers = spec.pieces.map { values -> UnsafeMutablePointer<Float> in
                let p = next
                p.update(from: values, count: values.count)
                next += lines(values.count)
                return p
            }
            return RowLayer(cell: spec.cell, activation: spec.activation, input: spec.input, output: spec.output, weightT: pointers[0], bias: pointers[1],
                            hiddenT: pointers.count > 2 ? pointers[2] : nil, hiddenBias: pointers.count > 2 ? pointers[3] : nil)
        }
        rowLayers = rows
        rowRanges = ranges
        // The one-row path knows stacks and dense heads; a context encoder runs on the training layers.
        usesRowLayers = networks.allSatisfy { $0.encoder == nil || $0.encoder is RecurrentStack }
        rowWidth = rows.reduce(n.inputWidth) { max($0, 4 * $1.output) }
        rowScratch = Policy.cacheLineAligned(4 * rowWidth)
        // The row buffers and the constants a step reads, in one block: doubles first, then floats.
        let o = manifest.observationWidth, bounded = manifest.actions.low != nil && manifest.actions.high != nil
        let statistics = manifest.observationNormalizer.flatMap { n in n.mean.map { (mean: $0, variance: n.variance) } }
        let doubles = statistics != nil ? 2 * o : 0
        let floats = o + n.inputWidth + n.outputWidth + manifest.actions.width + (bounded ? 2 * manifest.actions.width : 0)
        rowConstants = UnsafeMutableRawPointer.allocate(byteCount: 8 * doubles + 4 * max(floats, 1), alignment: 64)
        let d = rowConstants.bindMemory(to: Double.self, capacity: max(doubles, 1))
        if let statistics {
            for j in 0..<o { d[j] = statistics.mean[j]; d[o + j] = (statistics.variance[j] + 1e-8).squareRoot() }
            observationStatistics = (d, d + o)
        } else {
            observationStatistics = nil
        }
        rewardScale = manifest.rewardNormalizer.map { ($0.variance[0] + 1e-8).squareRoot() }
        let f = (rowConstants + 8 * doubles).bindMemory(to: Float.self, capacity: max(floats, 1))
        f.initialize(repeating: 0, count: max(floats, 1))
        rowIO = RowIO(observation: f, context: f + o, output: f + o + n.inputWidth, action: f + o + n.inputWidth + n.outputWidth)
        if bounded, let low = manifest.actions.low, let high = manifest.actions.high {
            let l = rowIO.action + manifest.actions.width, h = l + manifest.actions.width
            l.update(from: low, count: low.count)
            h.update(from: high, count: high.count)
            actionBounds = (l, h)
        } else {
            actionBounds = nil
        }
        recurrentStateWidth = networks[0].encoder?.stateWidth ?? 0
        previousActionWidth = manifest.previousActionWidth
        policyActionWidth = manifest.actions.count != nil ? 1 : manifest.actions.width
        rng = RandomGenerator(seed: seed)
    }

    /// The tensors a policy file holds: the actor's weights (PyTorch's names) and its log standard deviation.
    public var namedTensors: [(name: String, tensor: Tensor)] {
        var list = Policy.namedParameters(networks, manifest: manifest).map { ($0.name, $0.parameter.value) }
        if let logStd, let name = manifest.logStdName { list.append((name, logStd)) }
        return list
    }

    /// Every network's parameters by their names in a weights file.
    static func namedParameters(_ networks: [Network], manifest: PolicyManifest) -> [NamedParameter] {
        networks.enumerated().flatMap { k, network in
            let prefix = manifest.parameterPrefix(ofNetwork: k)
            return (network.encoder?.namedParameters(prefix: prefix + "encoder.") ?? []) + network.head.namedParameters(prefix: prefix + "head.")
        }
    }

    /// Zeros: the state of `batch` rows before anything happened (`act` with `episodeStart` also starts from it).
    public func initialState(batch: Int = 1) -> [Float] { [Float](repeating: 0, count: batch * stateWidth) }

    /// One step of `batch` rows (episodes side by side; with several agents, agent-inner rows):
    /// `observations` `[batch, observationWidth]`, `rewards` the reward each row received for its
    /// previous action (nil: 0; used only by policies whose context holds it), `episodeStarts` true
    /// where a row's episode begins at this observation (nil: none), `actionMasks` `[batch, n]` (1:
    /// available; discrete policies) or nil, `state` `[batch, stateWidth]` updated in place. Writes
    /// `[batch, actionWidth]` environment actions (discrete: the index as a float).
    public func act(observations: UnsafePointer<Float>, rewards: UnsafePointer<Float>?, episodeStarts: UnsafePointer<Bool>?,
                    actionMasks: UnsafePointer<Float>? = nil, state: UnsafeMutablePointer<Float>, batch B: Int,
                    deterministic: Bool = true, actions: UnsafeMutablePointer<Float>) {
        let S = stateWidth, C = manifest.network.inputWidth, A = policyActionWidth, W = manifest.network.outputWidth
        let N = networks.count, maskWidth = manifest.actions.count ?? 1
        if usesRowLayers {
            // Row by row through the packed layers, in preallocated row buffers.
            let io = rowIO
            for b in 0..<B {
                let row = state + b * S
                beginRow(b, observations: observations, rewards: rewards, episodeStarts: episodeStarts, state: row, into: io.context)
                forwardRow(io.context, state: row, output: io.output, network: N == 1 ? 0 : b % N)
                choose(io.output, rows: 1, deterministic: deterministic, actionMasks: actionMasks.map { $0 + b * maskWidth }, policyActions: io.action)
                endRow(b, policyAction: io.action, state: row, actions: actions)
            }
            return
        }
        context.resize(Shape(d0: 1, d1: B, d2: C))
        for b in 0..<B {
            beginRow(b, observations: observations, rewards: rewards, episodeStarts: episodeStarts, state: state + b * S, into: context.data + b * C)
        }
        policyActions.resize(Shape(d0: B, d1: A))
        outputs.resize(Shape(d0: B, d1: W))
        forwardNetworks(context: context, state: state, stateStride: S)
        choose(outputs.data, rows: B, deterministic: deterministic, actionMasks: actionMasks, policyActions: policyActions.data)
        for b in 0..<B { endRow(b, policyAction: policyActions.data + b * A, state: state + b * S, actions: actions) }
    }

    /// Row b's start of a step: its state zeroed at an episode's start, its observation normalised
    /// and its network input written (`context`), the previous observation kept in its state.
    @inline(__always)
    func beginRow(_ b: Int, observations: UnsafePointer<Float>, rewards: UnsafePointer<Float>?, episodeStarts: UnsafePointer<Bool>?,
                  state row: UnsafeMutablePointer<Float>, into context: UnsafeMutablePointer<Float>) {
        let o = manifest.observationWidth, R = recurrentStateWidth, P = previousActionWidth
        let start = episodeStarts?[b] ?? false
        if start { row.update(repeating: 0, count: stateWidth) }
        let observation = rowIO.observation
        normalize(observation: observations + b * o, into: observation)
        let previousObservation = row + R + P
        writeContext(observation: observation, previousObservation: previousObservation, previousAction: P > 0 ? .values(row + R) : .none,
                     reward: start ? 0 : normalize(reward: rewards?[b] ?? 0), agent: b % manifest.agents, into: context)
        if previousObservationWidth > 0 { previousObservation.update(from: observation, count: o) }
    }

    /// Row b's end of a step: the policy's own action kept in its state (when the context uses it)
    /// and mapped onto the environment's action (`actions`, `actionWidth` floats per row).
    @inline(__always)
    func endRow(_ b: Int, policyAction a: UnsafePointer<Float>, state row: UnsafeMutablePointer<Float>, actions: UnsafeMutablePointer<Float>) {
        if previousActionWidth > 0 { writePreviousAction(a, into: row + recurrentStateWidth) }
        if let bounds = actionBounds {
            PolicyManifest.Actions.mapToBounds(a, low: bounds.low, high: bounds.high, count: policyActionWidth, into: actions + b * policyActionWidth)
        } else {
            actions[b] = a[0]
        }
    }

    // MARK: The parts of a step

    /// The observation as the network sees it (normalised when the manifest holds statistics): `observationWidth` floats.
    @inline(__always)
    public func normalize(observation x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let o = manifest.observationWidth
        if let n = observationStatistics {
            for j in 0..<o { out[j] = PolicyManifest.Normalizer.normalize(x[j], mean: n.mean[j], scale: n.scale[j]) }
        } else {
            out.update(from: x, count: o)
        }
    }

    /// The reward as the network sees it (scaled when the manifest holds a reward normaliser).
    @inline(__always)
    public func normalize(reward r: Float) -> Float {
        guard let scale = rewardScale else { return r }
        return PolicyManifest.Normalizer.normalize(r, mean: 0, scale: scale)
    }

    /// Writes one row's network input (`network.inputWidth` floats) from a normalised observation, the
    /// previous action (none at an episode's first step; the state's floats, or an index), the
    /// normalised previous reward and the agent's index.
    @inline(__always)
    public func writeContext(observation: UnsafePointer<Float>, previousObservation: UnsafePointer<Float>? = nil,
                             previousAction: PolicyManifest.Context.PreviousAction, reward: Float, agent: Int, into out: UnsafeMutablePointer<Float>) {
        manifest.context.write(observation: observation, observationWidth: manifest.observationWidth, previousObservation: previousObservation,
                               agent: agent, agents: manifest.agents,
                               previousAction: previousAction, previousActionWidth: previousActionWidth, reward: reward, into: out)
    }

    /// The previous action as the network sees it (`previousActionWidth` floats) from the policy's own
    /// action (an index, or the normalised action).
    @inline(__always)
    public func writePreviousAction(_ a: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        if manifest.actions.count != nil {
            out.update(repeating: 0, count: previousActionWidth)
            out[Int(a[0])] = 1
        } else {
            out.update(from: a, count: policyActionWidth)
        }
    }

    /// The network and the distribution for `context` (`[1, B, inputWidth]`): advances each row's
    /// recurrent state (the first `recurrentStateWidth` floats of rows `stateStride` apart at `state`)
    /// and writes the policy's own actions (`[B, A]` normalised, or `[B]` indices), before any mapping
    /// onto the environment's bounds.
    public func step(context: Tensor, state: UnsafeMutablePointer<Float>?, stateStride S: Int, deterministic: Bool,
                     actionMasks: UnsafePointer<Float>?, policyActions a: UnsafeMutablePointer<Float>) {
        forwardNetworks(context: context, state: state, stateStride: S)
        choose(outputs.data, rows: context.shape[1], deterministic: deterministic, actionMasks: actionMasks, policyActions: a)
    }

    /// The networks over `context` with the training layers: with one network per agent, agent k's
    /// rows (every `agents`-th) through network k gathered into a batch of their own, as the training
    /// agent's actors run them; advances the states and writes `outputs` `[B, outputWidth]`.
    func forwardNetworks(context: Tensor, state: UnsafeMutablePointer<Float>?, stateStride S: Int) {
        let m = manifest, B = context.shape[1], N = networks.count, C = m.network.inputWidth, R = recurrentStateWidth
        let W = m.network.outputWidth, rows = B / N
        outputs.resize(Shape(d0: B, d1: W))
        for k in 0..<N {
            let network = networks[k]
            var input = context
            if N > 1 {
                agentContext.resize(Shape(d0: 1, d1: rows, d2: C))
                for j in 0..<rows { (agentContext.data + j * C).update(from: context.data + (j * N + k) * C, count: C) }
                input = agentContext
            }
            var features = input
            if let encoder = network.encoder, let state {
                features = encoder.forward(input, initialState: Matrix(state + k * S, rows: rows, columns: R, stride: S * N), resetMask: nil,
                                           resets: .zero, keepActivations: false)
                for j in 0..<rows { (state + (j * N + k) * S).update(from: encoder.finalState.data + j * R, count: R) }
            }
            let F = network.encoder?.hiddenSize ?? C
            headInput.resize(Shape(d0: rows, d1: F))
            headInput.data.update(from: features.data, count: rows * F)
            let out = network.head.forward(headInput)
            for j in 0..<rows { (outputs.data + (j * N + k) * W).update(from: out.data + j * W, count: W) }
        }
    }

    /// The policy's own actions from the network's outputs (`[B, outputWidth]`, masked in place).
    func choose(_ out: UnsafeMutablePointer<Float>, rows B: Int, deterministic: Bool, actionMasks: UnsafePointer<Float>?,
                policyActions a: UnsafeMutablePointer<Float>) {
        let m = manifest, A = policyActionWidth
        switch m.distribution {
        case .tanhGaussian:
            if deterministic {
                TanhGaussian.mode(parameters: out, rows: B, actionWidth: A, actions: a)
            } else {
                noise.resize(Shape(d0: B, d1: A))
                scratch.resize(Shape(d0: B))
                TanhGaussian.sample(parameters: out, rows: B, actionWidth: A, noise: noise.data, actions: a, logProbabilities: scratch.data, rng: &rng)
            }
        case .deterministic:
            for i in 0..<(B * A) { a[i] = min(max(out[i], -1), 1) }
        case .gaussian:
            DiagonalGaussian.sample(means: out, logStd: logStd!.data, rows: B, actionWidth: A, deterministic: deterministic, actions: a,
                                    logProbabilities: nil, rng: &rng)
        case .categorical, .greedy:
            let n = m.actions.count ?? 1
            if let actionMasks { Categorical.mask(logits: out, rows: B, actions: n, mask: actionMasks) }
            if deterministic || m.distribution == .greedy {
                Categorical.mode(logits: out, rows: B, actions: n, into: a)
            } else {
                scratch.resize(Shape(d0: 2 * B * n))
                Categorical.probabilities(logits: out, rows: B, actions: n, probabilities: scratch.data, logProbabilities: scratch.data + B * n)
                Categorical.sample(probabilities: scratch.data, rows: B, actions: n, into: a, rng: &rng)
            }
        }
    }

    /// The acting path for one row: its context `x` through the recurrent layers (advancing the row's
    /// state in place) and the head, with the packed weights and one-row products
    /// (`rrl_affine_rows`); writes the network's `outputWidth` outputs. The same equations as the
    /// training layers (PyTorch's), with the sums in another order.
    @inline(__always)
    func forwardRow(_ x: UnsafePointer<Float>, state: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, network: Int) {
        let gi = rowScratch, gh = rowScratch + rowWidth, buffers = (rowScratch + 2 * rowWidth, rowScratch + 3 * rowWidth)
        var input = x, column = 0
        let range = rowRanges[network]
        for index in range {
            let layer = rowLayers[index]
            let H = layer.output
            // A recurrent layer's output is its new h, read where it lies in the state.
            switch layer.cell {
            case .gru:
                let h = state + column
                rrl_affine_rows(1, layer.input, 3 * H, layer.weightT, layer.bias, input, gi, 0)
                rrl_affine_rows(1, H, 3 * H, layer.hiddenT, layer.hiddenBias, h, gh, 0)
                rrl_gru_row(H, gi, gh, h)
                input = UnsafePointer(h)
                column += H
            case .lstm:
                let h = state + column, c = state + column + H
                rrl_affine_rows(1, layer.input, 4 * H, layer.weightT, layer.bias, input, gi, 0)
                rrl_affine_rows(1, H, 4 * H, layer.hiddenT, layer.hiddenBias, h, gh, 0)
                rrl_lstm_row(H, gi, gh, h, c)
                input = UnsafePointer(h)
                column += 2 * H
            case nil:
                // Alternate two buffers so that a layer never writes the input it reads.
                let target = index == range.upperBound - 1 ? output : index % 2 == 0 ? buffers.0 : buffers.1
                // ReLU in the product's last store; any other activation after it.
                let relu = layer.activation == .relu
                rrl_affine_rows(1, layer.input, layer.output, layer.weightT, layer.bias, input, target, relu ? 1 : 0)
                if !relu { layer.activation.apply(target, target, count: layer.output) }
                input = UnsafePointer(target)
            }
        }
    }

    /// One step of one episode: the environment action for `observation`, with the reward received
    /// for the previous action (ignored unless the policy uses it); `state` (from `initialState()`)
    /// is carried from step to step.
    public func act(observation: [Float], reward: Float = 0, episodeStart: Bool, state: inout [Float], actionMask: [Float]? = nil,
                    deterministic: Bool = true) -> [Float] {
        precondition(observation.count == manifest.observationWidth, "the policy takes observations of \(manifest.observationWidth) floats (got \(observation.count))")
        precondition(state.count == stateWidth, "the policy's state has \(stateWidth) floats (got \(state.count)); start from initialState()")
        var action = [Float](repeating: 0, count: actionWidth), r = reward, start = episodeStart
        observation.withUnsafeBufferPointer { o in
            state.withUnsafeMutableBufferPointer { s in
                action.withUnsafeMutableBufferPointer { out in
                    if let actionMask {
                        actionMask.withUnsafeBufferPointer { mask in
                            act(observations: o.baseAddress!, rewards: &r, episodeStarts: &start, actionMasks: mask.baseAddress, state: s.baseAddress!,
                                batch: 1, deterministic: deterministic, actions: out.baseAddress!)
                        }
                    } else {
                        act(observations: o.baseAddress!, rewards: &r, episodeStarts: &start, state: s.baseAddress!, batch: 1,
                            deterministic: deterministic, actions: out.baseAddress!)
                    }
                }
            }
        }
        return action
    }
}

extension PolicyManifest.Actions {
    /// A normalised continuous action (each entry in [-1, 1] after clipping) mapped onto [low, high]:
    /// low + (clip(a, -1, 1) + 1) / 2 · (high - low), clamped again (low + (high - low) may round past high).
    @inline(__always)
    public static func mapToBounds(_ a: UnsafePointer<Float>, low: [Float], high: [Float], into out: UnsafeMutablePointer<Float>) {
        low.withUnsafeBufferPointer { l in
            high.withUnsafeBufferPointer { h in mapToBounds(a, low: l.baseAddress!, high: h.baseAddress!, count: l.count, into: out) }
        }
    }

    /// The same for `count` actions with bounds at `low` and `high`.
    @inline(__always)
    public static func mapToBounds(_ a: UnsafePointer<Float>, low: UnsafePointer<Float>, high: UnsafePointer<Float>, count: Int,
                                   into out: UnsafeMutablePointer<Float>) {
        for j in 0..<count { out[j] = min(max(low[j] + (min(max(a[j], -1), 1) + 1) * 0.5 * (high[j] - low[j]), low[j]), high[j]) }
    }
}
