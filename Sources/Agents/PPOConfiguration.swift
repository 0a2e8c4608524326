import Collectives
import NeuralNetworks
import Replay

/// Every option of a recurrent PPO agent. The defaults are rl-zoo's settings for RecurrentPPO on
/// CartPoleNoVel (sb3-contrib): 8 environments, 32 steps each per rollout, minibatch 256, 20 epochs,
/// separate LSTM 64 encoders for actor and critic with heads of 64 (ReLU), lr 1e-3 and clip range
/// 0.2 both annealed linearly to 0, γ 0.98, λ 0.8, normalised observations and rewards.
public struct PPOConfiguration: Codable, Equatable, Sendable {
    public var network: NetworkKind = .lstm
    public var recurrentLayers = 1
    public var hiddenSize = 64
    public var headHiddenSizes: [Int] = [64]
    public var activation: Activation = .relu
    /// One encoder feeding both heads (else actor and critic each have their own).
    public var sharedEncoder = false
    public var context = ContextInputs()

    /// Environment copies stepped in lockstep.
    public var environments = 8
    /// Steps per copy per rollout.
    public var rolloutSteps = 32
    /// Steps per minibatch (a multiple of `chunkLength`: minibatchSize / chunkLength chunks).
    public var minibatchSize = 256
    /// L: chunk length. Each copy's rollout row is cut into chunks of L steps starting from a stored
    /// state; an episode end inside a chunk restarts the state from zeros (the chunk is cut there),
    /// and steps past the rollout's end are padding, masked out of every loss.
    public var chunkLength = 32
    public var epochs = 20

    public var learningRate: Float = 1e-3
    /// The recurrent encoders' learning rate (their own Adam group, annealed with the rest); nil: `learningRate`.
    public var encoderLearningRate: Float? = nil
    /// The rate of the encoders' own optimiser group: `encoderLearningRate` for a recurrent network
    /// when it differs from `learningRate` (else nil: one group; an MLP has no encoder).
    public var encoderGroupLearningRate: Float? {
        guard network != .mlp, let rate = encoderLearningRate, rate != learningRate else { return nil }
        return rate
    }
    /// Anneal the learning rate linearly to 0 over the run.
    public var annealLearningRate = true
    public var clipRange: Float = 0.2
    public var annealClipRange = true
    /// Clip the value prediction to within this distance of the collected value (0: off).
    public var valueClipRange: Float = 0
    public var gamma: Float = 0.98
    public var gaeLambda: Float = 0.8
    public var entropyCoefficient: Float = 0
    public var valueCoefficient: Float = 0.5
    /// Global gradient-norm clipping (0: off).
    public var maxGradientNorm: Float = 0.5
    public var normalizeAdvantages = true
    /// How advantages are estimated: GAE(λ) by its recursion over TD errors, or the TD(λ) return
    /// (by the recursion of "Reconciling λ-Returns with Experience Replay", Eq. 3) minus the value.
    /// Both use `gaeLambda`; with the same values they are equal up to rounding.
    public var advantageEstimator: AdvantageEstimator = .gae
    /// Several agents: every agent trains on the team's reward of the step (the sum or mean of the
    /// agents' rewards, as the environment's team return says); false: on its own reward.
    public var sharedReward = true
    /// Treat time-outs as terminal (no bootstrap from the last observation), the convention of many
    /// multi-agent benchmarks, for comparison; by default a truncated episode bootstraps, which is correct.
    public var timeLimitsTerminal = false
    /// Running normalisation of observations and of rewards (by the running deviation of the
    /// discounted return); the statistics are saved with the weights.
    public var normalizeObservations = true
    public var normalizeRewards = true

    /// KL early stopping: stop the epochs when the approximate KL to the collecting policy exceeds
    /// 1.5 × this target (0: off).
    public var targetKL: Float = 0
    /// Hard limit: when the approximate KL exceeds it, the weights (and optimiser state) from before
    /// the last gradient step are restored and the epochs stop (0: off).
    public var klHardLimit: Float = 0

