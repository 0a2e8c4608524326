import Environments
import Inference
import NeuralNetworks
import Tensors

/// The manifests that make a weights file self-describing (`PolicyManifest`): what each agent's
/// acting network is, so that the inference library, `rrl export` and other languages rebuild the
/// policy from the file alone.
extension PolicyManifest.Actions {
    /// An environment's action space as a manifest states it.
    public init(_ space: Space) {
        switch space {
        case .discrete(let n): self = .discrete(n)
        case .box(let low, let high): self = .box(low: low, high: high)
        }
    }
}

extension PolicyManifest.Context {
    init(_ c: ContextInputs) {
        self.init(observation: c.observation, lastObservation: c.lastObservation ? true : nil, agentID: c.agentID, lastAction: c.lastAction,
                  lastReward: c.lastReward)
    }
}

extension PolicyManifest.Network {
    init(_ network: SequenceNetwork, cell: CellKind?, configuration c: (hiddenSize: Int, layers: Int, head: [Int], activation: Activation),
         outputActivation: Activation) {
        self.init(cell: cell, hiddenSize: cell == nil ? 0 : c.hiddenSize, layers: cell == nil ? 0 : c.layers, headHiddenSizes: c.head,
                  activation: c.activation, outputActivation: outputActivation, inputWidth: network.contextWidth,
                  outputWidth: network.head.outputSize, parameterPrefix: "actor.")
    }
}

extension OffPolicyAgent {
    /// The actor's manifest for `actionSpace` (one network shared by the agents, or one per agent).
    public func policyManifest(actionSpace: Space) -> PolicyManifest {
        let c = configuration
        let distribution: PolicyManifest.Distribution = c.algorithm.isValueDecomposition ? .greedy
            : discreteActions != nil ? .categorical : c.algorithm == .td3 ? .deterministic : .tanhGaussian
        var network = PolicyManifest.Network(actor.networks[0], cell: c.network.cell,
                                             configuration: (c.hiddenSize, c.recurrentLayers, c.headHiddenSizes, c.activation),
                                             outputActivation: c.algorithm == .td3 ? .tanh : .identity)
        network.contextEncoder = c.network.cell == nil ? nil : c.contextEncoder
        return PolicyManifest(algorithm: c.algorithm.rawValue,
                              network: network,
                              context: .init(c.context), agents: agents, observationWidth: observationWidth, actions: .init(actionSpace),
                              distribution: distribution, actionMasks: actionMaskWidth > 0 ? true : nil,
                              networks: actor.isShared ? nil : agents)
    }
}

extension PPOAgent {
    /// The actor's manifest for `actionSpace` (`algorithm`: ppo, ippo or mappo), with the normalisers' statistics.
    public func policyManifest(actionSpace: Space, algorithm: String = "ppo") -> PolicyManifest {
        let c = configuration
        return PolicyManifest(algorithm: algorithm,
                              network: .init(actor, cell: c.network.cell, configuration: (c.hiddenSize, c.recurrentLayers, c.headHiddenSizes, c.activation),
                                             outputActivation: .identity),
                              context: .init(c.context), agents: agents, observationWidth: observationWidth, actions: .init(actionSpace),
                              distribution: discreteActions != nil ? .categorical : .gaussian, logStdName: logStd != nil ? "actor.log_std" : nil,
                              observationNormalizer: c.normalizeObservations
                                  ? .init(mean: observationStatistics.mean, variance: observationStatistics.variance) : nil,
                              rewardNormalizer: c.normalizeRewards && c.context.lastReward ? .init(mean: nil, variance: returnStatistics.variance) : nil,
                              actionMasks: actionMaskWidth > 0 ? true : nil)
    }
}

/// A policy loaded from its file acts wherever an agent does (evaluation, `rrl evaluate`): the
/// context, state and action forms are the training agent's.
extension Policy: RecurrentActor {
    public var contextWidth: Int { manifest.network.inputWidth }
    public var actorStateWidth: Int { recurrentStateWidth }
    public var agents: Int { manifest.agents }

    public func prepare(observation: UnsafeMutablePointer<Float>) { normalize(observation: observation, into: observation) }
    public func prepare(reward: Float) -> Float { normalize(reward: reward) }

    /// `lastAction` in the agent's stored form (an index, or the normalised action).
    public func writeContext(observation: UnsafePointer<Float>, lastObservation: UnsafePointer<Float>?, lastAction: UnsafePointer<Float>?,
                             lastReward: Float, agent: Int, into out: UnsafeMutablePointer<Float>) {
        let previous: PolicyManifest.Context.PreviousAction = lastAction.map { manifest.actions.count != nil ? .index(Int($0[0])) : .values($0) } ?? .none
        writeContext(observation: observation, previousObservation: lastObservation, previousAction: previous, reward: lastReward, agent: agent, into: out)
    }

    public func act(context: Tensor, state: Tensor, deterministic: Bool, actionMasks: UnsafePointer<Float>?, actions: UnsafeMutablePointer<Float>) {
        step(context: context, state: encoder == nil ? nil : state.data, stateStride: state.shape.rank == 2 ? state.shape[1] : recurrentStateWidth,
             deterministic: deterministic, actionMasks: actionMasks, policyActions: actions)
    }
}
