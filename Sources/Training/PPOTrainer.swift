import Agents
import Collectives
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors

/// Every option of a PPO training run (written, resolved, into the run folder): `ppo` (one agent),
/// `ippo` (several agents sharing the networks, each critic on the agent's own context) or `mappo`
/// (the critic reads the copy's global state and the agent's id).
public struct PPOTrainingConfiguration: Codable, Equatable, Sendable {
    public var algorithm = "ppo"
    /// The algorithms this configuration describes.
    public static let algorithms = ["ppo", "ippo", "mappo"]
    /// IPPO and MAPPO train on multi-agent environments (a single-agent one is one agent).
    public var isMultiAgent: Bool { algorithm != "ppo" }
    /// MAPPO: the critic reads the global state.
    public var hasCentralCritic: Bool { algorithm == "mappo" }
    public var environment = "cartpole-position"
    /// Environment steps to train for, summed over the copies (rounded up to whole rollouts).
    public var steps = 100_000
    public var seed: UInt64 = 0
    /// Evaluate every this many environment steps (at the first rollout boundary past each multiple), and at the end.
    public var evaluationInterval = 10_000
    /// Deterministic evaluation episodes (run side by side).
    public var evaluationEpisodes = 10
    /// Write a checkpoint at the first update past every multiple of this many steps (and at the
    /// end); nil: every 25,000 steps; 0: only at the end and when interrupted.
    public var checkpointInterval: Int? = nil
    /// Python modules the bridge imports before making a `gym:` environment (they register it).
    public var environmentModules: [String]? = nil
    /// The environment's options (`--env-option KEY=VALUE`), e.g. the memory task's horizon.
    public var environmentOptions: [String: String]? = nil
    public var ppo = PPOConfiguration()

    public init() {}

    public func validate() throws {
        func fail(_ m: String) throws { throw ConfigurationError(m) }
        if !Self.algorithms.contains(algorithm) {
            try fail("a PPO configuration must say algorithm \(Self.algorithms.map { "'\($0)'" }.joined(separator: ", ")) (got '\(algorithm)')")
        }
        if !isMultiAgent && ppo.context.agentID {
            try fail("the agent id in the context is for networks shared by several agents; ppo trains one agent: drop 'agentID' from the context (or train ippo or mappo)")
        }
        if steps < 1 { try fail("steps must be at least 1 (got \(steps))") }
        if evaluationInterval < 1 { try fail("evaluation interval must be at least 1 (got \(evaluationInterval))") }
        if evaluationEpisodes < 1 { try fail("evaluation episodes must be at least 1 (got \(evaluationEpisodes))") }
        try checkUpperBound("steps", steps, SizeLimit.steps)
        try checkUpperBound("evaluation episodes", evaluationEpisodes, SizeLimit.episodes)
        if let k = checkpointInterval, k < 0 { try fail("checkpoint interval must be 0 (only at the end) or positive (got \(k))") }
        // A Python environment is checked when its bridge starts.
        try environmentSpec.validate()
        if environmentModules != nil && !environmentSpec.isPython { try fail("environment modules apply only to Python environments (gym:ID, pz:MODULE)") }
        try ppo.validate()
    }
}

/// The on-policy loop: collect a rollout of `rolloutSteps` steps from `environments` copies in
/// lockstep (each copy's recurrent states reset alone when its episode ends), compute GAE advantages
/// and TD(λ) returns, run the PPO update, evaluate every `evaluationInterval` steps.
///
/// Several agents (IPPO, MAPPO): one rollout row per copy and agent (agent-inner), all acting in
/// one batched pass of the shared networks; each row's reward is the team's (or its own), an agent
/// that leaves while its copy's episode goes on ends its row there (no bootstrap) and its later
/// steps weigh nothing; the action masks are stored with the steps. Steps count copy steps.
public final class PPOTrainer {
    public let configuration: PPOTrainingConfiguration
    public let environments: any EnvironmentCopies
    public let agent: PPOAgent
    public let buffer: RolloutBuffer
    let evaluation: PeriodicEvaluation
    /// Agents per copy.
    public let agents: Int

