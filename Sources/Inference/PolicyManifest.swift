import Foundation
import NeuralNetworks

/// What a weights file says about the policy it holds, so that the file alone rebuilds it: the
/// actor network's architecture, what its input at each step is made of, the observation and
/// action spaces, how actions map to the environment, and the normalisers' statistics. Stored as
/// JSON under `PolicyManifest.metadataKey` in the safetensors metadata.
///
/// One step of the policy (`Policy.act`), for each row of a batch:
/// 1. at an episode's start the recurrent state, the previous observation and the previous action
///    are zeros, and the previous reward is 0;
/// 2. the observation is normalised when `observationNormalizer` is given:
///    clip((o - mean) / sqrt(variance + 1e-8), -10, 10), and the previous reward is scaled by
///    `rewardNormalizer`: clip(r / sqrt(variance + 1e-8), -10, 10);
/// 3. the network's input is, in this order, the observation (`context.observation`), the previous
///    (normalised) observation (`context.lastObservation`), the agent's
///    index one-hot over `agents` (`context.agentID`; row r of a batch is agent r mod `agents`), the
///    previous action (`context.lastAction`: one-hot for discrete actions, else the policy's
///    normalised action) and the previous reward (`context.lastReward`);
/// 4. the recurrent encoder (`network.cell`: PyTorch's GRU or LSTM equations, `network.layers`
///    layers; with `network.contextEncoder`, RESeL's context encoder around it) advances the state,
///    and the head MLP (`headHiddenSizes`, `activation` between layers, `outputActivation` at the
///    end) gives the output;
/// 5. the action (`distribution`): `tanhGaussian` (SAC) reads the output as [mean | log std] and acts
///    tanh(mean) (sampled: tanh(mean + std·ε), log std clamped to [-20, 2]); `deterministic` (TD3)
///    acts clip(output, -1, 1); `gaussian` (PPO) acts the mean (sampled: mean + exp(log std)·ε with
///    the tensor `logStdName`); `categorical` acts the index of the largest logit (sampled: from the
///    softmax); `greedy` (VDN, QMIX: the outputs are Q-values) acts the index of the largest output,
///    sampled or not (exploration is a training matter);
/// 6. a continuous action a (normalised) goes to the environment as
///    low + (clip(a, -1, 1) + 1) / 2 · (high - low), clamped to [low, high].
public struct PolicyManifest: Codable, Equatable, Sendable {
    /// The metadata key of the manifest in a weights file.
    public static let metadataKey = "rrl.policy"
    /// The manifest version this library writes and reads.
    public static let currentVersion = 1

    /// How the network's output becomes an action (step 5 above).
    public enum Distribution: String, Codable, Sendable { case tanhGaussian, deterministic, gaussian, categorical, greedy }

    /// The actor network.
    public struct Network: Codable, Equatable, Sendable {
        /// nil: no recurrent encoder (an MLP policy).
        public var cell: CellKind?
        public var hiddenSize: Int
        public var layers: Int
        public var headHiddenSizes: [Int]
        public var activation: Activation
        public var outputActivation: Activation
        /// Floats of one step's input (the context) and of the head's output.
        public var inputWidth: Int
        public var outputWidth: Int
        /// The tensors' name prefix in the weights file (`actor.`): `<prefix>encoder.weight_ih_l0`,
        /// ..., `<prefix>head.0.weight`, ... (PyTorch's names and layouts).
        public var parameterPrefix: String
        /// RESeL's context encoder around the recurrent stack (nil: the stack alone): each context
        /// input embedded linearly (`<prefix>encoder.embedding0.weight`, ...), the dense layers
        /// (`before0.`, ... with `activation`), the stack (`rnn.weight_ih_l0`, ...), its output through
        /// `activation`, a linear layer (`after.`), and next to it a linear projection of the
        /// observation (`projection.`); the head reads both.
        public var contextEncoder: ContextEncoderLayout?

        public init(cell: CellKind?, hiddenSize: Int, layers: Int, headHiddenSizes: [Int], activation: Activation,
                    outputActivation: Activation, inputWidth: Int, outputWidth: Int, parameterPrefix: String) {
            self.cell = cell
            self.hiddenSize = hiddenSize
            self.layers = layers
            self.headHiddenSizes = headHiddenSizes
            self.activation = activation
            self.outputActivation = outputActivation
            self.inputWidth = inputWidth
            self.outputWidth = outputWidth
            self.parameterPrefix = parameterPrefix
        }
    }

    /// What one step's input holds (in this order when present).
    public struct Context: Codable, Equatable, Sendable {
        public var observation: Bool
        /// The previous observation of the episode (zeros at its first step), right after the observation (nil: not held).
        public var lastObservation: Bool?
        public var agentID: Bool
        public var lastAction: Bool
        public var lastReward: Bool

