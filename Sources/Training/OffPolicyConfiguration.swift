import Agents
import Environments
import NeuralNetworks
import Replay

/// A run configuration's environment: its name, options and Python modules, as one `EnvironmentSpec`.
public protocol EnvironmentConfiguring {
    var environment: String { get set }
    var environmentOptions: [String: String]? { get set }
    var environmentModules: [String]? { get set }
}

extension EnvironmentConfiguring {
    /// The environment with its options and modules.
    public var environmentSpec: EnvironmentSpec {
        EnvironmentSpec(environment, options: environmentOptions ?? [:], modules: environmentModules ?? [])
    }

    /// This configuration with `other`'s environment (name, options, modules).
    func withEnvironment(of other: some EnvironmentConfiguring) -> Self {
        var c = self
        c.environment = other.environment
        c.environmentOptions = other.environmentOptions
        c.environmentModules = other.environmentModules
        return c
    }
}

extension OffPolicyConfiguration: EnvironmentConfiguring {}
extension PPOTrainingConfiguration: EnvironmentConfiguring {}

/// Every option of an off-policy training run (written, resolved, into the run folder).
public struct OffPolicyConfiguration: Codable, Equatable, Sendable {
    public var environment = "memory"
    /// Environment steps to train for.
    public var steps = 100_000
    public var seed: UInt64 = 0
    /// Steps with uniformly random actions before updates start.
    public var warmupSteps = 1000
    /// Evaluate (and probe) every this many steps, and at the end.
    public var evaluationInterval = 1000
    /// Deterministic evaluation episodes (run side by side).
    public var evaluationEpisodes = 10
    /// Memory task only: probes per evaluation and their length.
    public var probes = 20
    public var probeLength = 50
    /// Write a checkpoint every this many steps (and at the end); nil: every 25,000 steps; 0: only
    /// at the end and when interrupted.
    public var checkpointInterval: Int? = nil
    /// Python modules the bridge imports before making a `gym:` environment (they register it).
    public var environmentModules: [String]? = nil
    /// The environment's options (`--env-option KEY=VALUE`), e.g. the memory task's horizon.
    public var environmentOptions: [String: String]? = nil
    /// Environment copies stepped together (nil: one). Steps, intervals and the update ratio count
    /// environment steps over all copies (see `OffPolicyTrainer`).
    public var environments: Int? = nil
    /// Multi-agent copies: reset each copy when its episode ends (nil, the default), or hold finished
    /// copies until all have ended and reset them together.
    public var resetMode: MultiAgentVectorEnvironment.ResetMode? = nil
    /// Actor-learner training under mpirun: environment passes an actor makes between two messages to
    /// the learner (nil: 1), and learner updates between two weight sends to an actor (nil: 1).
    public var actorSteps: Int? = nil
    public var weightsInterval: Int? = nil
    public var agent = AgentConfiguration()

    public init() {}

    /// The memory configuration: recurrent SAC, window 50, batch 4, GRU 16, actor lr 1e-4,
    /// critic lr 1e-3, gamma 0, random lengths with nominal probability 0.5.
    public static var memoryDefault: OffPolicyConfiguration {
        var c = OffPolicyConfiguration()
        c.environment = "memory"
        c.steps = 100_000
        c.agent.network = .gru
        c.agent.hiddenSize = 16
        c.agent.batchSize = 4
        c.agent.sampler.sequenceLength = 50
        c.agent.sampler.randomSequenceLength = true
        c.agent.sampler.nominalLengthProbability = 0.5
        c.agent.actorLearningRate = 1e-4
        c.agent.criticLearningRate = 1e-3
        c.agent.gamma = 0
        return c
    }