    // Collection state, one row per copy and agent.
    let context: Tensor
    /// A central critic's inputs (MAPPO), and the copies' normalised global states.
    let criticContext: Tensor
    let preparedStates: Tensor
    let finalState: Tensor
    /// Each row's reward of the last step (`reward(row:)`), computed once per step.
    let rowRewards: Tensor
    let truncatedCriticContext = Tensor([0])
    let actorState: Tensor
    let criticState: Tensor
    let previousActions: Tensor
    let previousRewards: Tensor
    let environmentActions: Tensor
    let preparedObservations: Tensor
    let truncatedContext = Tensor([0])
    let truncatedActorState = Tensor([0])
    let truncatedCriticState = Tensor([0])
    let truncatedValues = Tensor([0])
    var discountedReturns: [Double]
    let returnScratch: Tensor
    let finalObservation: Tensor

    public internal(set) var step = 0
    public internal(set) var updates = 0
    /// Where the linear annealing of the learning rate and clip range starts: at `step` it has
    /// `remaining` of its initial value left and reaches 0 at the end of the budget. A fresh run
    /// starts at (0, 1); a resumed run whose budget changed starts again from where the schedule stood,
    /// so raising `--steps` continues the schedule without a jump and stretches it to the new end.
    public internal(set) var schedule = (step: 0, remaining: Float(1))
    /// What a resume with a new budget did to the schedule (printed by `rrl train`).
    public internal(set) var scheduleNote: String?
    public internal(set) var episodes = 0
    public internal(set) var statistics = PPOStatistics()
    var recentReturns: [Double] = []
    public internal(set) var loop: LoopState
    /// Data-parallel training over several ranks (nil: one process). Each rank collects from its own
    /// copies (rank 0 with the seeds a single process uses); `step` counts every rank's steps.
    public let ranks: (any Communicator)?
    /// Ranks (1: one process).
    public var rankCount: Int { ranks?.size ?? 1 }
    /// The normalisers' statistics when the ranks last agreed on them (several ranks: after each
    /// rollout every rank folds in what all the ranks added since).
    var agreedStatistics: (observation: RunningMeanStd, reward: RunningMeanStd, state: RunningMeanStd)?
    /// Every this many updates the ranks compare their weights' checksums (a mismatch is an error).
    public static let weightCheckInterval = 10

    /// `ranks`: train data-parallel with the other ranks of this communicator (every rank calls this
    /// with the same configuration).
    public init(configuration: PPOTrainingConfiguration, ranks: (any Communicator)? = nil) throws {
        try configuration.validate()
        self.configuration = configuration
        self.ranks = severalRanks(ranks)
        loop = LoopState(nextRow: configuration.evaluationInterval)
        let p = configuration.ppo, copies = p.environments, spec = configuration.environmentSpec
        if configuration.isMultiAgent {
            environments = try MultiAgentVectorEnvironment(spec: spec, count: copies)
        } else {
            environments = try spec.makeVector(count: copies)
        }
        let M = environments.agents, N = copies * M, g = environments.globalStateWidth
        agents = M
        if configuration.hasCentralCritic && g == 0 {
            throw ConfigurationError("mappo's critic reads the global state, and \(environments.name) has none; train ippo (each critic on its agent's own inputs) instead")
        }
        evaluation = try PeriodicEvaluation(spec: spec, episodes: configuration.evaluationEpisodes, seed: configuration.seed,
                                            multiAgent: configuration.isMultiAgent)
        try requireBoundedActions(environments)
        try MemoryEstimate.ppo(configuration, observationWidth: environments.observationWidth, actionSpace: environments.actionSpace,
                               agents: M, globalStateWidth: configuration.hasCentralCritic ? g : 0).check()
        var seeds = RandomGenerator(seed: configuration.seed)
        agent = try PPOAgent(configuration: p, observationSpace: environments.observationSpace, actionSpace: environments.actionSpace,
                             seed: seeds.next(), agents: M, globalStateWidth: configuration.hasCentralCritic ? g : 0,
                             actionMaskWidth: environments.actionMaskWidth)
        buffer = RolloutBuffer(steps: p.rolloutSteps, envs: N, contextWidth: agent.contextWidth, actionWidth: agent.actionWidth,
                               actorStateWidth: agent.actorStateWidth, criticStateWidth: agent.criticStateWidth,
                               criticContextWidth: agent.hasCentralCritic ? agent.criticContextWidth : 0,
                               actionMaskWidth: environments.actionMaskWidth)
        let C = agent.contextWidth, A = agent.actionWidth
        context = Tensor(Shape(d0: 1, d1: N, d2: C))
        criticContext = Tensor(Shape(d0: 1, d1: agent.hasCentralCritic ? N : 0, d2: agent.criticContextWidth))
        preparedStates = Tensor(Shape(d0: copies, d1: agent.globalStateWidth))
        finalState = Tensor(Shape(d0: agent.globalStateWidth))
        rowRewards = Tensor(Shape(d0: N))
        actorState = Tensor(Shape(d0: N, d1: max(agent.actorStateWidth, 1)))
        criticState = Tensor(Shape(d0: N, d1: max(agent.criticStateWidth, 1)))
        previousActions = Tensor(Shape(d0: N, d1: A))
        previousRewards = Tensor(Shape(d0: N))
        environmentActions = Tensor(Shape(d0: N, d1: environments.actionSpace.width))
        preparedObservations = Tensor(Shape(d0: N, d1: environments.observationWidth))
        discountedReturns = [Double](repeating: 0, count: N)
        returnScratch = Tensor(Shape(d0: N))
        finalObservation = Tensor(Shape(d0: environments.observationWidth))
        agent.ranks = self.ranks
        let environmentSeed = seeds.next()
        if let rank = self.ranks?.rank, rank > 0 {
            // Other ranks: their own environment seeds and action noise; the same initial weights.
            var own = RandomGenerator(forRank: rank, of: environmentSeed)
            agent.rng = RandomGenerator(seed: own.next())
            try environments.reset(seed: own.next())
        } else {
            try environments.reset(seed: environmentSeed)
        }
        if self.ranks != nil { agreeOnStatistics() }
        prepareObservations()
        recentReturns.reserveCapacity(PPOTrainer.recentEpisodes + 1)
    }