    /// Hidden-state refreshing: at the start of each epoch (and every `refreshInterval` minibatches
    /// when that is above 0), re-run the recurrent networks over the whole rollout with the current
    /// weights, rewrite the stored states and values and recompute the advantages. Off reproduces
    /// sb3-contrib (states stored at collection, never refreshed).
    public var refreshStates = false
    public var refreshInterval = 0
    /// With `refreshStates`: also rewrite the values and recompute the advantages and value targets
    /// with the current critic at each refresh (true), or rewrite only the states (false; the
    /// advantages and targets stay those computed at collection).
    public var refreshAdvantages = true
    /// Truncated BPTT inside a chunk: cut the state gradient every k steps (0: off).
    public var truncation = 0
    /// Initial log standard deviation of the Gaussian policy (continuous actions).
    public var initialLogStd: Float = 0
    public var adamEpsilon: Float = 1e-5

    public init() {}

    /// rl-zoo's RecurrentPPO settings for CartPoleNoVel (this type's own defaults): no value
    /// clipping.
    public mutating func applyRLZoo() {
        valueClipRange = PPOConfiguration().valueClipRange
    }

    /// Options left out (configurations written before they existed) take their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = PPOConfiguration()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        network = try value(.network, d.network)
        recurrentLayers = try value(.recurrentLayers, d.recurrentLayers)
        hiddenSize = try value(.hiddenSize, d.hiddenSize)
        headHiddenSizes = try value(.headHiddenSizes, d.headHiddenSizes)
        activation = try value(.activation, d.activation)
        sharedEncoder = try value(.sharedEncoder, d.sharedEncoder)
        context = try value(.context, d.context)
        environments = try value(.environments, d.environments)
        rolloutSteps = try value(.rolloutSteps, d.rolloutSteps)
        minibatchSize = try value(.minibatchSize, d.minibatchSize)
        chunkLength = try value(.chunkLength, d.chunkLength)
        epochs = try value(.epochs, d.epochs)
        learningRate = try value(.learningRate, d.learningRate)
        encoderLearningRate = try c.decodeIfPresent(Float.self, forKey: .encoderLearningRate)
        annealLearningRate = try value(.annealLearningRate, d.annealLearningRate)
        clipRange = try value(.clipRange, d.clipRange)
        annealClipRange = try value(.annealClipRange, d.annealClipRange)
        valueClipRange = try value(.valueClipRange, d.valueClipRange)
        gamma = try value(.gamma, d.gamma)
        gaeLambda = try value(.gaeLambda, d.gaeLambda)
        entropyCoefficient = try value(.entropyCoefficient, d.entropyCoefficient)
        valueCoefficient = try value(.valueCoefficient, d.valueCoefficient)
        maxGradientNorm = try value(.maxGradientNorm, d.maxGradientNorm)
        normalizeAdvantages = try value(.normalizeAdvantages, d.normalizeAdvantages)
        advantageEstimator = try value(.advantageEstimator, d.advantageEstimator)
        sharedReward = try value(.sharedReward, d.sharedReward)
        timeLimitsTerminal = try value(.timeLimitsTerminal, d.timeLimitsTerminal)
        normalizeObservations = try value(.normalizeObservations, d.normalizeObservations)
        normalizeRewards = try value(.normalizeRewards, d.normalizeRewards)
        targetKL = try value(.targetKL, d.targetKL)
        klHardLimit = try value(.klHardLimit, d.klHardLimit)
        refreshStates = try value(.refreshStates, d.refreshStates)
        refreshInterval = try value(.refreshInterval, d.refreshInterval)
        refreshAdvantages = try value(.refreshAdvantages, d.refreshAdvantages)
        truncation = try value(.truncation, d.truncation)
        initialLogStd = try value(.initialLogStd, d.initialLogStd)
        adamEpsilon = try value(.adamEpsilon, d.adamEpsilon)
    }

    public func validate() throws {
        func fail(_ m: String) throws { throw ConfigurationError(m) }
        try validateNetworkSizes(recurrentLayers: recurrentLayers, hiddenSize: hiddenSize, headHiddenSizes: headHiddenSizes)
        if sharedEncoder && network == .mlp { try fail("a shared encoder needs a recurrent network (gru or lstm)") }
        if context.lastObservation { try fail("the previous observation as a context input is for sac and td3 for now; drop 'lastObservation' from the context") }
        if environments < 1 { try fail("environments must be at least 1 (got \(environments))") }
        if rolloutSteps < 1 { try fail("rollout steps must be at least 1 (got \(rolloutSteps))") }
        if chunkLength < 1 { try fail("chunk length must be at least 1 (got \(chunkLength))") }
        if epochs < 1 { try fail("epochs must be at least 1 (got \(epochs))") }
        try checkUpperBound("environment copies", environments, SizeLimit.copies)
        try checkUpperBound("rollout steps", rolloutSteps, SizeLimit.sequence)
        try checkUpperBound("chunk length", chunkLength, SizeLimit.sequence)
        try checkUpperBound("minibatch size", minibatchSize, SizeLimit.batch)
        try checkUpperBound("epochs", epochs, SizeLimit.epochs)
        if minibatchSize < chunkLength || minibatchSize % chunkLength != 0 {
            try fail("minibatch size (\(minibatchSize) steps) must be a positive multiple of the chunk length (\(chunkLength)); try \(max(1, minibatchSize / chunkLength) * chunkLength)")
        }
        try checkFinite([("learning rate", learningRate), ("clip range", clipRange), ("value clip range", valueClipRange), ("gamma", gamma),
                         ("GAE lambda", gaeLambda), ("entropy coefficient", entropyCoefficient), ("value coefficient", valueCoefficient),
                         ("max gradient norm", maxGradientNorm), ("target KL", targetKL), ("KL hard limit", klHardLimit),
                         ("initial log std", initialLogStd), ("Adam epsilon", adamEpsilon)])
        if !(learningRate > 0) { try fail("learning rate must be positive (got \(learningRate))") }
        if let e = encoderLearningRate, !(e > 0 && e.isFinite) { try fail("encoder learning rate must be positive (got \(e))") }
        if !(clipRange > 0) { try fail("clip range must be positive (got \(clipRange))") }
        if !(valueClipRange >= 0) { try fail("value clip range must be 0 (off) or positive (got \(valueClipRange))") }
        if !(gamma >= 0 && gamma <= 1) { try fail("gamma must be in [0, 1] (got \(gamma))") }
        if !(gaeLambda >= 0 && gaeLambda <= 1) { try fail("GAE lambda must be in [0, 1] (got \(gaeLambda))") }
        if !(entropyCoefficient >= 0) || !(valueCoefficient >= 0) { try fail("entropy and value coefficients must be 0 or more") }
        if !(maxGradientNorm >= 0) { try fail("max gradient norm must be 0 (off) or positive (got \(maxGradientNorm))") }
        if !(targetKL >= 0) || !(klHardLimit >= 0) { try fail("target KL and KL hard limit must be 0 (off) or positive") }
        if refreshInterval < 0 { try fail("refresh interval must be 0 (epoch starts only) or positive (got \(refreshInterval))") }
        if refreshInterval > 0 && !refreshStates { try fail("a refresh interval needs refreshing on (--refresh)") }
        if refreshStates && network == .mlp { try fail("refreshing states needs a recurrent network (gru or lstm)") }
        if truncation < 0 { try fail("truncation must be 0 (off) or positive (got \(truncation))") }
        if !(adamEpsilon > 0) { try fail("Adam epsilon must be positive (got \(adamEpsilon))") }
    }
}