    /// RESeL's recipe (Luo et al. 2024, as its released code configures its POMDP tasks) for SAC on
    /// an environment whose episodes last at most `episodeLimit` steps: the context encoder (each
    /// input embedded to 128, dense 256, GRU 256, its output through ELU, linear 128, a 128 projection
    /// of the observation beside it), heads [256, 256] with ELU; one critic with 8 Q-heads, the target's
    /// minimum over 2 drawn at random, the actor on their mean, bootstrap values clamped to the range of
    /// past targets; the previous observation and action in the context (the previous reward off, as
    /// RESeL's default);
    /// learning rates 3e-4 (actor), 1e-3 (critic), 1e-5 (the context encoders), 1e-4 (temperature);
    /// γ 0.99, τ 0.005, 5000 random steps, one critic update per step and an actor update every 2;
    /// whole episodes from a zero state packed into rows as long as the longest episode, as many rows
    /// as make about 2000 valid steps.
    public mutating func applyRESeL(episodeLimit: Int) {
        var a = agent
        a.algorithm = .sac
        a.network = .gru
        a.hiddenSize = 256
        a.recurrentLayers = 1
        a.headHiddenSizes = [256, 256]
        a.activation = .elu
        a.contextEncoder = ContextEncoderLayout()
        a.context = ContextInputs(observation: true, lastObservation: true, lastAction: true, lastReward: false)
        a.criticCount = 1
        a.criticHeads = 8
        a.targetSubset = 2
        a.actorQ = .mean
        a.clampTargets = true
        a.actorLearningRate = 3e-4
        a.criticLearningRate = 1e-3
        a.encoderLearningRate = 1e-5
        a.temperatureLearningRate = 1e-4
        a.targetEntropy = nil
        a.gamma = 0.99
        a.tau = 0.005
        a.criticUpdateInterval = 1
        a.actorUpdateInterval = 2
        a.targetUpdateInterval = 1
        a.truncation = 0
        var sampler = SamplerConfiguration()
        sampler.sequenceLength = max(episodeLimit, 1)
        sampler.packEpisodes = true
        sampler.timeLimitsTerminal = a.sampler.timeLimitsTerminal
        a.sampler = sampler
        a.batchSize = max(1, (2000 + sampler.sequenceLength - 1) / sampler.sequenceLength)
        agent = a
        warmupSteps = 5000
    }

    /// Defaults for `rrl train ALGORITHM --env NAME` before the user's options apply.
    public static func defaults(algorithm: OffPolicyAlgorithm, environment: String) -> OffPolicyConfiguration {
        var c = environment == "memory" ? memoryDefault : OffPolicyConfiguration()
        c.environment = environment
        c.agent.algorithm = algorithm
        if environment != "memory" {
            // Classic control (Stable-Baselines3 zoo style): MLP heads of 64, batch 100, lr 1e-3.
            c.steps = 20_000
            c.agent.useMLP()
            c.agent.headHiddenSizes = [64, 64]
            c.agent.batchSize = 100
            c.agent.actorLearningRate = 1e-3
            c.agent.criticLearningRate = 1e-3
            c.agent.gamma = 0.99
            c.evaluationEpisodes = 10
        }
        if algorithm == .td3 {
            c.agent.actorUpdateInterval = 2
        }
        if algorithm == .masac {
            // Decentralised recurrent actors sharing one GRU with the agent's id, trained on whole
            // episodes from their stored starts; centralised critics.
            c.agent.network = .gru
            c.agent.hiddenSize = 32
            c.agent.headHiddenSizes = [64]
            c.agent.context = ContextInputs(observation: true, agentID: true)
            c.agent.batchSize = 32
            c.agent.actorLearningRate = 1e-3
            c.agent.criticLearningRate = 1e-3
            c.agent.gamma = 0.99
            c.agent.sampler = SamplerConfiguration()
            c.agent.sampler.sequenceLength = 25
            c.agent.sampler.alwaysStartAtEpisodeStart = true
            c.steps = 50_000
            c.evaluationInterval = 2_500
            if EnvironmentRegistry.resolve(environment).name == "foraging" {
                // Episodes end when the food is gone, with rewards summing to at most 1: an entropy
                // bonus of α log 6 per step at α = 1 is worth more than finishing, so the agents learn
                // to avoid the food. A small α keeps the bonus below the reward (measured: 5x5, one
                // food, α from 1: return falls from 0.6 to 0; from 0.01: 1.0 within 10k steps).
                // A low target entropy makes the learned policy nearly deterministic, so that its
                // greedy actions do what its samples do (8x8-2p-2f, 3 seeds, 100 episodes each:
                // target 0.6, greedy 0.81 against 0.96 sampled; target 0.15, greedy 0.96 at 400k steps).
                c.agent.initialTemperature = 0.01
                c.agent.targetEntropy = 0.15
            }
        }
        if algorithm.isValueDecomposition {
            // EPyMARL's recurrent agents: one GRU of 64 shared by the agents with their ids, trained on
            // batches of 32 whole episodes from zero states (one update per 25 environment steps, about
            // one per episode as EPyMARL's episode runner), Adam at 5e-4, gradients clipped at 10,
            // soft target updates, ε from 1 to 0.05 over 50k steps.
            c.agent.network = .gru
            c.agent.hiddenSize = 64
            c.agent.headHiddenSizes = [64]
            c.agent.context = ContextInputs(observation: true, agentID: true)
            c.agent.batchSize = 32
            c.agent.replayCapacity = 250_000
            c.agent.actorLearningRate = 5e-4
            c.agent.gamma = 0.99
            c.agent.tau = 0.01
            c.agent.maxGradientNorm = 10
            c.agent.criticUpdateInterval = 25
            c.agent.sampler = SamplerConfiguration()
            c.agent.sampler.sequenceLength = 25
            c.agent.sampler.alwaysStartAtEpisodeStart = true
            c.agent.valueDecomposition = ValueDecompositionConfiguration()
            c.steps = 200_000
            c.evaluationInterval = 10_000
            c.evaluationEpisodes = 20
        }
        return c
    }

