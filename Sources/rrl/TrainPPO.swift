import ArgumentParser
import Foundation
import RecurrentRL

/// Options that only apply to `rrl train ppo`.
struct PPOOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Environment copies stepped in lockstep (ppo: default 8; sac/td3: default 1, actions for all copies in one pass, --critic-interval counts steps over all copies).") var envs: Int?
    @Option(parsing: .unconditional, help: "Steps per copy per rollout (default 32).") var rolloutSteps: Int?
    @Option(parsing: .unconditional, help: "Steps per minibatch, a multiple of the chunk length (default 256).") var minibatchSize: Int?
    @Option(parsing: .unconditional, help: "Chunk length L: rollout rows are cut into chunks of L steps that start from stored states (default 32).") var chunkLength: Int?
    @Option(parsing: .unconditional, help: "Passes over each rollout (default 20).") var epochs: Int?
    @Option(parsing: .unconditional, help: "Learning rate (default 1e-3).") var lr: Float?
    @Flag(inversion: .prefixedNo, help: "Anneal the learning rate linearly to 0 (default on).") var annealLr: Bool?
    @Option(parsing: .unconditional, help: "PPO clip range (default 0.2).") var clipRange: Float?
    @Flag(inversion: .prefixedNo, help: "Anneal the clip range linearly to 0 (default on).") var annealClip: Bool?
    @Option(parsing: .unconditional, help: "Clip value predictions to within this distance of the collected values (0: off, the default).") var valueClip: Float?
    @Option(parsing: .unconditional, help: "GAE lambda (default 0.8).") var gaeLambda: Float?
    @Option(parsing: .unconditional, help: "Entropy bonus coefficient (default 0).") var entropyCoef: Float?
    @Option(parsing: .unconditional, help: "Value loss coefficient (default 0.5).") var valueCoef: Float?
    @Flag(inversion: .prefixedNo, help: "Normalise advantages per minibatch (default on).") var normalizeAdvantages: Bool?
    @Flag(inversion: .prefixedNo, help: "Running normalisation of observations (default on; saved with the weights).") var normalizeObservations: Bool?
    @Flag(inversion: .prefixedNo, help: "Scale rewards by the running deviation of the discounted return (default on).") var normalizeRewards: Bool?
    @Option(parsing: .unconditional, help: "KL early stopping: stop the epochs when the approximate KL exceeds 1.5 x this (0: off, the default).") var targetKl: Float?
    @Option(parsing: .unconditional, help: "Hard KL limit: undo the last step and stop when the approximate KL exceeds it (0: off, the default).") var klHardLimit: Float?
    @Flag(inversion: .prefixedNo, help: "Hidden-state refreshing: re-run the recurrent networks over the rollout at each epoch start (default off, as sb3-contrib).") var refresh: Bool?
    @Option(parsing: .unconditional, help: "With --refresh: also refresh every k minibatches (0: epoch starts only).") var refreshInterval: Int?
    @Flag(inversion: .prefixedNo, help: "With --refresh: also recompute values, advantages and value targets with the current critic at each refresh (default on); --no-refresh-advantages rewrites the states only.") var refreshAdvantages: Bool?
    @Flag(help: "One recurrent encoder shared by actor and critic.") var sharedEncoder = false
    @Option(parsing: .unconditional, help: "Initial log standard deviation of the Gaussian policy (continuous actions; default 0).") var initialLogStd: Float?
    @Option(parsing: .unconditional, help: "Advantages: gae (GAE(lambda), the default) or lambda-return (the TD(lambda) return minus the value).") var advantages: AdvantageEstimator?
    @Flag(inversion: .prefixedNo, help: "ippo/mappo: every agent trains on the team's reward (default on); --no-shared-reward: on its own.") var sharedReward: Bool?

    /// The options that were given (by flag name).
    var given: [String] {
        let list: [(String, Bool)] = [
            ("--envs", envs != nil), ("--rollout-steps", rolloutSteps != nil), ("--minibatch-size", minibatchSize != nil),
            ("--chunk-length", chunkLength != nil), ("--epochs", epochs != nil), ("--lr", lr != nil), ("--anneal-lr", annealLr != nil),
            ("--clip-range", clipRange != nil), ("--anneal-clip", annealClip != nil), ("--value-clip", valueClip != nil),
            ("--gae-lambda", gaeLambda != nil), ("--entropy-coef", entropyCoef != nil), ("--value-coef", valueCoef != nil),
            ("--normalize-advantages", normalizeAdvantages != nil), ("--normalize-observations", normalizeObservations != nil),
            ("--normalize-rewards", normalizeRewards != nil), ("--target-kl", targetKl != nil), ("--kl-hard-limit", klHardLimit != nil),
            ("--refresh", refresh != nil), ("--refresh-interval", refreshInterval != nil), ("--refresh-advantages", refreshAdvantages != nil), ("--shared-encoder", sharedEncoder),
            ("--initial-log-std", initialLogStd != nil), ("--advantages", advantages != nil), ("--shared-reward", sharedReward != nil),
        ]
        return list.filter(\.1).map(\.0)
    }

    func apply(to p: inout PPOConfiguration) {
        if let envs { p.environments = envs }
        if let rolloutSteps { p.rolloutSteps = rolloutSteps }
        if let minibatchSize { p.minibatchSize = minibatchSize }
        if let chunkLength { p.chunkLength = chunkLength }
        if let epochs { p.epochs = epochs }
        if let lr { p.learningRate = lr }
        if let annealLr { p.annealLearningRate = annealLr }
        if let clipRange { p.clipRange = clipRange }
        if let annealClip { p.annealClipRange = annealClip }
        if let valueClip { p.valueClipRange = valueClip }
        if let gaeLambda { p.gaeLambda = gaeLambda }
        if let entropyCoef { p.entropyCoefficient = entropyCoef }
        if let valueCoef { p.valueCoefficient = valueCoef }
        if let normalizeAdvantages { p.normalizeAdvantages = normalizeAdvantages }
        if let normalizeObservations { p.normalizeObservations = normalizeObservations }
        if let normalizeRewards { p.normalizeRewards = normalizeRewards }
        if let targetKl { p.targetKL = targetKl }
        if let klHardLimit { p.klHardLimit = klHardLimit }
        if let refresh { p.refreshStates = refresh }
        if let refreshInterval { p.refreshInterval = refreshInterval }
        if let refreshAdvantages { p.refreshAdvantages = refreshAdvantages }
        if sharedEncoder { p.sharedEncoder = true }
        if let initialLogStd { p.initialLogStd = initialLogStd }
        if let advantages { p.advantageEstimator = advantages }
        if let sharedReward { p.sharedReward = sharedReward }
    }
}