    /// Episodes averaged into `train_return_mean`.
    static let recentEpisodes = 20

    /// Updates the observation statistics (and a central critic's state statistics) with the copies'
    /// raw observations, then writes the normalised ones into `preparedObservations` (`preparedStates`).
    func prepareObservations() {
        let o = environments.observationWidth, N = buffer.envs, copies = environments.count, g = agent.globalStateWidth
        if agent.configuration.normalizeObservations { agent.observationStatistics.update(environments.observation(0), rows: N) }
        preparedObservations.data.update(from: environments.observation(0), count: N * o)
        for n in 0..<N { agent.prepare(observation: preparedObservations.data + n * o) }
        guard agent.hasCentralCritic else { return }
        if agent.configuration.normalizeObservations { agent.stateStatistics.update(environments.globalState(0), rows: copies) }
        preparedStates.data.update(from: environments.globalState(0), count: copies * g)
        for i in 0..<copies { agent.normalize(globalState: preparedStates.data + i * g) }
    }

    /// Writes the inputs of every row's next step into `context` (and a central critic's into `criticContext`).
    func writeContexts() {
        let o = environments.observationWidth, C = agent.contextWidth, A = agent.actionWidth, M = agents
        let Cc = agent.criticContextWidth, g = agent.globalStateWidth
        for n in 0..<buffer.envs {
            let start = environments.episodeStarts[n / M]
            agent.writeContext(observation: preparedObservations.data + n * o, lastAction: start ? nil : previousActions.data + n * A,
                               lastReward: start ? 0 : previousRewards.data[n], agent: n % M, into: context.data + n * C)
            if agent.hasCentralCritic {
                agent.writeCriticContext(globalState: preparedStates.data + (n / M) * g, agent: n % M, into: criticContext.data + n * Cc)
            }
        }
    }

    /// Row `n`'s reward of the last step: the team's (several agents sharing the reward) or its agent's own.
    func reward(row n: Int) -> Float {
        let M = agents
        guard M > 1 && agent.configuration.sharedReward else { return environments.rewards.data[n] }
        return Float(environments.teamReturn.of(environments.rewards.data + (n / M) * M, agents: M))
    }