    public func validate() throws {
        func fail(_ m: String) throws { throw ConfigurationError(m) }
        if steps < 1 { try fail("steps must be at least 1 (got \(steps))") }
        if let k = actorSteps, k < 1 { try fail("actor steps (passes per message to the learner) must be at least 1 (got \(k))") }
        if let k = weightsInterval, k < 1 { try fail("the weights interval (learner updates between weight sends) must be at least 1 (got \(k))") }
        if warmupSteps < 0 { try fail("warm-up steps must be 0 or more (got \(warmupSteps))") }
        if evaluationInterval < 1 { try fail("evaluation interval must be at least 1 (got \(evaluationInterval))") }
        if evaluationEpisodes < 1 { try fail("evaluation episodes must be at least 1 (got \(evaluationEpisodes))") }
        if let n = environments {
            if n < 1 { try fail("environment copies must be at least 1 (got \(n))") }
            try checkUpperBound("environment copies", n, SizeLimit.copies)
            if agent.replayCapacity < n { try fail("the replay capacity (\(agent.replayCapacity)) must hold at least one step per environment copy (\(n))") }
        }
        try checkUpperBound("steps", steps, SizeLimit.steps)
        try checkUpperBound("evaluation episodes", evaluationEpisodes, SizeLimit.episodes)
        try checkUpperBound("probes", probes, SizeLimit.episodes)
        try checkUpperBound("probe length", probeLength, SizeLimit.sequence)
        if probes < 0 || probeLength < 1 { try fail("probes must be 0 or more and probe length at least 1") }
        if warmupSteps >= steps {
            try fail("the warm-up (\(warmupSteps) random steps) covers the whole run (\(steps) steps), so nothing would be learned; lower --warmup or raise --steps")
        }
        if agent.criticUpdateInterval > steps - warmupSteps {
            try fail("with a critic update every \(agent.criticUpdateInterval) steps after \(warmupSteps) warm-up steps, a run of \(steps) steps would make no update; lower --critic-interval or raise --steps")
        }
        if let k = checkpointInterval, k < 0 { try fail("checkpoint interval must be 0 (only at the end) or positive (got \(k))") }
        // A Python environment is checked when its bridge starts.
        try environmentSpec.validate()
        if environmentSpec.isMultiAgent && !agent.algorithm.isMultiAgent {
            let agents = environmentSpec.isPython ? "several" : "\((try? environmentSpec.makeMultiAgent().agents) ?? 2)"
            try fail("\(environment) has \(agents) agents; \(agent.algorithm.rawValue) trains one: use masac (rrl train masac --env \(environment))")
        }
        if resetMode != nil && !isMultiAgent {
            try fail("the reset mode applies to multi-agent environments; \(environment) has one agent: remove it")
        }
        if environmentModules != nil && !environmentSpec.isPython { try fail("environment modules apply only to Python environments (gym:ID, pz:MODULE)") }
        try agent.validate()
    }

    /// Whether the run's environment is served as a multi-agent one: a registered multi-agent or
    /// PettingZoo environment, or a Python (`gym:`) one under masac (whose bridge then says how many
    /// agents it has; a single-agent one is one agent).
    public var isMultiAgent: Bool {
        environmentSpec.isMultiAgent || (environmentSpec.isPython && agent.algorithm.isMultiAgent)
    }
}

/// Earlier names, kept so that code written against them still compiles.
@available(*, deprecated, renamed: "OffPolicyConfiguration")
public typealias TrainingConfiguration = OffPolicyConfiguration
/// The off-policy trainer's earlier name.
@available(*, deprecated, renamed: "OffPolicyTrainer")
public typealias Trainer = OffPolicyTrainer
