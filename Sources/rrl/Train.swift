import ArgumentParser
import Foundation
import RecurrentRL

extension OffPolicyAlgorithm: ExpressibleByArgument {}

/// Recipes `rrl train --preset NAME` starts from (options given with it override it).
enum TrainPreset: String, CaseIterable, ExpressibleByArgument {
    /// RESeL (Luo et al. 2024): `OffPolicyConfiguration.applyRESeL` (sac).
    case resel
    /// rl-zoo's RecurrentPPO settings for CartPoleNoVel exactly: `PPOConfiguration.applyRLZoo` (ppo).
    case rlZoo = "rl-zoo"

    /// The one algorithm whose recipe it is.
    var algorithm: String {
        switch self {
        case .resel: return "sac"
        case .rlZoo: return "ppo"
        }
    }
}

/// The algorithms `rrl train` runs.
enum TrainAlgorithm: String, CaseIterable, ExpressibleByArgument {
    case sac, td3, masac, vdn, qmix, ppo, ippo, mappo

    /// The off-policy algorithm (sac for the PPO family, which has its own configuration).
    var offPolicy: OffPolicyAlgorithm { OffPolicyAlgorithm(rawValue: rawValue) ?? .sac }
    /// ppo, ippo and mappo (one configuration, `PPOTrainingConfiguration`).
    var isPPO: Bool { PPOTrainingConfiguration.algorithms.contains(rawValue) }
}
extension CriticInput: ExpressibleByArgument {}
extension ActorQ: ExpressibleByArgument {}
extension OtherAgentsActions: ExpressibleByArgument {}
extension MultiAgentVectorEnvironment.ResetMode: ExpressibleByArgument {}
extension NetworkKind: ExpressibleByArgument {}
extension InitialStateMode: ExpressibleByArgument {}
extension Activation: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an agent (recurrent SAC on the memory task by default).",
        discussion: """
        Off-policy (sac, td3): every hidden-state strategy is an option: --sequence-length, --burn-in, \
        --initial-state, --random-length with --nominal-length-probability, --start-at-episode-start, \
        --include-first-step-in-targets, --mask-non-final, --context, --encoder-lr, --truncation. \
        On-policy (ppo): --refresh and --refresh-interval (hidden-state refreshing), --target-kl and \
        --kl-hard-limit, --chunk-length, --truncation, and the PPO options below. \
        Options left out take the algorithm's and environment's defaults (written to config.json); an \
        option that does not apply to the chosen algorithm is an error. --config FILE reads a JSON file \
        in the shape of a run's config.json (any subset of it); options given on the command line \
        override it. Checkpoints go to RUN_DIR/checkpoints every --checkpoint-interval steps, at the \
        end, and on Ctrl-C or SIGTERM; `rrl train --resume RUN_DIR` continues exactly where the last \
        one left off (--steps may raise the budget).
        """
    )

    @Argument(help: "Algorithm: sac (continuous or discrete actions; the default), td3, masac (multi-agent SAC; default environment team-recall), vdn or qmix (value decomposition with recurrent agent Q-networks; discrete actions), ppo (recurrent PPO), ippo or mappo (multi-agent recurrent PPO with networks shared by the agents; mappo's critic reads the global state).") var algorithm: TrainAlgorithm?

    @Option(help: "A JSON configuration file (a run's config.json, or any subset of it); command-line options override it.") var config: String?
    @Option(help: "Start from a published recipe, then apply the options given: resel (RESeL's SAC: context encoder, 8 Q-heads, encoder lr 1e-5, whole packed episodes; sac only); rl-zoo (rl-zoo's RecurrentPPO settings exactly: no value clipping; ppo only).") var preset: TrainPreset?
    @Option(help: "Continue the run in this folder from its last checkpoint (only --steps, --checkpoint-interval and --quiet may be given too).") var resume: String?
    @Option(parsing: .unconditional, help: "Write a checkpoint every this many steps (default 25000; 0: only at the end and on Ctrl-C/SIGTERM).") var checkpointInterval: Int?
    @Option(help: "Environment (see `rrl list`; default memory, cartpole-position for ppo). Python environments: gym:ID (see `rrl list --python`); PettingZoo parallel ones (masac): pz:MODULE, e.g. pz:mpe2.simple_spread_v3.") var env: String?
    @Option(help: "A Python module to import before making a gym:ID environment (it registers it), e.g. popgym; repeatable.") var envModule: [String] = []
    @Option(help: "An option of the environment, KEY=VALUE (e.g. horizon=6 for memory; `rrl list` shows each environment's; for gym:ID and pz:MODULE, a keyword argument of gym.make or parallel_env); repeatable.") var envOption: [String] = []
    @Option(parsing: .unconditional, help: "Environment steps.") var steps: Int?
    @Option(parsing: .unconditional, help: "Random seed (default 0).") var seed: UInt64?
    @Option(help: "Run folder (default runs/ALGORITHM-ENV-seedS).") var runDir: String?
    @Flag(help: "Replace an existing run in the run folder.") var overwrite = false
    @Flag(help: "No progress line.") var quiet = false

    @Option(help: "Network: mlp, gru or lstm.") var network: NetworkKind?
    @Option(help: "The critics' network when it differs from the actor's: mlp, gru or lstm (e.g. mlp critics over masac's global state beside recurrent actors; default: --network).") var criticNetwork: NetworkKind?
    @Option(parsing: .unconditional, help: "Recurrent layers per encoder.") var layers: Int?
    @Option(parsing: .unconditional, help: "Recurrent state width per layer.") var hidden: Int?
    @Option(parsing: .unconditional, help: "Hidden widths of the MLP heads, comma separated (e.g. 64,64; 'none' for a linear head).") var headHidden: String?
    @Option(help: "Activation of the heads: relu, tanh, elu.") var activation: Activation?
    @Option(parsing: .unconditional, help: "Encoder inputs: observation,lastAction,lastReward (any subset; masac adds agentID).") var context: String?

    @Option(parsing: .unconditional, help: "Trained steps per window, or 'full' for whole episodes.") var sequenceLength: String?
    @Option(parsing: .unconditional, help: "Burn-in slots at the start of each window (no loss, no gradient).") var burnIn: Int?
    @Option(help: "Initial state of a window: zero, stored, stored+burnIn.") var initialState: InitialStateMode?
    @Flag(inversion: .prefixedNo, help: "Random window lengths: L with the nominal probability, else uniform in [1, L-1].") var randomLength: Bool?
    @Option(parsing: .unconditional, help: "Probability of the nominal length with --random-length.") var nominalLengthProbability: Float?
    @Flag(inversion: .prefixedNo, help: "Windows start at the first step of an episode.") var startAtEpisodeStart: Bool?
    @Flag(inversion: .prefixedNo, help: "Target networks also see the step before the first trained one.") var includeFirstStepInTargets: Bool?
    @Flag(inversion: .prefixedNo, help: "Losses only at the last step of each window.") var maskNonFinal: Bool?
    @Flag(help: "Whole episodes packed several to a row of --sequence-length steps (RESeL's batches): none cut at a row's end, the rest of a row masked; zero initial states, no burn-in.") var packEpisodes = false
    @Option(parsing: .unconditional, help: "Truncated BPTT: cut the state gradient every k steps (0: off).") var truncation: Int?

    @Option(parsing: .unconditional, help: "Windows (or transitions) per batch.") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Replay capacity in steps.") var replayCapacity: Int?
    @Option(parsing: .unconditional, help: "Discount.") var gamma: Float?
    @Option(parsing: .unconditional, help: "Polyak rate of the targets.") var tau: Float?
    @Option(parsing: .unconditional, help: "Actor learning rate.") var actorLr: Float?
    @Option(parsing: .unconditional, help: "Critic learning rate.") var criticLr: Float?
    @Option(parsing: .unconditional, help: "Learning rate of the recurrent encoders (default: as their network).") var encoderLr: Float?
    @Option(parsing: .unconditional, help: "SAC temperature learning rate.") var temperatureLr: Float?
    @Option(parsing: .unconditional, help: "SAC initial temperature.") var initialTemperature: Float?
    @Flag(help: "Keep the SAC temperature fixed.") var fixedTemperature = false
    @Option(parsing: .unconditional, help: "SAC target entropy (default -action dimensions; 0.98 log n for n discrete actions).") var targetEntropy: Float?
    @Option(parsing: .unconditional, help: "Number of critics (the target takes their minimum).") var critics: Int?
    @Option(parsing: .unconditional, help: "Environment steps per critic update.") var criticInterval: Int?
    @Option(parsing: .unconditional, help: "Actor-learner training under mpirun: environment passes an actor rank makes per message to the learner (default 1).") var actorSteps: Int?
    @Option(parsing: .unconditional, help: "Actor-learner training under mpirun: learner updates between two weight sends to an actor (default 1).") var weightsInterval: Int?
    @Option(parsing: .unconditional, help: "Q-heads per critic on its one encoder (an ensemble; RESeL: --critics 1 --critic-heads 8).") var criticHeads: Int?
    @Option(parsing: .unconditional, help: "The target's minimum over this many Q-functions (critics × heads) drawn at random each update (REDQ, RESeL: 2; default all).") var targetSubset: Int?
    @Option(help: "What the SAC actor maximises over the Q-functions: minimum (the default) or mean (REDQ, RESeL).") var actorQ: ActorQ?
    @Flag(help: "Clamp bootstrap values to the range of the targets seen so far (RESeL's guard against diverging targets).") var clampTargets = false
    @Option(parsing: .unconditional, help: "Critic updates per actor update (TD3 default 2).") var actorInterval: Int?
    @Option(parsing: .unconditional, help: "Critic updates per target update (SAC).") var targetInterval: Int?
    @Option(parsing: .unconditional, help: "Clip each network's gradient norm (0: off).") var maxGradNorm: Float?
    @Option(parsing: .unconditional, help: "TD3 target smoothing noise.") var policyNoise: Float?
    @Option(parsing: .unconditional, help: "TD3 target noise clip.") var noiseClip: Float?
    @Option(parsing: .unconditional, help: "TD3 exploration noise.") var explorationNoise: Float?

    @Option(parsing: .unconditional, help: "Refreshed stored states: rewrite the replay's stored states with the current networks every k critic updates (0: never).") var refreshStored: Int?
    @Option(help: "MASAC: what the critics see: globalState (when the environment has one; the default), jointObservation, agentSpecific (the agent's own observation, then the global state), or independent (each agent's own context and action: independent learners).") var criticInput: CriticInput?
    @Option(help: "MASAC: the other agents' actions in the actor update: replay (the default) or currentPolicy.") var otherActions: OtherAgentsActions?
    @Flag(help: "MASAC: one actor network per agent (agents that differ) instead of one shared by all agents with their ids.") var actorPerAgent = false
    @Option(parsing: .unconditional, help: "VDN/QMIX: ε at the start of the ε-greedy schedule (default 1).") var epsilonStart: Float?
    @Option(parsing: .unconditional, help: "VDN/QMIX: ε at the end of the schedule (default 0.05).") var epsilonFinish: Float?
    @Option(parsing: .unconditional, help: "VDN/QMIX: environment steps over which ε falls linearly (default 50000).") var epsilonSteps: Int?
    @Option(parsing: .unconditional, help: "VDN/QMIX: TD(λ) returns with this λ (default: one-step or --n-step returns).") var lambda: Float?
    @Option(parsing: .unconditional, help: "VDN/QMIX: n-step returns (default 1).") var nStep: Int?
    @Flag(inversion: .prefixedNo, help: "VDN/QMIX: double Q-learning (the online networks choose the next actions; default on).") var doubleQ: Bool?
    @Option(parsing: .unconditional, help: "QMIX: width of the mixing layer (default 32).") var mixingEmbed: Int?
    @Option(parsing: .unconditional, help: "QMIX: hidden width of the hypernetworks (default 64).") var hypernetEmbed: Int?
    @Flag(help: "Treat time-outs as terminal (no bootstrap from the last observation), the convention of many multi-agent benchmarks; by default a truncated episode bootstraps, which is correct.") var timeLimitsTerminal = false
    @Option(help: "MASAC with --envs: resetEachCopy (a copy restarts when its episode ends; the default) or resetTogether (finished copies wait, masked, until all have ended).") var resetMode: MultiAgentVectorEnvironment.ResetMode?

    @Option(parsing: .unconditional, help: "Random-action steps before updates start.") var warmup: Int?
    @Option(parsing: .unconditional, help: "Evaluate every this many steps.") var evalInterval: Int?
    @Option(parsing: .unconditional, help: "Deterministic evaluation episodes.") var evalEpisodes: Int?
    @Option(parsing: .unconditional, help: "Memory task: probes per evaluation.") var probes: Int?

    @OptionGroup(title: "PPO options") var ppoOptions: PPOOptions

    /// The options given besides --steps, --checkpoint-interval and --quiet (refused with --resume).
    var runOptionsGiven: [String] {
        let given: [(String, Bool)] = [
            ("ALGORITHM", algorithm != nil), ("--config", config != nil), ("--env", env != nil), ("--seed", seed != nil),
            ("--run-dir", runDir != nil), ("--overwrite", overwrite), ("--env-module", !envModule.isEmpty), ("--env-option", !envOption.isEmpty), ("--network", network != nil), ("--layers", layers != nil),
            ("--hidden", hidden != nil), ("--head-hidden", headHidden != nil), ("--activation", activation != nil),
            ("--context", context != nil), ("--truncation", truncation != nil), ("--gamma", gamma != nil),
            ("--max-grad-norm", maxGradNorm != nil), ("--eval-interval", evalInterval != nil), ("--eval-episodes", evalEpisodes != nil),
            ("--time-limits-terminal", timeLimitsTerminal), ("--encoder-lr", encoderLr != nil),
        ]
        return given.filter(\.1).map(\.0) + offPolicyOnlyOptionsGiven + ppoOptions.given
    }

    /// The off-policy options that were given (by flag name), to refuse them with ppo.
    var offPolicyOnlyOptionsGiven: [String] {
        let given: [(String, Bool)] = [
            ("--sequence-length", sequenceLength != nil), ("--burn-in", burnIn != nil), ("--initial-state", initialState != nil),
            ("--random-length", randomLength != nil), ("--nominal-length-probability", nominalLengthProbability != nil),
            ("--start-at-episode-start", startAtEpisodeStart != nil), ("--include-first-step-in-targets", includeFirstStepInTargets != nil),
            ("--mask-non-final", maskNonFinal != nil), ("--pack-episodes", packEpisodes), ("--batch-size", batchSize != nil), ("--replay-capacity", replayCapacity != nil),
            ("--tau", tau != nil), ("--actor-lr", actorLr != nil), ("--critic-lr", criticLr != nil),
            ("--temperature-lr", temperatureLr != nil), ("--initial-temperature", initialTemperature != nil),
            ("--fixed-temperature", fixedTemperature), ("--target-entropy", targetEntropy != nil), ("--critics", critics != nil),
            ("--critic-interval", criticInterval != nil), ("--actor-interval", actorInterval != nil),
            ("--actor-steps", actorSteps != nil), ("--weights-interval", weightsInterval != nil),
            ("--critic-heads", criticHeads != nil), ("--target-subset", targetSubset != nil), ("--actor-q", actorQ != nil),
            ("--clamp-targets", clampTargets),
            ("--target-interval", targetInterval != nil), ("--policy-noise", policyNoise != nil), ("--noise-clip", noiseClip != nil),
            ("--exploration-noise", explorationNoise != nil), ("--warmup", warmup != nil), ("--probes", probes != nil),
            ("--critic-network", criticNetwork != nil), ("--critic-input", criticInput != nil), ("--other-actions", otherActions != nil), ("--reset-mode", resetMode != nil),
            ("--refresh-stored", refreshStored != nil), ("--actor-per-agent", actorPerAgent),
            ("--epsilon-start", epsilonStart != nil), ("--epsilon-finish", epsilonFinish != nil), ("--epsilon-steps", epsilonSteps != nil),
            ("--lambda", lambda != nil), ("--n-step", nStep != nil), ("--double-q", doubleQ != nil), ("--mixing-embed", mixingEmbed != nil),
            ("--hypernet-embed", hypernetEmbed != nil), ("--preset", preset.map { $0.algorithm != "ppo" } ?? false),
        ]
        return given.filter(\.1).map(\.0)
    }

    /// The whole configuration: the defaults of the algorithm and environment, the preset's recipe,
    /// the config file's keys, then the options given; an option given that does not apply to the
    /// run is an error (`OptionScope` decides).
    func resolvedRunConfiguration() throws -> RunConfiguration {
        let base = try config.map { path in
            try ConfigurationFile.load(path: path, algorithm: algorithm?.rawValue, presetting: preset == nil ? nil : { run in
                // The command line's environment first: a recipe can depend on it.
                switch run {
                case .offPolicy(var c): try applyEnvironment(to: &c); try applyPreset(to: &c); run = .offPolicy(c)
                case .ppo(var c): try applyEnvironment(to: &c); try applyPreset(to: &c); run = .ppo(c)
                }
            })
        }
        let resolved: RunConfiguration
        switch base {
        case .ppo(let c)?: resolved = .ppo(try resolvedPPOConfiguration(base: c))
        case .offPolicy(let c)?: resolved = .offPolicy(try resolvedConfiguration(base: c))
        case nil: resolved = algorithm?.isPPO == true ? .ppo(try resolvedPPOConfiguration(base: nil)) : .offPolicy(try resolvedConfiguration(base: nil))
        }
        let isPPO = PPOTrainingConfiguration.algorithms.contains(resolved.algorithm)
        let given = runOptionsGiven.compactMap { flag -> (key: String, name: String)? in
            guard let keys = Train.optionKeys[flag], let key = isPPO ? keys.ppo : keys.offPolicy else { return nil }
            return (key, flag)
        }
        try OptionScope.check(resolved, given: given)
        return resolved
    }

    /// The configuration-file keys of the options whose scope `OptionScope` limits (off-policy, PPO).
    static let optionKeys: [String: (offPolicy: String?, ppo: String?)] = [
        "--policy-noise": ("agent.policyNoise", nil), "--noise-clip": ("agent.noiseClip", nil),
        "--exploration-noise": ("agent.explorationNoise", nil), "--fixed-temperature": ("agent.learnTemperature", nil),
        "--target-entropy": ("agent.targetEntropy", nil), "--temperature-lr": ("agent.temperatureLearningRate", nil),
        "--initial-temperature": ("agent.initialTemperature", nil), "--target-interval": ("agent.targetUpdateInterval", nil),
        "--encoder-lr": ("agent.encoderLearningRate", "ppo.encoderLearningRate"), "--burn-in": ("agent.sampler.burnIn", nil),
        "--initial-state": ("agent.sampler.initialState", nil), "--probes": ("probes", nil),
        "--truncation": ("agent.truncation", "ppo.truncation"), "--layers": ("agent.recurrentLayers", "ppo.recurrentLayers"),
        "--hidden": ("agent.hiddenSize", "ppo.hiddenSize"), "--refresh": (nil, "ppo.refreshStates"),
        "--shared-reward": (nil, "ppo.sharedReward"),
        "--refresh-interval": (nil, "ppo.refreshInterval"), "--refresh-advantages": (nil, "ppo.refreshAdvantages"), "--initial-log-std": (nil, "ppo.initialLogStd"),
        "--refresh-stored": ("agent.refreshStoredStatesInterval", nil), "--critic-lr": ("agent.criticLearningRate", nil),
        "--critics": ("agent.criticCount", nil), "--critic-network": ("agent.criticNetwork", nil), "--critic-heads": ("agent.criticHeads", nil), "--target-subset": ("agent.targetSubset", nil),
        "--actor-q": ("agent.actorQ", nil), "--clamp-targets": ("agent.clampTargets", nil), "--actor-interval": ("agent.actorUpdateInterval", nil),
        "--epsilon-start": ("agent.valueDecomposition.epsilonStart", nil), "--epsilon-finish": ("agent.valueDecomposition.epsilonFinish", nil),
        "--epsilon-steps": ("agent.valueDecomposition.epsilonAnnealSteps", nil), "--lambda": ("agent.valueDecomposition.lambda", nil),
        "--n-step": ("agent.valueDecomposition.nSteps", nil), "--double-q": ("agent.valueDecomposition.doubleQ", nil),
        "--mixing-embed": ("agent.valueDecomposition.mixingEmbed", nil), "--hypernet-embed": ("agent.valueDecomposition.hypernetEmbed", nil), "--critic-input": ("agent.criticInput", nil), "--other-actions": ("agent.otherAgentsActions", nil), "--actor-per-agent": ("agent.actorPerAgent", nil), "--reset-mode": ("resetMode", nil),
    ]

    /// The command line's environment, options and modules, checked.
    func applyEnvironment(to c: inout some EnvironmentConfiguring) throws {
        if let env { c.environment = env }
        if !envModule.isEmpty { c.environmentModules = envModule }
        if !envOption.isEmpty { c.environmentOptions = try parsedEnvironmentOptions() }
        try c.environmentSpec.validate()
    }

    /// `--preset`'s recipe over `c` (the defaults, with the command line's environment already
    /// applied: a recipe can depend on it).
    func applyPreset(to c: inout OffPolicyConfiguration) throws {
        guard let preset else { return }
        guard preset.algorithm == "sac" else {
            throw ConfigurationError("--preset \(preset.rawValue) is a PPO recipe: use `rrl train ppo --preset \(preset.rawValue)`")
        }
        guard (algorithm?.offPolicy ?? .sac) == .sac, c.agent.algorithm == .sac else {
            throw ConfigurationError("--preset \(preset.rawValue) is a SAC recipe: use `rrl train sac --preset \(preset.rawValue)`")
        }
        c.applyRESeL(episodeLimit: try episodeLimit(of: c))
    }

    func applyPreset(to c: inout PPOTrainingConfiguration) throws {
        guard let preset else { return }
        guard preset.algorithm == c.algorithm else {
            throw ConfigurationError("--preset \(preset.rawValue) is a single-agent PPO recipe: use `rrl train ppo --preset \(preset.rawValue)`")
        }
        c.ppo.applyRLZoo()
    }

    /// The off-policy configuration: `base` (or the defaults for the algorithm and environment), then the options given.
    func resolvedConfiguration(base: OffPolicyConfiguration?) throws -> OffPolicyConfiguration {
        let ppoGiven = ppoOptions.given.filter { $0 != "--envs" }
        if !ppoGiven.isEmpty {
            throw ConfigurationError("\(ppoGiven.joined(separator: ", ")) \(ppoGiven.count == 1 ? "applies" : "apply") only to ppo; remove \(ppoGiven.count == 1 ? "it" : "them"), or train with `rrl train ppo`")
        }
        let offPolicyAlgorithm = algorithm?.offPolicy ?? .sac
        var c = base ?? OffPolicyConfiguration.defaults(algorithm: offPolicyAlgorithm, environment: env ?? (offPolicyAlgorithm.isMultiAgent ? "team-recall" : "memory"))
        try applyEnvironment(to: &c)
        // With a config file the preset was applied under it (its settings win); else here.
        if base == nil { try applyPreset(to: &c) }
        if let seed { c.seed = seed }
        if let checkpointInterval { c.checkpointInterval = checkpointInterval }
        if c.checkpointInterval == nil { c.checkpointInterval = 25_000 }
        if let steps { c.steps = steps }
        if let network {
            c.agent.network = network
            if network == .mlp {
                c.agent.useMLP()
            } else if c.agent.sampler.sequenceLength == 1 {
                // Switching a classic-control default to a recurrent network (the recipe that
                // solves pendulum-velocity): windows of 48 slots whose first 16 warm up the
                // stored state (R2D2), batch 16, GRU/LSTM 32, heads of 64, and the previous
                // action and reward in the context (as pomdp-baselines).
                c.agent.sampler.sequenceLength = 48
                c.agent.sampler.burnIn = 16
                c.agent.sampler.initialState = .storedBurnIn
                c.agent.batchSize = 16
                c.agent.hiddenSize = 32
                c.agent.headHiddenSizes = [64]
                c.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
            }
        }
        if let criticNetwork { c.agent.criticNetwork = criticNetwork }
        if let layers { c.agent.recurrentLayers = layers }
        if let hidden { c.agent.hiddenSize = hidden }
        if let headHidden { c.agent.headHiddenSizes = try parseHeadHidden(headHidden) }
        if let activation { c.agent.activation = activation }
        if let context { c.agent.context = try ContextInputs(parsing: context) }
        if let sequenceLength {
            if sequenceLength == "full" {
                c.agent.sampler.sequenceLength = try episodeLimit(of: c)
                c.agent.sampler.alwaysStartAtEpisodeStart = true
            } else if let L = Int(sequenceLength) {
                c.agent.sampler.sequenceLength = L
                // Whole episodes (MASAC's, VDN's and QMIX's default) start where the episodes do; shorter
                // windows start anywhere, or the episodes' later steps would never be trained.
                if c.agent.sampler.alwaysStartAtEpisodeStart, L < ((try? episodeLimit(of: c)) ?? Int.max) {
                    c.agent.sampler.alwaysStartAtEpisodeStart = false
                }
            } else {
                throw ConfigurationError("--sequence-length expects a number of steps or 'full'; got '\(sequenceLength)'")
            }
        } else if base == nil && offPolicyAlgorithm.isMultiAgent && c.agent.network != .mlp, let limit = try? episodeLimit(of: c) {
            // MASAC's (VDN's, QMIX's) default strategy is whole episodes: windows as long as the environment's
            // episodes with the options given (25 when a Python environment registers no limit).
            c.agent.sampler.sequenceLength = limit
        }
        if let burnIn { c.agent.sampler.burnIn = burnIn }
        if sequenceLength != nil, burnIn == nil, c.agent.sampler.burnIn > 0, c.agent.sampler.burnIn >= c.agent.sampler.sequenceLength {
            let L = c.agent.sampler.sequenceLength, B = c.agent.sampler.burnIn
            throw ConfigurationError("--sequence-length \(L) leaves no trained slot after the recurrent recipe's burn-in of \(B) slots: "
                + "also pass --burn-in with fewer than \(L) slots (for example --burn-in \(L / 3)), or a longer --sequence-length")
        }
        if let initialState { c.agent.sampler.initialState = initialState }
        if let randomLength { c.agent.sampler.randomSequenceLength = randomLength }
        if let nominalLengthProbability { c.agent.sampler.nominalLengthProbability = nominalLengthProbability }
        if let startAtEpisodeStart { c.agent.sampler.alwaysStartAtEpisodeStart = startAtEpisodeStart }
        if let includeFirstStepInTargets { c.agent.sampler.includeFirstStepInTargets = includeFirstStepInTargets }
        if let maskNonFinal { c.agent.sampler.maskNonFinal = maskNonFinal }
        if packEpisodes { c.agent.sampler.packEpisodes = true }
        if let truncation { c.agent.truncation = truncation }
        if let refreshStored { c.agent.refreshStoredStatesInterval = refreshStored }
        if let criticInput { c.agent.criticInput = criticInput }
        if actorPerAgent { c.agent.actorPerAgent = true }
        if let otherActions { c.agent.otherAgentsActions = otherActions }
        if let resetMode { c.resetMode = resetMode }
        if let batchSize { c.agent.batchSize = batchSize }
        if let replayCapacity { c.agent.replayCapacity = replayCapacity }
        if let gamma { c.agent.gamma = gamma }
        if let tau { c.agent.tau = tau }
        if let actorLr { c.agent.actorLearningRate = actorLr }
        if let criticLr { c.agent.criticLearningRate = criticLr }
        if let encoderLr { c.agent.encoderLearningRate = encoderLr }
        if let temperatureLr { c.agent.temperatureLearningRate = temperatureLr }
        if let initialTemperature { c.agent.initialTemperature = initialTemperature }
        if fixedTemperature { c.agent.learnTemperature = false }
        if let targetEntropy { c.agent.targetEntropy = targetEntropy }
        if let critics { c.agent.criticCount = critics }
        if let criticHeads { c.agent.criticHeads = criticHeads }
        if let targetSubset { c.agent.targetSubset = targetSubset }
        if let actorQ { c.agent.actorQ = actorQ }
        if clampTargets { c.agent.clampTargets = true }
        if let criticInterval { c.agent.criticUpdateInterval = criticInterval }
        if let actorSteps { c.actorSteps = actorSteps }
        if let weightsInterval { c.weightsInterval = weightsInterval }
        if let actorInterval { c.agent.actorUpdateInterval = actorInterval }
        if let targetInterval { c.agent.targetUpdateInterval = targetInterval }
        if let maxGradNorm { c.agent.maxGradientNorm = maxGradNorm }
        if let policyNoise { c.agent.policyNoise = policyNoise }
        if let noiseClip { c.agent.noiseClip = noiseClip }
        if let explorationNoise { c.agent.explorationNoise = explorationNoise }
        if let envs = ppoOptions.envs { c.environments = envs }
        if timeLimitsTerminal { c.agent.sampler.timeLimitsTerminal = true }
        func setValueDecomposition(_ change: (inout ValueDecompositionConfiguration) -> Void) {
            var v = c.agent.valueDecompositionOptions
            change(&v)
            c.agent.valueDecomposition = v
        }
        if let epsilonStart { setValueDecomposition { $0.epsilonStart = epsilonStart } }
        if let epsilonFinish { setValueDecomposition { $0.epsilonFinish = epsilonFinish } }
        if let epsilonSteps { setValueDecomposition { $0.epsilonAnnealSteps = epsilonSteps } }
        if let lambda { setValueDecomposition { $0.lambda = lambda } }
        if let nStep { setValueDecomposition { $0.nSteps = nStep } }
        if let doubleQ { setValueDecomposition { $0.doubleQ = doubleQ } }
        if let mixingEmbed { setValueDecomposition { $0.mixingEmbed = mixingEmbed } }
        if let hypernetEmbed { setValueDecomposition { $0.hypernetEmbed = hypernetEmbed } }
        if let warmup { c.warmupSteps = warmup }
        if let evalInterval { c.evaluationInterval = evalInterval }
        if let evalEpisodes { c.evaluationEpisodes = evalEpisodes }
        if let probes { c.probes = probes }
        try c.validate()
        return c
    }

    func run() throws {
        // Under mpirun with several ranks: data-parallel training, rank 0 writing and printing.
        let ranks = try asUsageError(mpiRanks)
        if let resume {
            try runResumed(resume, ranks: ranks)
        } else {
            try runNew(ranks: ranks)
        }
        MPIWorld.finish()
    }

    /// The MPI world when an MPI launcher started this process with several ranks (nil: one process).
    func mpiRanks() throws -> (any Communicator)? {
        guard let launched = MPIWorld.launchedSize else { return nil }
        guard MPIWorld.isCompiled else {
            if launched > 1 {
                throw ConfigurationError("mpirun started \(launched) ranks, but this rrl was built without MPI, so each would train alone: build it with the MPI trait (apt-get install libopenmpi-dev openmpi-bin; swift build -c release --traits MPI) and run that build's .build/release/rrl under mpirun")
            }
            return nil
        }
        do {
            let world = try MPIWorld.start()
            return world.size > 1 ? world : nil
        } catch let error as CommunicatorError {
            throw ConfigurationError(error.message)
        }
    }

    func runNew(ranks: (any Communicator)?) throws {
        let configuration = try asUsageError(resolvedRunConfiguration)
        let path = runDir ?? "runs/\(configuration.algorithm)-\(configuration.environment)-seed\(configuration.seed)"
        let run = try asUsageError { try TrainingRun(configuration: configuration, path: path, overwrite: overwrite, ranks: ranks) }
        if let ranks, ranks.rank > 0 { return try train(run) }
        if let ranks {
            if case .offPolicy = configuration {
                print("actor-learner over \(ranks.size) MPI ranks: rank 0 learns (the replay, the updates) and writes the run folder, \(ranks.size - 1) actor rank\(ranks.size > 2 ? "s" : "") act with their own environment copies")
            } else {
                print("data-parallel over \(ranks.size) MPI ranks, each with its own environment copies; rank 0 writes the run folder")
            }
        }
        switch configuration {
        case .offPolicy(let c):
            let a = c.agent
            print("training \(a.algorithm.rawValue) (\(a.network.rawValue)\(a.criticNetworkKind != a.network ? ", \(a.criticNetworkKind.rawValue) critics" : "")) on \(c.environment) for \(c.steps) steps, seed \(c.seed); run folder \(run.folder.url.path)")
        case .ppo(let c):
            let p = c.ppo
            print("training \(c.algorithm) (\(p.network.rawValue)\(p.sharedEncoder ? ", shared encoder" : "")\(p.refreshStates ? ", refreshing states" : "")) on \(c.environment) for \(c.steps) steps with \(p.environments) copies, seed \(c.seed); run folder \(run.folder.url.path)")
        }
        try train(run)
    }

    /// `--resume DIR`: the run's own configuration, its last checkpoint, its metrics up to that point.
    func runResumed(_ path: String, ranks: (any Communicator)?) throws {
        let other = runOptionsGiven
        if !other.isEmpty {
            throw ValidationError("--resume continues a run with its own configuration (\(path)/config.json); \(other.joined(separator: ", ")) cannot be given with it (only --steps, --checkpoint-interval and --quiet can). To change the configuration, start a new run with --config \(path)/config.json")
        }
        let run = try asUsageError { try TrainingRun(resuming: path, steps: steps, checkpointInterval: checkpointInterval, ranks: ranks) }
        let session = run.session
        if session.step >= session.totalSteps {
            try run.train(handleSignals: false)
            guard run.writesFolder else { return }
            print("the run in \(path) had already reached its \(session.totalSteps) steps; wrote its weights to \(run.folder.weightsURL.path)")
            return
        }
        if !run.writesFolder { return try train(run) }
        print("resuming \(run.configuration.algorithm) on \(run.configuration.environment) in \(run.folder.url.path) from step \(session.step) of \(session.totalSteps) (checkpoint \(run.resumedFrom ?? "?"))")
        try train(run)
    }

    /// Trains to the end (the library's `TrainingRun`), printing progress, then a summary.
    func train(_ run: TrainingRun) throws {
        if run.writesFolder { for note in run.notes { print("note: \(note)") } }
        let display = ProgressDisplay(quiet: quiet || !run.writesFolder)
        let outcome: TrainingRun.Outcome
        do {
            outcome = try run.train(onRow: display.row, onProgress: display.progress)
        } catch let failure as RunFailure {
            display.finish()
            FileHandle.standardError.write(Data("error: \(failure)\n".utf8))
            throw ExitCode.failure
        }
        display.finish()
        let folder = run.folder
        guard run.writesFolder else {
            if case .interrupted(let signal, _) = outcome { throw ExitCode(128 + signal) }
            return
        }
        switch outcome {
        case .interrupted(let signal, let step):
            let name = signal == SIGINT ? "interrupted (Ctrl-C)" : signal == SIGHUP ? "stopped by SIGHUP (terminal closed)" : "stopped by SIGTERM"
            print("\(name) at step \(step); checkpoint written to \(folder.checkpointsURL.path) and the current weights to \(folder.weightsURL.path); continue with `rrl train --resume \(folder.url.path)`")
            throw ExitCode(128 + signal)
        case .finished(let last):
            if let last {
                var summary = "final evaluation return \(String(format: "%.2f", last["eval_return_mean"] ?? .nan)) ± \(String(format: "%.2f", last["eval_return_std"] ?? .nan))"
                if let p = last["probe_accuracy"], !p.isNaN { summary += ", probe accuracy \(String(format: "%.2f", p))" }
                summary += " after \(run.session.step) steps in \(formatDuration(last["wall_seconds"] ?? 0))"
                print(summary)
            }
            print("wrote \(folder.configurationURL.path), \(folder.metricsURL.path), TensorBoard events, \(folder.checkpointsURL.path)/, \(folder.weightsURL.path)")
        }
    }
}