/// How PPO estimates advantages (`PPOConfiguration.advantageEstimator`).
public enum AdvantageEstimator: String, Codable, Sendable, CaseIterable {
    /// GAE(λ): A_t = δ_t + γλ A_{t+1}.
    case gae
    /// The TD(λ) return minus the value: A_t = G^λ_t - V(s_t).
    case lambdaReturn = "lambda-return"
}

/// Running mean and variance (parallel Welford update, in Double), as Stable-Baselines3's
/// `RunningMeanStd`; starts with a count of 1e-4.
public struct RunningMeanStd: Codable, Equatable, Sendable {
    public var mean: [Double]
    public var variance: [Double]
    public var count: Double

    public init(width: Int) {
        mean = [Double](repeating: 0, count: width)
        variance = [Double](repeating: 1, count: width)
        count = 1e-4
    }

    /// Folds in `rows` rows of `width` values.
    public mutating func update(_ values: UnsafePointer<Float>, rows: Int) {
        guard rows > 0 else { return }
        let w = mean.count, n = Double(rows)
        for j in 0..<w {
            var m = 0.0
            for r in 0..<rows { m += Double(values[r * w + j]) }
            m /= n
            var v = 0.0
            for r in 0..<rows { let d = Double(values[r * w + j]) - m; v += d * d }
            v /= n
            let delta = m - mean[j], total = count + n
            let m2 = variance[j] * count + v * n + delta * delta * count * n / total
            mean[j] += delta * n / total
            variance[j] = m2 / total
        }
        count += n
    }