extension AdvantageEstimator: ExpressibleByArgument {}

extension Train {
    /// PPO's configuration: `base` (or the defaults, rl-zoo's RecurrentPPO settings for CartPoleNoVel), then the options given.
    func resolvedPPOConfiguration(base: PPOTrainingConfiguration?) throws -> PPOTrainingConfiguration {
        let offPolicy = offPolicyOnlyOptionsGiven
        if !offPolicy.isEmpty {
            throw ConfigurationError("\(offPolicy.joined(separator: ", ")) \(offPolicy.count == 1 ? "does" : "do") not apply to \(algorithm?.rawValue ?? base?.algorithm ?? "ppo") (\(offPolicy.count == 1 ? "an off-policy option" : "off-policy options"): \(OffPolicyAlgorithm.names.joined(separator: ", "))); remove \(offPolicy.count == 1 ? "it" : "them"), or see `rrl train --help` for the PPO options")
        }
        var c = base ?? PPOTrainingConfiguration.defaults(environment: env ?? (algorithm == .ppo || algorithm == nil ? "cartpole-position" : "team-recall"),
                                                         algorithm: algorithm?.rawValue ?? "ppo")
        try applyEnvironment(to: &c)
        // With a config file the preset was applied under it (its settings win); else here.
        if base == nil { try applyPreset(to: &c) }
        if let seed { c.seed = seed }
        if let checkpointInterval { c.checkpointInterval = checkpointInterval }
        if c.checkpointInterval == nil { c.checkpointInterval = 25_000 }
        if let steps { c.steps = steps }
        if let network { c.ppo.network = network }
        if let layers { c.ppo.recurrentLayers = layers }
        if let hidden { c.ppo.hiddenSize = hidden }
        if let headHidden { c.ppo.headHiddenSizes = try parseHeadHidden(headHidden) }
        if let activation { c.ppo.activation = activation }
        if let context { c.ppo.context = try ContextInputs(parsing: context) }
        if let truncation { c.ppo.truncation = truncation }
        if let gamma { c.ppo.gamma = gamma }
        if let maxGradNorm { c.ppo.maxGradientNorm = maxGradNorm }
        if timeLimitsTerminal { c.ppo.timeLimitsTerminal = true }
        if let encoderLr { c.ppo.encoderLearningRate = encoderLr }
        if let evalInterval { c.evaluationInterval = evalInterval }
        if let evalEpisodes { c.evaluationEpisodes = evalEpisodes }
        ppoOptions.apply(to: &c.ppo)
        try c.validate()
        return c
    }
}

/// Parses `--head-hidden` (comma-separated widths, or 'none' for a linear head).
func parseHeadHidden(_ text: String) throws -> [Int] {
    if text == "none" { return [] }
    let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
        throw ConfigurationError("--head-hidden expects comma-separated integers such as 64,64 (or 'none'); got '\(text)'")
    }
    return parts.map { $0! }
}