extension Train {
    /// `--env-option KEY=VALUE` options as a dictionary.
    func parsedEnvironmentOptions() throws -> [String: String] {
        var options: [String: String] = [:]
        for text in envOption {
            guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
                throw ConfigurationError("--env-option expects KEY=VALUE (e.g. horizon=6); got '\(text)'")
            }
            let key = String(text[..<equals])
            if options[key] != nil { throw ConfigurationError("--env-option \(key) is given twice") }
            options[key] = String(text[text.index(after: equals)...])
        }
        return options
    }
}

/// Runs `body`, turning a bad option or environment name into a usage error (exit code 64, the
/// message first).
func asUsageError<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConfigurationError {
        throw ValidationError(error.message)
    } catch let error as EnvironmentError {
        throw ValidationError(error.description)
    }
}

/// The progress line on a terminal (rewritten in place), or one line per metrics row otherwise.
final class ProgressDisplay {
    let interactive = isatty(2) != 0
    let quiet: Bool
    var lastLength = 0

    init(quiet: Bool) { self.quiet = quiet }

    func row(_ row: MetricsRow) {
        guard !interactive && !quiet else { return }
        var line = "step \(Int(row["step"] ?? 0))  eval \(String(format: "%.2f", row["eval_return_mean"] ?? .nan))"
        if let p = row["probe_accuracy"], !p.isNaN { line += "  probe \(String(format: "%.2f", p))" }
        print(line)
    }