        public var holdsLastObservation: Bool { lastObservation == true }

        public init(observation: Bool, lastObservation: Bool? = nil, agentID: Bool, lastAction: Bool, lastReward: Bool) {
            self.lastObservation = lastObservation
            self.observation = observation
            self.agentID = agentID
            self.lastAction = lastAction
            self.lastReward = lastReward
        }
    }

    /// The environment's action space: `count` discrete actions, or a box from `low` to `high`.
    public struct Actions: Codable, Equatable, Sendable {
        public var count: Int?
        public var low: [Float]?
        public var high: [Float]?

        public static func discrete(_ n: Int) -> Actions { Actions(count: n, low: nil, high: nil) }
        public static func box(low: [Float], high: [Float]) -> Actions { Actions(count: nil, low: low, high: high) }
        /// Floats of one action sent to the environment (1 for a discrete index).
        public var width: Int { count != nil ? 1 : (low?.count ?? 0) }
    }

    /// Running statistics: mean and variance per feature (a reward normaliser has only the variance).
    public struct Normalizer: Codable, Equatable, Sendable {
        public var mean: [Double]?
        public var variance: [Double]

        /// The normalisation RecurrentRL applies (PPO's observations, with their mean; rewards, with
        /// mean 0): clip((x - mean) / sqrt(variance + 1e-8), -10, 10), in double precision.
        @inline(__always)
        public static func normalize(_ x: Float, mean: Double, variance: Double) -> Float {
            normalize(x, mean: mean, scale: (variance + 1e-8).squareRoot())
        }

        /// The same with the scale sqrt(variance + 1e-8) computed once.
        @inline(__always)
        public static func normalize(_ x: Float, mean: Double, scale: Double) -> Float {
            Float(min(max((Double(x) - mean) / scale, -10), 10))
        }

        public init(mean: [Double]?, variance: [Double]) {
            self.mean = mean
            self.variance = variance
        }
    }

    public var version: Int
    /// The algorithm that trained the policy (sac, td3, masac, ppo), for people reading the file.
    public var algorithm: String
    public var network: Network
    public var context: Context
    /// Agents sharing the network (1 for single-agent policies).
    public var agents: Int
    public var observationWidth: Int
    public var actions: Actions
    public var distribution: Distribution
    /// The tensor of the state-independent log standard deviation (`gaussian`).
    public var logStdName: String?
    public var observationNormalizer: Normalizer?
    public var rewardNormalizer: Normalizer?
    /// The environment masks unavailable discrete actions (the exports then take an `action_mask` input).
    public var actionMasks: Bool?
    /// Networks: 1 (nil), shared by the agents, or `agents`, one per agent (agent k's tensors under
    /// `network.parameterPrefix` + `agentK.`; row r of a batch goes through network r mod `agents`).
    public var networks: Int?

    /// How many networks the policy has (1, or one per agent).
    public var networkCount: Int { networks ?? 1 }

    /// The tensor name prefix of network `k`.
    public func parameterPrefix(ofNetwork k: Int) -> String {
        networkCount == 1 ? network.parameterPrefix : network.parameterPrefix + "agent\(k)."
    }

    public init(algorithm: String, network: Network, context: Context, agents: Int, observationWidth: Int, actions: Actions,
                distribution: Distribution, logStdName: String? = nil, observationNormalizer: Normalizer? = nil,
                rewardNormalizer: Normalizer? = nil, actionMasks: Bool? = nil, networks: Int? = nil) {
        version = PolicyManifest.currentVersion
        self.algorithm = algorithm
        self.network = network
        self.context = context
        self.agents = agents
        self.observationWidth = observationWidth
        self.actions = actions
        self.distribution = distribution
        self.logStdName = logStdName
        self.observationNormalizer = observationNormalizer
        self.rewardNormalizer = rewardNormalizer
        self.actionMasks = actionMasks
        self.networks = networks
    }

    /// Floats of the previous action in the input: one-hot over discrete actions, else the action.
    public var previousActionWidth: Int { context.lastAction ? (actions.count ?? actions.width) : 0 }

    /// The widths of the context's inputs in order (observation, agent id, previous action, previous
    /// reward), as a context encoder embeds them.
    public var contextGroups: [Int] {
        context.groups(observationWidth: observationWidth, agents: agents, previousActionWidth: previousActionWidth)
    }

    /// The manifest as the metadata entry of a weights file.
    public var metadata: [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [PolicyManifest.metadataKey: String(decoding: try! encoder.encode(self), as: UTF8.self)]
    }

