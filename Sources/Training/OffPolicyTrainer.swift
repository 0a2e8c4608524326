import Agents
import Collectives
import Environments
import Foundation
import Inference
import NeuralNetworks
import Replay
import Tensors

/// Every agent maps its actions in [-1, 1] onto the action space's bounds, so a Box action space
/// needs finite ones.
func requireBoundedActions(_ environments: any EnvironmentCopies) throws {
    if case .box(let low, let high) = environments.actionSpace, !(low + high).allSatisfy(\.isFinite) {
        throw ConfigurationError("\(environments.name) has an action space with infinite bounds (\(environments.actionSpace)); the agents map actions in [-1, 1] onto the bounds, so they need finite ones: give the environment bounded actions (Python: gymnasium.wrappers.RescaleAction or ClipAction)")
    }
}

/// The non-finite guard's check of what an actor chose (every trainer's): a NaN or infinite action
/// means the actor's output overflowed (its parameters grew too large), which is the agent's fault,
/// not the environment's.
func checkFiniteActions(_ actions: UnsafePointer<Float>, count: Int, step: Int) throws {
    for j in 0..<count where !actions[j].isFinite {
        throw TrainingError("the actor's action became non-finite (\(actions[j])) at step \(step): its outputs overflowed, so its parameters have grown too large; lower the learning rates (--actor-lr, --lr) or clip gradients (--max-grad-norm)")
    }
}

/// The off-policy training loop: step every environment copy once (actions for all copies in one
/// batched pass of the actor; random during warm-up), store the steps (one replay ring per copy),
/// make one critic update per `criticUpdateInterval` environment steps counted over all copies, and
/// evaluate every `evaluationInterval` environment steps.
///
/// Steps count environment steps: with N copies one pass of the loop adds N. The update ratio is
/// per environment step, so N copies with the default interval of 1 make N updates per pass and
/// the same number of updates per collected step as one copy (the returns at equal steps compare);
/// `--critic-interval N` makes one update per pass instead (N times fewer updates per step, as
/// CleanMARL's `num_updates` counts them), which is faster in wall-clock time.
///
/// Multi-agent environments (MASAC) are collected the same way with one actor row per copy and
/// agent (agent-inner), each agent's step stored side by side in its copy's ring. A copy that ended
/// and waits for the others (`resetMode` `.resetTogether`) is not stepped, stores nothing, and its
/// recurrent states stay as they were; every copy whose episode starts acts first from zero states.
public final class OffPolicyTrainer {
    public let configuration: OffPolicyConfiguration
    /// The training environments: N copies stepped together, built-in or served by a Python bridge
    /// (`gym:ID`), single- or multi-agent; they check actions, observations and rewards, and reset a
    /// copy whose episode ended.
    public let environments: any EnvironmentCopies
    public let agent: OffPolicyAgent
    public let replay: EpisodeReplay
    /// Where collected steps go: the replay, or (an actor rank) the recorder of steps for the learner.
    let store: any StepStore
    /// Actor-learner training over MPI ranks (nil: one process).
    public let actorLearner: ActorLearner?
    public let sampler: SequenceSampler
    let evaluation: PeriodicEvaluation
    var rng: RandomGenerator

    /// Agents per copy.
    public let agents: Int

    // Acting buffers for the N copies, one row per copy and agent (the global state: one per copy).
    let observation: UnsafeMutablePointer<Float>
    let globalState: UnsafeMutablePointer<Float>
    /// `[copies, agents, actionMaskWidth]`: the action masks of the step being taken.
    let stepActionMask: UnsafeMutablePointer<Float>
    let nextGlobalState: UnsafeMutablePointer<Float>
    /// The critics' acting input, when it is not the actor's context.
    let actCriticContext = Tensor([0])
    /// The states of copies that wait for the others (kept as they were while the actor acts).
    let heldActorState = Tensor([0])
    let heldCriticState = Tensor([0])
    var wasRunning: [Bool]
    let nextObservation: UnsafeMutablePointer<Float>
    let action: UnsafeMutablePointer<Float>
    let environmentAction: UnsafeMutablePointer<Float>
    let previousAction: UnsafeMutablePointer<Float>
    let previousReward: UnsafeMutablePointer<Float>
    /// Each copy's observation before the current one in its episode (the context's `lastObservation`).
    let previousObservation: UnsafeMutablePointer<Float>
    /// Several agents, `[copies, agents]`: who acted at the step being taken, and who left the episode at it.
    let stepActive: UnsafeMutablePointer<Float>
    let stepFinished: UnsafeMutablePointer<Float>
    let actContext = Tensor([0])
    let actorState = Tensor([0])
    let criticState = Tensor([0])
    let recordedActorState = Tensor([0])
    let recordedCriticState = Tensor([0])