    /// What was folded in since `earlier` (self = earlier folded with it): its count, mean and variance.
    public func difference(since earlier: RunningMeanStd) -> (count: Double, mean: [Double], variance: [Double]) {
        let n = count - earlier.count
        guard n > 0 else { return (0, mean.map { _ in 0 }, variance.map { _ in 0 }) }
        var m = mean, v = variance
        for j in mean.indices {
            m[j] = (count * mean[j] - earlier.count * earlier.mean[j]) / n
            let delta = m[j] - earlier.mean[j]
            v[j] = max((variance[j] * count - earlier.variance[j] * earlier.count - delta * delta * earlier.count * n / count) / n, 0)
        }
        return (n, m, v)
    }

    /// Folds in `n` values of mean `m` and variance `v` (the parallel formula of `update`).
    public mutating func merge(count n: Double, mean m: [Double], variance v: [Double]) {
        guard n > 0 else { return }
        let total = count + n
        for j in mean.indices {
            let delta = m[j] - mean[j]
            let m2 = variance[j] * count + v[j] * n + delta * delta * count * n / total
            mean[j] += delta * n / total
            variance[j] = m2 / total
        }
        count = total
    }
}

extension RunningMeanStd {
    /// Data-parallel training: every rank folded its own values into a copy of `start`; afterwards
    /// every rank holds `start` folded with all the ranks' values (the same numbers everywhere).
    public mutating func combineAcrossRanks(_ ranks: any Communicator, since start: RunningMeanStd) {
        let d = difference(since: start), w = mean.count
        // Sums over the ranks of n, n·mean and n·(variance + mean²): the union's moments.
        var sums = [Double](repeating: 0, count: 1 + 2 * w)
        sums[0] = d.count
        for j in 0..<w {
            sums[1 + j] = d.count * d.mean[j]
            sums[1 + w + j] = d.count * (d.variance[j] + d.mean[j] * d.mean[j])
        }
        sums.withUnsafeMutableBufferPointer { ranks.sum($0.baseAddress!, count: $0.count) }
        let n = sums[0]
        self = start
        guard n > 0 else { return }
        let m = (0..<w).map { sums[1 + $0] / n }
        merge(count: n, mean: m, variance: (0..<w).map { max(sums[1 + w + $0] / n - m[$0] * m[$0], 0) })
    }
}