    /// Collects one rollout into `buffer` and computes its advantages and returns.
    public func collect() throws {
        let T = buffer.steps, N = buffer.envs, M = agents, C = agent.contextWidth, A = agent.actionWidth
        let Sa = agent.actorStateWidth, Sc = agent.criticStateWidth, o = environments.observationWidth
        let Cc = agent.criticContextWidth, g = agent.globalStateWidth, m = environments.actionMaskWidth, central = agent.hasCentralCritic
        let gamma = Double(agent.configuration.gamma), ea = environments.actionSpace.width
        buffer.clear()
        for t in 0..<T {
            writeContexts()
            buffer.contexts.data.advanced(by: t * N * C).update(from: context.data, count: N * C)
            if central { buffer.criticContexts.data.advanced(by: t * N * Cc).update(from: criticContext.data, count: N * Cc) }
            if m > 0 { buffer.actionMasks.data.advanced(by: t * N * m).update(from: environments.actionMask(0), count: N * m) }
            for n in 0..<N {
                buffer.episodeStarts.data[t * N + n] = environments.episodeStarts[n / M] ? 1 : 0
                buffer.active.data[t * N + n] = environments.isActive(n / M, agent: n % M) ? 1 : 0
            }
            buffer.actorStates.data.advanced(by: t * N * Sa).update(from: actorState.data, count: N * Sa)
            buffer.criticStates.data.advanced(by: t * N * Sc).update(from: criticState.data, count: N * Sc)
            agent.act(context: context, criticContext: central ? criticContext : nil, actorState: actorState, criticState: criticState,
                      actionMasks: m > 0 ? UnsafePointer(buffer.actionMasks.data + t * N * m) : nil, actions: buffer.action(t, 0),
                      logProbabilities: buffer.logProbabilities.data + t * N, values: buffer.values.data + t * N)
            try checkFiniteActions(buffer.action(t, 0), count: N * A, step: step)
            for n in 0..<N {
                OffPolicyTrainer.environmentAction(buffer.action(t, n), space: environments.actionSpace, into: environmentActions.data + n * ea)
            }
            try environments.step(environmentActions.data)
            step += environments.count * rankCount
            var truncatedCount = 0
            for n in 0..<N { rowRewards.data[n] = reward(row: n) }
            for n in 0..<N {
                let i = t * N + n, copy = n / M, wasActive = buffer.isActive(t, n)
                if agent.configuration.normalizeRewards {
                    discountedReturns[n] = discountedReturns[n] * gamma + Double(rowRewards.data[n])
                }
                // An agent that left while its copy's episode goes on has reached its own end (a terminal step).
                // A time-out is a truncation (bootstrapped) unless time limits are taken as terminal.
                let left = wasActive && !environments.isActive(copy, agent: n % M)
                let timeOut = environments.truncated[copy], timeOutEnds = timeOut && agent.configuration.timeLimitsTerminal
                buffer.terminated.data[i] = wasActive && (environments.terminated[copy] || left || timeOutEnds) ? 1 : 0
                buffer.truncated.data[i] = wasActive && timeOut && !timeOutEnds ? 1 : 0
                if buffer.truncated.data[i] != 0 { truncatedCount += 1 }
            }
            if agent.configuration.normalizeRewards {
                for n in 0..<N { returnScratch.data[n] = Float(discountedReturns[n]) }
                agent.returnStatistics.update(returnScratch.data, rows: N)
            }
            for n in 0..<N {
                let reward = agent.prepare(reward: rowRewards.data[n])
                buffer.rewards.data[t * N + n] = reward
                (previousActions.data + n * A).update(from: buffer.action(t, n), count: A)
                previousRewards.data[n] = reward
                if environments.terminated[n / M] || environments.truncated[n / M] { discountedReturns[n] = 0 }
            }
            // Truncated episodes bootstrap from the value of their last observation, seen from the state after the step.
            if truncatedCount > 0 {
                truncatedContext.resize(Shape(d0: 1, d1: truncatedCount, d2: C))
                if central { truncatedCriticContext.resize(Shape(d0: 1, d1: truncatedCount, d2: Cc)) }
                truncatedActorState.resize(Shape(d0: truncatedCount, d1: max(Sa, 1)))
                truncatedCriticState.resize(Shape(d0: truncatedCount, d1: max(Sc, 1)))
                truncatedValues.resize(Shape(d0: truncatedCount))
                var k = 0
                let final = finalObservation
                for n in 0..<N where buffer.isTruncated(t, n) {
                    let copy = n / M, agentIndex = n % M
                    final.data.update(from: environments.finalObservation(copy) + agentIndex * o, count: o)
                    agent.prepare(observation: final.data)
                    agent.writeContext(observation: final.data, lastAction: previousActions.data + n * A, lastReward: previousRewards.data[n],
                                       agent: agentIndex, into: truncatedContext.data + k * C)
                    (buffer.finalContexts.data + (t * N + n) * C).update(from: truncatedContext.data + k * C, count: C)
                    if central {
                        finalState.data.update(from: environments.finalGlobalState(copy), count: g)
                        agent.normalize(globalState: finalState.data)
                        agent.writeCriticContext(globalState: finalState.data, agent: agentIndex, into: truncatedCriticContext.data + k * Cc)
                        (buffer.finalCriticContexts.data + (t * N + n) * Cc).update(from: truncatedCriticContext.data + k * Cc, count: Cc)
                    }
                    (truncatedActorState.data + k * Sa).update(from: actorState.data + n * Sa, count: Sa)
                    (truncatedCriticState.data + k * Sc).update(from: criticState.data + n * Sc, count: Sc)
                    k += 1
                }
                agent.values(context: truncatedContext, criticContext: central ? truncatedCriticContext : nil, actorState: truncatedActorState,
                             criticState: truncatedCriticState, into: truncatedValues.data)
                k = 0
                for n in 0..<N where buffer.isTruncated(t, n) {
                    buffer.finalValues.data[t * N + n] = truncatedValues.data[k]
                    k += 1
                }
            }
            // Copies whose episode ended start the next one from zero states; the others carry theirs.
            for n in 0..<N where environments.episodeStarts[n / M] {
                (actorState.data + n * Sa).update(repeating: 0, count: Sa)
                (criticState.data + n * Sc).update(repeating: 0, count: Sc)
            }
            environments.drainFinishedEpisodes { r, _ in
                episodes += 1
                recentReturns.append(r)
                if recentReturns.count > PPOTrainer.recentEpisodes { recentReturns.removeFirst() }
            }
            prepareObservations()
            buffer.commit()
        }
        // The step after the rollout: its context, states and value.
        writeContexts()
        buffer.lastContexts.data.update(from: context.data, count: N * C)
        if central { buffer.lastCriticContexts.data.update(from: criticContext.data, count: N * Cc) }
        for n in 0..<N { buffer.lastEpisodeStarts.data[n] = environments.episodeStarts[n / M] ? 1 : 0 }
        buffer.lastActorStates.data.update(from: actorState.data, count: N * Sa)
        buffer.lastCriticStates.data.update(from: criticState.data, count: N * Sc)
        agent.values(context: context, criticContext: central ? criticContext : nil, actorState: actorState, criticState: criticState,
                     into: buffer.lastValues.data)
        buffer.keepCollectedStates()
        agent.computeAdvantagesAndReturns(buffer)
        if let ranks, let agreed = agreedStatistics {
            // Every rank's normalisers from here on hold what all the ranks saw.
            agent.observationStatistics.combineAcrossRanks(ranks, since: agreed.observation)
            agent.returnStatistics.combineAcrossRanks(ranks, since: agreed.reward)
            agent.stateStatistics.combineAcrossRanks(ranks, since: agreed.state)
            agreeOnStatistics()
        }
    }