    public internal(set) var step = 0
    public internal(set) var episodes = 0
    var episodeReturns: [Double]
    var recentReturns: [Double] = []
    /// Environment copies stepped together.
    public var copies: Int { environments.count }
    public internal(set) var loop: LoopState

    /// `ranks` (two or more): actor-learner training, rank 0 the learner (the replay and the updates),
    /// the other ranks actors (acting and sending their steps); see `ActorLearner`.
    public init(configuration: OffPolicyConfiguration, ranks: (any Communicator)? = nil) throws {
        try configuration.validate()
        self.configuration = configuration
        loop = LoopState(nextRow: configuration.evaluationInterval)
        let spec = configuration.environmentSpec, copies = configuration.environments ?? 1
        if configuration.isMultiAgent {
            environments = try MultiAgentVectorEnvironment(spec: spec, count: copies, mode: configuration.resetMode ?? .resetEachCopy)
        } else {
            environments = try spec.makeVector(count: copies)
        }
        evaluation = try PeriodicEvaluation(spec: configuration.environmentSpec, episodes: configuration.evaluationEpisodes, seed: configuration.seed,
                                            multiAgent: configuration.isMultiAgent)
        try requireBoundedActions(environments)
        try MemoryEstimate.offPolicy(configuration, observationWidth: environments.observationWidth, actionSpace: environments.actionSpace,
                                     agents: environments.agents, globalStateWidth: environments.globalStateWidth,
                                     actionMaskWidth: environments.actionMaskWidth).check()
        var seeds = RandomGenerator(seed: configuration.seed)
        agent = try OffPolicyAgent(configuration: configuration.agent, observationSpace: environments.observationSpace,
                                   actionSpace: environments.actionSpace, seed: seeds.next(), agents: environments.agents,
                                   globalStateWidth: environments.globalStateWidth, actionMaskWidth: environments.actionMaskWidth,
                                   teamReturn: environments.teamReturn)
        agents = environments.agents
        let actorLearner = severalRanks(ranks).map { ActorLearner(ranks: $0, configuration: configuration) }
        self.actorLearner = actorLearner
        // The learner keeps a ring for every actor's every copy; an actor stores nothing itself.
        let rings = actorLearner.map { $0.isLearner ? ($0.ranks.size - 1) * copies : copies } ?? copies
        replay = EpisodeReplay(capacity: actorLearner?.isLearner == false ? rings : configuration.agent.replayCapacity, layout: agent.replayLayout,
                               copies: rings)
        if actorLearner?.isLearner == false {
            store = StepRecorder(layout: agent.replayLayout, copies: copies)
        } else {
            store = replay
        }
        sampler = SequenceSampler(configuration: configuration.agent.sampler, batchSize: configuration.agent.batchSize,
                                  layout: agent.replayLayout, seed: seeds.next())
        rng = seeds.split()
        var environmentSeed = seeds.next()
        if let rank = actorLearner?.ranks.rank, rank > 0 {
            // An actor: its own environment seeds and exploration; the weights come from the learner.
            var own = RandomGenerator(forRank: rank, of: environmentSeed)
            rng = RandomGenerator(seed: own.next())
            agent.rng = RandomGenerator(seed: own.next())
            environmentSeed = own.next()
        }
        let N = environments.count, R = N * agents, o = environments.observationWidth, a = agent.actionWidth, g = environments.globalStateWidth
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            return p
        }
        observation = floats(R * o)
        nextObservation = floats(R * o)
        globalState = floats(N * g)
        nextGlobalState = floats(N * g)
        stepActionMask = floats(R * environments.actionMaskWidth)
        action = floats(R * a)
        environmentAction = floats(R * environments.actionWidth)
        previousAction = floats(R * a)
        previousReward = floats(R)
        previousObservation = floats(R * o)
        stepActive = floats(R)
        stepFinished = floats(R)
        episodeReturns = [Double](repeating: 0, count: N)
        wasRunning = [Bool](repeating: true, count: N)
        actContext.resize(Shape(d0: 1, d1: R, d2: agent.contextWidth))
        actCriticContext.resize(Shape(d0: 1, d1: R, d2: agent.criticContextWidth))
        actorState.resize(Shape(d0: R, d1: max(agent.actor.stateWidth, 1)))
        criticState.resize(Shape(d0: R, d1: max(agent.criticStateWidth, 1)))
        recordedActorState.resize(actorState.shape)
        recordedCriticState.resize(criticState.shape)
        heldActorState.resize(actorState.shape)
        heldCriticState.resize(criticState.shape)
        try environments.reset(seed: environmentSeed)
        observation.update(from: environments.observation(0), count: R * o)
        for n in 0..<N { (globalState + n * g).update(from: environments.globalState(n), count: g) }
        recentReturns.reserveCapacity(OffPolicyTrainer.recentEpisodes + N)
    }

    /// Episodes averaged into `train_return_mean`.
    static let recentEpisodes = 10

    deinit {
        for p in [observation, nextObservation, globalState, nextGlobalState, stepActionMask, action, environmentAction, previousAction,
                  previousReward, previousObservation, stepActive, stepFinished] { p.deallocate() }
    }

    /// Maps a normalised action ([-1, 1] per dimension, or an index) to the environment's space.
    static func environmentAction(_ a: UnsafePointer<Float>, space: Space, into out: UnsafeMutablePointer<Float>) {
        switch space {
        case .box(let low, let high): PolicyManifest.Actions.mapToBounds(a, low: low, high: high, into: out)
        case .discrete:
            out[0] = a[0]
        }
    }

    /// One step of every copy, stored in the replay; the updates that fall due.
    public func advance() throws {
        if let al = actorLearner, al.isLearner { return try advanceAsLearner(al) }
        let N = environments.count, M = agents, o = environments.observationWidth, a = agent.actionWidth, C = agent.contextWidth
        let g = environments.globalStateWidth, Sa = actorState.shape[1], Sc = criticState.shape[1], ea = environments.actionWidth
        let storesStates = agent.configuration.sampler.initialState.usesStoredStates
        // The actor's inputs, and the critics' when their states are stored (they advance with the actor's).
        let Cc = agent.criticContextWidth, criticInput = storesStates ? actCriticContext.data : nil
        for n in 0..<N {
            // At an episode's first step there is no previous action (nil: zeros, not index 0).
            let open = store.isEpisodeOpen(copy: n)
            agent.writeStepContexts(observations: observation + n * M * o, previousObservations: open ? previousObservation + n * M * o : nil,
                                    globalState: globalState + n * g, previousActions: open ? previousAction + n * M * a : nil,
                                    previousRewards: previousReward + n * M, actor: actContext.data + n * M * C,
                                    critic: criticInput.map { $0 + n * M * Cc })
            wasRunning[n] = environments.isRunning(n)
            for k in 0..<M { stepActive[n * M + k] = environments.isActive(n, agent: k) ? 1 : 0 }
        }
        let holding = wasRunning.contains(false)
        if holding {
            heldActorState.copy(from: actorState)
            heldCriticState.copy(from: criticState)
        }
        if storesStates {
            recordedActorState.copy(from: actorState)
            recordedCriticState.copy(from: criticState)
            agent.advanceCriticStates(context: agent.sharesContext ? actContext : actCriticContext, state: criticState)
        }
        // The actions each agent may take now (the copies' masks, for the observations acted on).
        let m = environments.actionMaskWidth
        if m > 0 { stepActionMask.update(from: environments.actionMask(0), count: N * M * m) }
        agent.setExploration(atStep: step)
        agent.act(context: actContext, state: actorState, deterministic: false, actionMasks: m > 0 ? UnsafePointer(stepActionMask) : nil,
                  actions: action)
        if holding {
            // A copy that waits for the others keeps its states (its episode is over; nothing of it moves).
            for n in 0..<N where !wasRunning[n] {
                (actorState.data + n * M * Sa).update(from: heldActorState.data + n * M * Sa, count: M * Sa)
                (criticState.data + n * M * Sc).update(from: heldCriticState.data + n * M * Sc, count: M * Sc)
            }
        }
        try checkFiniteActions(action, count: N * M * a, step: step)
        for r in 0..<(N * M) {
            if step < configuration.warmupSteps {
                switch environments.actionSpace {
                case .discrete(let count) where m > 0:
                    // Uniform over the available actions.
                    let mask = stepActionMask + r * m
                    action[r * a] = Float(Categorical.uniform(amongAvailable: count, rng: &rng, isAvailable: { mask[$0] != 0 }) ?? count - 1)
                case .discrete(let count): action[r * a] = Float(rng.integer(below: count))
                case .box: for j in 0..<a { action[r * a + j] = rng.uniform(-1, 1) }
                }
            }
            // An agent that left the episode has no action (the environment ignores it): zeros are stored.
            if stepActive[r] == 0 { (action + r * a).update(repeating: 0, count: a) }
            OffPolicyTrainer.environmentAction(action + r * a, space: environments.actionSpace, into: environmentAction + r * ea)
        }
        // The copies check the actions and what comes back, and reset themselves when an episode ends
        // (its row then holds the next episode's first observation; the last one is kept apart).
        try environments.step(environmentAction)
        environments.drainFinishedEpisodes { _, _ in }
        var stepped = 0
        for n in 0..<N {
            if wasRunning[n] {
                stepped += 1
                let terminated = environments.terminated[n], truncated = environments.truncated[n]
                let done = terminated || truncated
                let rewards = environments.rewards.data + n * M
                let next = nextObservation + n * M * o, nextGlobal = nextGlobalState + n * g
                next.update(from: done ? environments.finalObservation(n) : environments.observation(n), count: M * o)
                nextGlobal.update(from: done ? environments.finalGlobalState(n) : environments.globalState(n), count: g)
                // An agent that left while the episode goes on has reached its own end.
                for k in 0..<M { stepFinished[n * M + k] = !done && stepActive[n * M + k] != 0 && !environments.isActive(n, agent: k) ? 1 : 0 }
                store.add(copy: n, observations: observation + n * M * o, actions: action + n * M * a, rewards: rewards,
                           nextObservations: next, terminated: terminated, truncated: truncated,
                           actorStates: storesStates ? recordedActorState.data + n * M * Sa : nil,
                           criticState: storesStates ? recordedCriticState.data + n * M * Sc : nil,
                           globalState: g > 0 ? globalState + n * g : nil, nextGlobalState: g > 0 ? nextGlobal : nil,
                           actionMask: m > 0 ? stepActionMask + n * M * m : nil,
                           nextActionMask: m > 0 ? (done ? environments.finalActionMask(n) : environments.actionMask(n)) : nil,
                           active: stepActive + n * M, finished: stepFinished + n * M)
                episodeReturns[n] += environments.teamReturn.of(rewards, agents: M)
                if done {
                    recordFinishedEpisode(return: episodeReturns[n])
                    actorLearner?.finishedReturns.append(episodeReturns[n])
                } else {
                    (previousObservation + n * M * o).update(from: observation + n * M * o, count: M * o)
                    (observation + n * M * o).update(from: next, count: M * o)
                    (globalState + n * g).update(from: nextGlobal, count: g)
                    (previousAction + n * M * a).update(from: action + n * M * a, count: M * a)
                    (previousReward + n * M).update(from: rewards, count: M)
                }
            }
            // Every copy whose new episode starts (alone, or all together) acts first from zero states.
            if environments.episodeStarts[n] { startEpisode(n) }
        }
        let before = step
        step += stepped
        // An actor rank only acts; the learner makes the updates for the steps it receives.
        if actorLearner != nil { return }
        // One critic update per `criticUpdateInterval` environment steps, at the steps where it falls due.
        let interval = agent.configuration.criticUpdateInterval
        var due = (before / interval + 1) * interval
        while due <= step {
            if due >= configuration.warmupSteps { try update(atStep: due) }
            due += interval
        }
    }

    /// One update (critic, and the actor and targets when due) as at environment step `at`.
    func update(atStep at: Int) throws {
        // Gradient norms are diagnostics for the metrics log: measured only in the updates just before a row.
        let window = agent.configuration.criticUpdateInterval * agent.configuration.actorUpdateInterval
        let interval = configuration.evaluationInterval
        agent.measuresGradientNorms = (interval - at % interval) % interval < window || configuration.steps - at < window
        agent.update(sampler.sample(from: replay))
        if let k = agent.configuration.refreshStoredStatesInterval, k > 0, agent.criticUpdates % k == 0 {
            agent.refreshStoredStates(in: replay)
        }
        let s = agent.statistics
        if let name = agent.firstNonFiniteParameter() {
            throw TrainingError("parameter \(name) (group \(parameterGroup(name))) became non-finite at step \(at) (critic update \(agent.criticUpdates)); lower the learning rates, set --max-grad-norm, or check the rewards' scale")
        }
        if !s.criticLoss.isFinite || (agent.actorUpdates > 0 && !s.actorLoss.isFinite) {
            throw TrainingError("training diverged at step \(at) (a loss of the critic or actor group): critic loss \(s.criticLoss), actor loss \(s.actorLoss); lower the learning rates, set --max-grad-norm, or check the rewards' scale")
        }
    }

    /// Counts a finished episode and keeps its return among the recent ones (`train_return_mean`).
    func recordFinishedEpisode(return r: Double) {
        episodes += 1
        recentReturns.append(r)
        if recentReturns.count > OffPolicyTrainer.recentEpisodes { recentReturns.removeFirst() }
    }

    /// Copy `n`'s acting state at an episode's start: the environment's first observations (the copy
    /// has already reset itself), zero recurrent states for every agent, no previous action or reward.
    func startEpisode(_ n: Int) {
        let M = agents, o = environments.observationWidth, a = agent.actionWidth, g = environments.globalStateWidth
        let Sa = actorState.shape[1], Sc = criticState.shape[1]
        (observation + n * M * o).update(from: environments.observation(n), count: M * o)
        (globalState + n * g).update(from: environments.globalState(n), count: g)
        (actorState.data + n * M * Sa).update(repeating: 0, count: M * Sa)
        (criticState.data + n * M * Sc).update(repeating: 0, count: M * Sc)
        (previousAction + n * M * a).update(repeating: 0, count: M * a)
        (previousReward + n * M).update(repeating: 0, count: M)
        (previousObservation + n * M * o).update(repeating: 0, count: M * o)
        episodeReturns[n] = 0
    }

    // MARK: Evaluation

    /// Mean and standard deviation of the return of deterministic episodes, run side by side with
    /// the recurrent state carried through each episode.
    public func evaluate() -> (mean: Double, std: Double) {
        evaluation.next(agent)
    }

    /// For an environment with memory probes (`MemoryProbing`, the memory task): the fraction of
    /// fresh probes of `probeLength` steps after which the actor's deterministic action is right.
    public func probeAccuracy() -> Double? {
        guard let task = environments.firstSingleAgentCopy as? MemoryProbing, configuration.probes > 0 else { return nil }
        let P = configuration.probes
        let envs = (0..<P).map { _ in task.makeProbe(length: configuration.probeLength) }
        let episodes = SideBySideEpisodes(count: P, observationWidth: environments.observationWidth, actor: agent)
        var seeds = RandomGenerator(seed: configuration.seed &+ 0x5151_7A7A &* UInt64(evaluation.count + 1))
        for (e, env) in envs.enumerated() { env.reset(seed: seeds.next(), observation: episodes.observation(e)) }
        var correct = 0
        for t in 0..<configuration.probeLength {
            episodes.act(agent, deterministic: true)
            for (e, env) in envs.enumerated() {
                if t == configuration.probeLength - 1 {
                    if env.isCorrect(action: episodes.action(e)) { correct += 1 }
                } else {
                    let r = env.step(action: episodes.action(e), observation: episodes.observation(e))
                    episodes.record(e, reward: r.reward)
                }
            }
        }
        return Double(correct) / Double(P)
    }

    /// A sampler of its own for the diagnostics (staleness, amplification), so that measuring draws nothing from training's.
    lazy var diagnosticSampler = SequenceSampler(configuration: configuration.agent.sampler, batchSize: configuration.agent.batchSize,
                                                layout: agent.replayLayout, seed: 0)

    /// The hidden-state staleness (`Staleness`) of a batch drawn for the purpose (the k-th measurement
    /// from the run's seed and k), or nil for an MLP actor or an empty replay.
    public func measureStaleness() -> Staleness? {
        // (VDN and QMIX have no critics to measure.)
        guard agent.actor.isRecurrent, !agent.critics.isEmpty, replay.count > 0 else { return nil }
        diagnosticSampler.rng = RandomGenerator(seed: configuration.seed &+ 0x57A1_E5E5 &* UInt64(evaluation.count + 1))
        return agent.staleness(diagnosticSampler.sample(from: replay), replay: replay)
    }

    /// The encoder's amplification (`OffPolicyAgent.amplification`) on a batch drawn for the purpose
    /// (the k-th measurement from the run's seed and k), or nil when it does not apply or the replay is empty.
    public func measureAmplification() -> [Double]? {
        guard agent.objective != nil, agent.actor.isRecurrent, replay.count > 0 else { return nil }
        diagnosticSampler.rng = RandomGenerator(seed: configuration.seed &+ 0xA3F1_1F1E &* UInt64(evaluation.count + 1))
        return agent.amplification(diagnosticSampler.sample(from: replay))
    }

    /// Whether the run logs the recurrent actor's diagnostics (its encoder's gradient norm and amplification).
    var logsActorEncoderDiagnostics: Bool { configuration.agent.network != .mlp && !configuration.agent.algorithm.isValueDecomposition }

    /// The metrics of the current state (with a fresh evaluation and probe).
    public func measure(wallSeconds: Double, stepsPerSecond: Double) -> MetricsRow {
        var row = MetricsRow()
        let (mean, std) = evaluate()
        row["step"] = Double(step)
        row["episodes"] = Double(episodes)
        row["train_return_mean"] = recentReturns.isEmpty ? .nan : recentReturns.reduce(0, +) / Double(recentReturns.count)
        row["eval_return_mean"] = mean
        row["eval_return_std"] = std
        row["probe_accuracy"] = probeAccuracy() ?? .nan
        let s = agent.statistics
        row["critic_loss"] = Double(s.criticLoss)
        row["actor_loss"] = Double(s.actorLoss)
        row["temperature"] = Double(s.temperature)
        row["entropy"] = Double(s.entropy)
        row["mean_q"] = Double(s.meanQ)
        row["critic_grad_norm"] = Double(s.criticGradientNorm)
        row["actor_grad_norm"] = Double(s.actorGradientNorm)
        row["encoder_grad_norm"] = Double(s.encoderGradientNorm)
        if actorLearner != nil { row["acting_weights_age"] = takeActingWeightsAge() }
        if agent.configuration.algorithm.isValueDecomposition {
            row["updates"] = Double(agent.criticUpdates)
            row["epsilon"] = Double(agent.configuration.valueDecompositionOptions.epsilon(atStep: step))
        }
        if let staleness = measureStaleness() {
            row["staleness_q_first"] = Double(staleness.qFirst)
            row["staleness_q_last"] = Double(staleness.qLast)
            row["staleness_policy_first"] = Double(staleness.policyFirst)
            row["staleness_policy_last"] = Double(staleness.policyLast)
        }
        if logsActorEncoderDiagnostics {
            row["actor_encoder_grad_norm"] = Double(s.actorEncoderGradientNorm)
            if let curve = measureAmplification(), !curve.isEmpty {
                let measured = curve.filter { !$0.isNaN }
                row["amplification_mean"] = measured.reduce(0, +) / Double(max(measured.count, 1))
                for t in MetricsRow.amplificationSteps(sequenceLength: configuration.agent.sampler.sequenceLength) where t <= curve.count {
                    row["amplification_t\(t)"] = curve[t - 1]
                }
            }
        }
        row["wall_seconds"] = wallSeconds
        row["steps_per_second"] = stepsPerSecond
        return row
    }

    /// Trains for the configured steps, measuring every `evaluationInterval` steps and at the end.
    /// `afterStep` runs after every step (and its row, if any): where checkpoints are taken.
    @discardableResult
    public func run(onRow: (MetricsRow) throws -> Void = { _ in }, afterStep: (LoopState) throws -> Void = { _ in },
                    onProgress: (Progress) -> Void = { _ in }) throws -> [MetricsRow] {
        try runTrainingLoop(totalSteps: configuration.steps, loop: loop, saveLoop: { self.loop = $0 }, step: { step }, advance: advance, measure: measure,
                            interval: configuration.evaluationInterval, onRow: onRow, afterStep: afterStep, onProgress: onProgress)
    }
}