    /// Reads the manifest from a weights file's metadata; `path` names the file in messages.
    public init(metadata: [String: String], path: String) throws {
        guard let text = metadata[PolicyManifest.metadataKey] else {
            throw PolicyError("\(path) holds no policy manifest (it was written by a version of rrl before manifests, or by another tool); rebuild it from its run folder with `rrl export RUN_DIR --format weights`, or train again")
        }
        do {
            self = try JSONDecoder().decode(PolicyManifest.self, from: Data(text.utf8))
        } catch {
            throw PolicyError("\(path): its policy manifest cannot be read (\(error)); the file is damaged or was written by another tool")
        }
        guard version <= PolicyManifest.currentVersion else {
            throw PolicyError("\(path): its policy manifest is version \(version), newer than this library's \(PolicyManifest.currentVersion); update RecurrentRL")
        }
        try validate(path: path)
    }

    /// Checks that the parts agree with one another.
    public func validate(path: String) throws {
        func fail(_ message: String) -> PolicyError { PolicyError("\(path): the policy manifest \(message)") }
        let a = actions
        if let n = a.count {
            guard n >= 1 else { throw fail("has \(n) discrete actions") }
            guard distribution == .categorical || distribution == .greedy else { throw fail("pairs discrete actions with a \(distribution) distribution") }
        } else {
            guard let low = a.low, let high = a.high, low.count == high.count, !low.isEmpty,
                  zip(low, high).allSatisfy({ $0.isFinite && $1.isFinite && $0 <= $1 })
            else { throw fail("has no valid action bounds") }
            guard distribution != .categorical && distribution != .greedy else { throw fail("pairs continuous actions with a \(distribution) distribution") }
        }
        let A = a.count ?? a.width
        let outputs = distribution == .tanhGaussian ? 2 * A : A
        guard network.outputWidth == outputs else { throw fail("gives the network \(network.outputWidth) outputs; a \(distribution) policy over \(A) actions needs \(outputs)") }
        let input = contextGroups.reduce(0, +)
        guard network.inputWidth == input else { throw fail("gives the network \(network.inputWidth) inputs; its context needs \(input)") }
        guard agents >= 1, observationWidth >= 0, network.layers >= (network.cell == nil ? 0 : 1), network.hiddenSize >= 0 else {
            throw fail("has invalid sizes")
        }
        if let n = observationNormalizer, n.mean?.count != observationWidth || n.variance.count != observationWidth {
            throw fail("has an observation normaliser of another width than the observation's \(observationWidth)")
        }
        if distribution == .gaussian && logStdName == nil { throw fail("names no log standard deviation for its gaussian policy") }
        guard networkCount == 1 || networkCount == agents else { throw fail("has \(networkCount) networks for \(agents) agents (1, or one per agent)") }
    }
}

extension PolicyManifest.Context {
    /// The previous action a step's input holds: none (an episode's first step: zeros), an index
    /// (one-hot), or the action's floats.
    public enum PreviousAction {
        case none, index(Int), values(UnsafePointer<Float>)
    }

    /// The widths of the inputs a step's input holds, in `write`'s order (observation, previous
    /// observation, agent id, previous action, previous reward): what a context encoder embeds one by one.
    public func groups(observationWidth o: Int, agents: Int, previousActionWidth w: Int) -> [Int] {
        [observation ? o : 0, holdsLastObservation ? o : 0, agentID ? agents : 0, lastAction ? w : 0, lastReward ? 1 : 0].filter { $0 > 0 }
    }

    /// Writes one step's input in the order observation, previous observation (nil: the episode's
    /// first step, zeros), agent `agent`'s id one-hot over `agents`, previous action
    /// (`previousActionWidth` floats), previous reward, as far as the context holds them: the one
    /// context writer of training agents and shipped policies.
    @inline(__always)
    public func write(observation: UnsafePointer<Float>, observationWidth o: Int, previousObservation: UnsafePointer<Float>? = nil, agent: Int,
                      agents: Int, previousAction: PreviousAction, previousActionWidth w: Int, reward: Float, into out: UnsafeMutablePointer<Float>) {
        var p = out
        if self.observation { p.update(from: observation, count: o); p += o }
        if holdsLastObservation {
            if let previousObservation { p.update(from: previousObservation, count: o) } else { p.update(repeating: 0, count: o) }
            p += o
        }
        if agentID {
            p.update(repeating: 0, count: agents)
            p[agent] = 1
            p += agents
        }
        if lastAction {
            switch previousAction {
            case .none: p.update(repeating: 0, count: w)
            case .index(let i): p.update(repeating: 0, count: w); p[i] = 1
            case .values(let v): p.update(from: v, count: w)
            }
            p += w
        }
        if lastReward { p[0] = reward }
    }
}

/// A policy that cannot be loaded or used, with what to do about it.
public struct PolicyError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