    /// Marks the normalisers' statistics as the ones every rank holds.
    func agreeOnStatistics() {
        agreedStatistics = (agent.observationStatistics, agent.returnStatistics, agent.stateStatistics)
    }

    /// The fraction of the initial learning rate and clip range left at `step`, with the schedule
    /// reaching 0 at `budget` (never below 0: PPO may run past its budget to finish a rollout).
    func scheduleRemaining(atStep step: Int, budget: Int) -> Float {
        max(schedule.remaining * (1 - Float(step - schedule.step) / Float(max(budget - schedule.step, 1))), 0)
    }

    /// One rollout and one PPO update.
    public func advance() throws {
        try collect()
        statistics = agent.update(buffer, progressRemaining: scheduleRemaining(atStep: step, budget: configuration.steps))
        updates += 1
        if let ranks, updates % PPOTrainer.weightCheckInterval == 0 {
            let differing = ranks.ranksDiffering(from: agent.weightsChecksum())
            if !differing.isEmpty {
                throw TrainingError("the weights of rank\(differing.count > 1 ? "s" : "") \(differing.map(String.init).joined(separator: ", ")) differ from rank 0's at update \(updates) (step \(step)): the ranks no longer train the same policy; this is a bug (or the ranks run different rrl builds): report it with the command line")
            }
        }
        if let name = agent.firstNonFiniteParameter() {
            throw TrainingError("parameter \(name) (group \(parameterGroup(name))) became non-finite at step \(step) (update \(updates)); lower the learning rate or keep gradient clipping on")
        }
        if !statistics.policyLoss.isFinite && statistics.gradientSteps > 0 || !statistics.valueLoss.isFinite && statistics.gradientSteps > 0 {
            throw TrainingError("training diverged at step \(step) (update \(updates); a loss of the actor or critic group): policy loss \(statistics.policyLoss), value loss \(statistics.valueLoss); lower the learning rate, keep --max-grad-norm on, or normalise rewards")
        }
    }

