import ArgumentParser
import Foundation
import RecurrentRL

extension OffPolicyAlgorithm: ExpressibleByArgument {}

/// The algorithms `rrl train` runs.
enum TrainAlgorithm: String, CaseIterable, ExpressibleByArgument {
    case sac, td3, ppo
}
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
        option that does not apply to the chosen algorithm is an error.
        """
    )

    @Argument(help: "Algorithm: sac (continuous or discrete actions), td3, or ppo (recurrent PPO).") var algorithm: TrainAlgorithm = .sac

    @Option(help: "Environment (see `rrl list`; default memory, cartpole-position for ppo).") var env: String?
    @Option(help: "Environment steps.") var steps: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Run folder (default runs/ALGORITHM-ENV-seedS).") var runDir: String?
    @Flag(help: "Replace an existing run in the run folder.") var overwrite = false
    @Flag(help: "No progress line.") var quiet = false

    @Option(help: "Network: mlp, gru or lstm.") var network: NetworkKind?
    @Option(help: "Recurrent layers per encoder.") var layers: Int?
    @Option(help: "Recurrent state width per layer.") var hidden: Int?
    @Option(help: "Hidden widths of the MLP heads, comma separated (e.g. 64,64; 'none' for a linear head).") var headHidden: String?
    @Option(help: "Activation of the heads: relu, tanh, elu.") var activation: Activation?
    @Option(help: "Encoder inputs: observation,lastAction,lastReward (any subset).") var context: String?

    @Option(help: "Trained steps per window, or 'full' for whole episodes.") var sequenceLength: String?
    @Option(help: "Burn-in slots at the start of each window (no loss, no gradient).") var burnIn: Int?
    @Option(help: "Initial state of a window: zero, stored, stored+burnIn.") var initialState: InitialStateMode?
    @Flag(inversion: .prefixedNo, help: "Random window lengths: L with the nominal probability, else uniform in [1, L-1].") var randomLength: Bool?
    @Option(help: "Probability of the nominal length with --random-length.") var nominalLengthProbability: Float?
    @Flag(inversion: .prefixedNo, help: "Windows start at the first step of an episode.") var startAtEpisodeStart: Bool?
    @Flag(inversion: .prefixedNo, help: "Target networks also see the step before the first trained one.") var includeFirstStepInTargets: Bool?
    @Flag(inversion: .prefixedNo, help: "Losses only at the last step of each window.") var maskNonFinal: Bool?
    @Option(help: "Truncated BPTT: cut the state gradient every k steps (0: off).") var truncation: Int?

    @Option(help: "Windows (or transitions) per batch.") var batchSize: Int?
    @Option(help: "Replay capacity in steps.") var replayCapacity: Int?
    @Option(help: "Discount.") var gamma: Float?
    @Option(help: "Polyak rate of the targets.") var tau: Float?
    @Option(help: "Actor learning rate.") var actorLr: Float?
    @Option(help: "Critic learning rate.") var criticLr: Float?
    @Option(help: "Learning rate of the recurrent encoders (default: as their network).") var encoderLr: Float?
    @Option(help: "SAC temperature learning rate.") var temperatureLr: Float?
    @Option(help: "SAC initial temperature.") var initialTemperature: Float?
    @Flag(help: "Keep the SAC temperature fixed.") var fixedTemperature = false
    @Option(help: "SAC target entropy (default -action dimensions; 0.98 log n for n discrete actions).") var targetEntropy: Float?
    @Option(help: "Number of critics (the target takes their minimum).") var critics: Int?
    @Option(help: "Environment steps per critic update.") var criticInterval: Int?
    @Option(help: "Critic updates per actor update (TD3 default 2).") var actorInterval: Int?
    @Option(help: "Critic updates per target update (SAC).") var targetInterval: Int?
    @Option(help: "Clip each network's gradient norm (0: off).") var maxGradNorm: Float?
    @Option(help: "TD3 target smoothing noise.") var policyNoise: Float?
    @Option(help: "TD3 target noise clip.") var noiseClip: Float?
    @Option(help: "TD3 exploration noise.") var explorationNoise: Float?

    @Option(help: "Random-action steps before updates start.") var warmup: Int?
    @Option(help: "Evaluate every this many steps.") var evalInterval: Int?
    @Option(help: "Deterministic evaluation episodes.") var evalEpisodes: Int?
    @Option(help: "Memory task: probes per evaluation.") var probes: Int?

    @OptionGroup(title: "PPO options") var ppoOptions: PPOOptions

    var offPolicyAlgorithm: OffPolicyAlgorithm { algorithm == .td3 ? .td3 : .sac }
    var environmentName: String { env ?? (algorithm == .ppo ? "cartpole-position" : "memory") }

    /// The off-policy options that were given (by flag name), to refuse them with ppo.
    var offPolicyOnlyOptionsGiven: [String] {
        let given: [(String, Bool)] = [
            ("--sequence-length", sequenceLength != nil), ("--burn-in", burnIn != nil), ("--initial-state", initialState != nil),
            ("--random-length", randomLength != nil), ("--nominal-length-probability", nominalLengthProbability != nil),
            ("--start-at-episode-start", startAtEpisodeStart != nil), ("--include-first-step-in-targets", includeFirstStepInTargets != nil),
            ("--mask-non-final", maskNonFinal != nil), ("--batch-size", batchSize != nil), ("--replay-capacity", replayCapacity != nil),
            ("--tau", tau != nil), ("--actor-lr", actorLr != nil), ("--critic-lr", criticLr != nil), ("--encoder-lr", encoderLr != nil),
            ("--temperature-lr", temperatureLr != nil), ("--initial-temperature", initialTemperature != nil),
            ("--fixed-temperature", fixedTemperature), ("--target-entropy", targetEntropy != nil), ("--critics", critics != nil),
            ("--critic-interval", criticInterval != nil), ("--actor-interval", actorInterval != nil),
            ("--target-interval", targetInterval != nil), ("--policy-noise", policyNoise != nil), ("--noise-clip", noiseClip != nil),
            ("--exploration-noise", explorationNoise != nil), ("--warmup", warmup != nil), ("--probes", probes != nil),
        ]
        return given.filter(\.1).map(\.0)
    }

    /// The configuration: the defaults for the algorithm and environment, then the options given.
    func resolvedConfiguration() throws -> TrainingConfiguration {
        let env = environmentName
        let environment = try EnvironmentRegistry.make(env)
        let ppoGiven = ppoOptions.given
        if !ppoGiven.isEmpty {
            throw ConfigurationError("\(ppoGiven.joined(separator: ", ")) \(ppoGiven.count == 1 ? "applies" : "apply") only to ppo; remove \(ppoGiven.count == 1 ? "it" : "them"), or train with `rrl train ppo`")
        }
        let algorithm = offPolicyAlgorithm
        var c = TrainingConfiguration.defaults(algorithm: algorithm, environment: env)
        c.seed = seed
        if let steps { c.steps = steps }
        if let network {
            c.agent.network = network
            if network == .mlp {
                // An MLP agent learns from single transitions.
                c.agent.sampler.sequenceLength = 1
                c.agent.sampler.burnIn = 0
                c.agent.sampler.randomSequenceLength = false
                c.agent.sampler.initialState = .zero
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
        if let layers { c.agent.recurrentLayers = layers }
        if let hidden { c.agent.hiddenSize = hidden }
        if let headHidden { c.agent.headHiddenSizes = try parseHeadHidden(headHidden) }
        if let activation { c.agent.activation = activation }
        if let context { c.agent.context = try ContextInputs(parsing: context) }
        if let sequenceLength {
            if sequenceLength == "full" {
                c.agent.sampler.sequenceLength = environment.maxEpisodeSteps
                c.agent.sampler.alwaysStartAtEpisodeStart = true
            } else if let L = Int(sequenceLength) {
                c.agent.sampler.sequenceLength = L
            } else {
                throw ConfigurationError("--sequence-length expects a number of steps or 'full'; got '\(sequenceLength)'")
            }
        }
        if let burnIn { c.agent.sampler.burnIn = burnIn }
        if let initialState { c.agent.sampler.initialState = initialState }
        if let randomLength { c.agent.sampler.randomSequenceLength = randomLength }
        if let nominalLengthProbability { c.agent.sampler.nominalLengthProbability = nominalLengthProbability }
        if let startAtEpisodeStart { c.agent.sampler.alwaysStartAtEpisodeStart = startAtEpisodeStart }
        if let includeFirstStepInTargets { c.agent.sampler.includeFirstStepInTargets = includeFirstStepInTargets }
        if let maskNonFinal { c.agent.sampler.maskNonFinal = maskNonFinal }
        if let truncation { c.agent.truncation = truncation }
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
        if let criticInterval { c.agent.criticUpdateInterval = criticInterval }
        if let actorInterval { c.agent.actorUpdateInterval = actorInterval }
        if let targetInterval { c.agent.targetUpdateInterval = targetInterval }
        if let maxGradNorm { c.agent.maxGradientNorm = maxGradNorm }
        if let policyNoise { c.agent.policyNoise = policyNoise }
        if let noiseClip { c.agent.noiseClip = noiseClip }
        if let explorationNoise { c.agent.explorationNoise = explorationNoise }
        if let warmup { c.warmupSteps = warmup }
        if let evalInterval { c.evaluationInterval = evalInterval }
        if let evalEpisodes { c.evaluationEpisodes = evalEpisodes }
        if let probes { c.probes = probes }
        try c.validate()
        return c
    }

    func run() throws {
        if algorithm == .ppo { return try runPPO() }
        let env = environmentName
        let configuration = try asUsageError(resolvedConfiguration)
        let path = runDir ?? "runs/\(algorithm.rawValue)-\(env)-seed\(seed)"
        let folder = try RunFolder(path: path, overwrite: overwrite)
        try folder.writeConfiguration(configuration)
        try folder.startMetrics()
        let trainer = try Trainer(configuration: configuration)
        let a = configuration.agent
        print("training \(a.algorithm.rawValue) (\(a.network.rawValue)) on \(configuration.environment) for \(configuration.steps) steps, seed \(configuration.seed); run folder \(folder.url.path)")
        let display = ProgressDisplay(quiet: quiet)
        let rows = try trainer.run(onRow: { row in
            try folder.append(row)
            display.row(row)
        }, onProgress: display.progress)
        display.finish()
        try folder.writeWeights(trainer.agent.namedParameters(), metadata: [
            "algorithm": a.algorithm.rawValue, "network": a.network.rawValue, "environment": configuration.environment,
            "steps": "\(configuration.steps)", "seed": "\(configuration.seed)",
        ])
        if let last = rows.last {
            var summary = "final evaluation return \(String(format: "%.2f", last["eval_return_mean"] ?? .nan)) ± \(String(format: "%.2f", last["eval_return_std"] ?? .nan))"
            if let p = last["probe_accuracy"], !p.isNaN { summary += ", probe accuracy \(String(format: "%.2f", p))" }
            summary += " after \(configuration.steps) steps in \(formatDuration(last["wall_seconds"] ?? 0))"
            print(summary)
        }
        print("wrote \(folder.configurationURL.path), \(folder.metricsURL.path), \(folder.weightsURL.path)")
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