    func progress(_ p: Training.Progress) {
        guard interactive && !quiet else { return }
        var line = "step \(p.step)/\(p.totalSteps)  \(Int(p.stepsPerSecond)) steps/s"
        if let e = p.lastEvaluation { line += "  eval \(String(format: "%.2f", e))" }
        if let q = p.lastProbe { line += "  probe \(String(format: "%.2f", q))" }
        line += "  left \(formatDuration(p.secondsLeft))"
        let padded = line + String(repeating: " ", count: max(0, lastLength - line.count))
        lastLength = line.count
        FileHandle.standardError.write(Data(("\r" + padded).utf8))
    }

    func finish() {
        if interactive && !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
    if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    return "\(s)s"
}

/// The episode length limit of a run's environment (for `--sequence-length full`): a built-in
/// environment's, or the time limit a Python one registers (asked of a one-copy bridge).
func episodeLimit(of c: OffPolicyConfiguration) throws -> Int {
    guard c.environmentSpec.isPython else { return try c.environmentSpec.makeMultiAgent().maxEpisodeSteps }
    // A multi-agent bridge takes the name with its prefix (gym: or pz:), a single-agent one the Gymnasium id.
    let bridge = try PythonBridge(environment: c.isMultiAgent ? c.environment : String(c.environment.dropFirst(4)), count: 1,
                                  multiAgent: c.isMultiAgent, options: c.environmentSpec.bridgeOptions)
    guard bridge.maxEpisodeSteps > 0 else {
        throw ConfigurationError("\(c.environment) registers no time limit, so 'full' sequences have no length; give --sequence-length N")
    }
    return bridge.maxEpisodeSteps
}