    /// Mean and standard deviation of the return of deterministic episodes run side by side.
    public func evaluate() -> (mean: Double, std: Double) {
        evaluation.next(agent)
    }

    /// Every rank measures at the same steps; rank 0 evaluates (its row is the one written), and
    /// the episode count and training return are over all the ranks.
    public func measure(wallSeconds: Double, stepsPerSecond: Double) -> MetricsRow {
        var row = MetricsRow()
        let (mean, std) = ranks.map { $0.rank == 0 } ?? true ? evaluate() : (.nan, .nan)
        let s = statistics
        var totals = [Double(episodes), recentReturns.reduce(0, +), Double(recentReturns.count)]
        if let ranks { totals.withUnsafeMutableBufferPointer { ranks.sum($0.baseAddress!, count: 3) } }
        row["step"] = Double(step)
        row["episodes"] = totals[0]
        row["updates"] = Double(updates)
        row["train_return_mean"] = totals[2] == 0 ? .nan : totals[1] / totals[2]
        row["eval_return_mean"] = mean
        row["eval_return_std"] = std
        row["policy_loss"] = Double(s.policyLoss)
        row["value_loss"] = Double(s.valueLoss)
        row["entropy"] = Double(s.entropy)
        row["approx_kl"] = Double(s.approximateKL)
        row["kl_stale"] = Double(s.staleKL)
        row["kl_refreshed"] = Double(s.refreshedKL)
        row["clip_fraction"] = Double(s.clipFraction)
        row["epochs"] = Double(s.epochs)
        row["gradient_steps"] = Double(s.gradientSteps)
        row["explained_variance"] = Double(s.explainedVariance)
        row["learning_rate"] = Double(s.learningRate)
        row["clip_range"] = Double(s.clipRange)
        row["grad_norm"] = Double(s.gradientNorm)
        row["wall_seconds"] = wallSeconds
        row["steps_per_second"] = stepsPerSecond
        return row
    }

    /// Trains for the configured steps, measuring at the first update past every multiple of
    /// `evaluationInterval` and at the end.
    /// `afterStep` runs after every update (and its row, if any): where checkpoints are taken.
    @discardableResult
    public func run(onRow: (MetricsRow) throws -> Void = { _ in }, afterStep: (LoopState) throws -> Void = { _ in },
                    onProgress: (Progress) -> Void = { _ in }) throws -> [MetricsRow] {
        try runTrainingLoop(totalSteps: configuration.steps, loop: loop, saveLoop: { self.loop = $0 }, step: { step }, advance: advance, measure: measure,
                            interval: configuration.evaluationInterval, onRow: onRow, afterStep: afterStep, onProgress: onProgress)
    }

    /// The normalisers' statistics in full precision, for the weights file's metadata.
    public func normalizerMetadata() -> [String: String] { agent.normalizerMetadata() }

    /// Weights and the normalisers' statistics, for the weights file.
    public func namedTensors() -> [NamedParameter] { agent.namedParameters() + agent.normalizerParameters() }
}
