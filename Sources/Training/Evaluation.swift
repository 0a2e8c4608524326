import Agents
import Environments
import Foundation
import Tensors

/// Buffers for `count` episodes run side by side by one actor, with `actor.agents` agents each:
/// each agent's observation, previous action and reward (its context), and the actor's recurrent
/// state, one row per episode and agent (agent-inner).
final class SideBySideEpisodes {
    let count: Int, agents: Int, observationWidth: Int, actionWidth: Int
    let observations: Tensor, context: Tensor, state: Tensor, actions: Tensor, previousActions: Tensor, previousRewards: Tensor
    /// The observations of the last `act` (the next step's previous observations).
    let previousObservations: Tensor
    let environmentActions: Tensor, stepRewards: Tensor
    /// `[count · agents, actionMaskWidth]`: the actions each agent may take now (masked environments).
    let actionMasks: Tensor
    let actionMaskWidth: Int
    var active: [Bool]
    var started: [Bool]

    init(count: Int, observationWidth: Int, actor: any RecurrentActor, actionMaskWidth: Int = 0) {
        self.count = count
        agents = actor.agents
        self.observationWidth = observationWidth
        actionWidth = actor.actionWidth
        let rows = count * agents
        observations = Tensor(Shape(d0: rows, d1: observationWidth))
        previousObservations = Tensor(Shape(d0: rows, d1: observationWidth))
        context = Tensor(Shape(d0: 1, d1: rows, d2: actor.contextWidth))
        state = Tensor(Shape(d0: rows, d1: max(actor.actorStateWidth, 1)))
        actions = Tensor(Shape(d0: rows, d1: actor.actionWidth))
        previousActions = Tensor(Shape(d0: rows, d1: actor.actionWidth))
        previousRewards = Tensor(Shape(d0: rows))
        // One step's actions in the environment's space (as wide as the actor's: a box's dimensions, or one index).
        environmentActions = Tensor(Shape(d0: agents, d1: actor.actionWidth))
        stepRewards = Tensor(Shape(d0: agents))
        self.actionMaskWidth = actionMaskWidth
        actionMasks = Tensor(Shape(d0: rows, d1: actionMaskWidth))
        active = [Bool](repeating: true, count: agents)
        started = [Bool](repeating: true, count: count)
    }

    /// Episode e's observation (all its agents', side by side).
    func observation(_ e: Int) -> UnsafeMutablePointer<Float> { observations.data + e * agents * observationWidth }
    /// Episode e's action (all its agents').
    func action(_ e: Int) -> UnsafeMutablePointer<Float> { actions.data + e * agents * actionWidth }

    /// One action per episode and agent (deterministic or sampled), the recurrent state carried.
    /// Observations must already be prepared (`actor.prepare(observation:)`).
    func act(_ actor: any RecurrentActor, deterministic: Bool) {
        let C = actor.contextWidth
        for e in 0..<count {
            for k in 0..<agents {
                let r = e * agents + k
                actor.writeContext(observation: observations.data + r * observationWidth,
                                   lastObservation: started[e] ? nil : previousObservations.data + r * observationWidth,
                                   lastAction: started[e] ? nil : previousActions.data + r * actionWidth,
                                   lastReward: previousRewards.data[r], agent: k, into: context.data + r * C)
            }
        }
        previousObservations.copy(from: observations)
        actor.act(context: context, state: state, deterministic: deterministic,
                  actionMasks: actionMaskWidth > 0 ? UnsafePointer(actionMasks.data) : nil, actions: actions.data)
    }

    /// Reads episode e's action masks from its environment (when masked).
    func readActionMasks(_ e: Int, from env: any MultiAgentEnvironment) {
        if actionMaskWidth > 0 { env.availableActions(into: actionMasks.data + e * agents * actionMaskWidth) }
    }

    /// Remembers episode e's action and reward as the context of its next step (one agent).
    func record(_ e: Int, reward: Float) {
        (previousActions.data + e * actionWidth).update(from: action(e), count: actionWidth)
        previousRewards.data[e] = reward
        started[e] = false
    }

    /// Steps episode e's environment with its agents' last actions (mapped onto the action space),
    /// prepares the new observations, and remembers the actions and rewards as the next step's
    /// context. Returns the step's result and the team's reward (`teamReturn`).
    func step(_ e: Int, in env: any MultiAgentEnvironment, actor: any RecurrentActor) throws -> (result: MultiAgentStepResult, teamReward: Double) {
        let space = env.actionSpace, a = actionWidth
        for k in 0..<agents { OffPolicyTrainer.environmentAction(action(e) + k * a, space: space, into: environmentActions.data + k * a) }
        let result = try active.withUnsafeMutableBufferPointer {
            try env.step(actions: environmentActions.data, observations: observation(e), rewards: stepRewards.data, active: $0.baseAddress!)
        }
        for k in 0..<agents { actor.prepare(observation: observation(e) + k * observationWidth) }
        readActionMasks(e, from: env)
        record(e, rewards: stepRewards.data, prepare: actor.prepare(reward:))
        return (result, env.teamReturn.of(stepRewards.data, agents: agents))
    }

    /// Remembers episode e's agents' actions and rewards (prepared) as the context of their next step.
    func record(_ e: Int, rewards: UnsafePointer<Float>, prepare: (Float) -> Float) {
        (previousActions.data + e * agents * actionWidth).update(from: action(e), count: agents * actionWidth)
        for k in 0..<agents { previousRewards.data[e * agents + k] = prepare(rewards[k]) }
        started[e] = false
    }
}

/// Returns of one episode per environment, run side by side (environment e reset with the e-th
/// seed drawn from `seeds`), deterministic or sampled.
struct EvaluationResult {
    var returns: [Double]
    var lengths: [Int]
    var summary: (mean: Double, std: Double) {
        let n = Double(max(returns.count, 1))
        let mean = returns.reduce(0, +) / n
        let variance = returns.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        return (mean, variance.squareRoot())
    }
}

func evaluateSideBySide(_ actor: any RecurrentActor, environments: [any Environment], seeds: inout RandomGenerator,
                        deterministic: Bool) -> EvaluationResult {
    // Built-in environments never throw.
    try! evaluateSideBySide(actor, environments: environments.map { SingleAgentAdapter($0) }, seeds: &seeds, deterministic: deterministic)
}

/// The same for multi-agent environments: an episode's return is the team's (`teamReturn`). With
/// `episodes` above the environments' count, the episodes run in rounds of that many (Python
/// environments, one process each, are few); episode e is still reset with the e-th seed.
func evaluateSideBySide(_ actor: any RecurrentActor, environments: [any MultiAgentEnvironment], episodes total: Int? = nil,
                        seeds: inout RandomGenerator, deterministic: Bool) throws -> EvaluationResult {
    var result = EvaluationResult(returns: [], lengths: [])
    let total = total ?? environments.count
    while result.returns.count < total {
        let round = Array(environments.prefix(total - result.returns.count))
        let E = round.count, N = actor.agents, o = round[0].observationSpace.width
        let episodes = SideBySideEpisodes(count: E, observationWidth: o, actor: actor, actionMaskWidth: round[0].actionMaskWidth)
        var returns = [Double](repeating: 0, count: E), lengths = [Int](repeating: 0, count: E)
        var alive = [Bool](repeating: true, count: E)
        for (e, env) in round.enumerated() {
            try env.reset(seed: seeds.next(), observations: episodes.observation(e))
            for k in 0..<N { actor.prepare(observation: episodes.observation(e) + k * o) }
            episodes.readActionMasks(e, from: env)
        }
        while alive.contains(true) {
            episodes.act(actor, deterministic: deterministic)
            for (e, env) in round.enumerated() where alive[e] {
                let (r, reward) = try episodes.step(e, in: env, actor: actor)
                returns[e] += reward
                lengths[e] += 1
                if r.done { alive[e] = false }
            }
        }
        result.returns += returns
        result.lengths += lengths
    }
    return result
}

/// The environments `episodes` evaluation episodes run in: one bridge serving them all for a
/// single-agent Python environment; otherwise one environment per episode, or, for a Python
/// multi-agent one (a process each), four that run the episodes in rounds.
struct EvaluationEnvironments {
    let environments: [any MultiAgentEnvironment]
    let vector: VectorEnvironment?
    let episodes: Int

    /// How many Python multi-agent environments an evaluation runs side by side.
    static let pythonCopies = 4

    /// `multiAgent`: a Python environment is served as a multi-agent one (masac).
    init(spec: EnvironmentSpec, episodes: Int, multiAgent: Bool) throws {
        if spec.isPython && !multiAgent {
            vector = try spec.makeVector(count: episodes)
            environments = []
        } else {
            vector = nil
            let copies = spec.isPython ? min(episodes, EvaluationEnvironments.pythonCopies) : episodes
            environments = try (0..<copies).map { _ in try spec.makeMultiAgent() }
        }
        self.episodes = episodes
    }

    /// One episode each, episode e reset with the e-th seed drawn from `seeds` (a bridge's copy i with
    /// the first drawn seed + i).
    func run(_ actor: any RecurrentActor, seeds: inout RandomGenerator, deterministic: Bool) throws -> EvaluationResult {
        if let vector { return try evaluateVector(actor, vector, seed: seeds.next(), deterministic: deterministic) }
        return try evaluateSideBySide(actor, environments: environments, episodes: episodes, seeds: &seeds, deterministic: deterministic)
    }
}

/// The first episode of every copy of a vector environment (copy i reset with `seed + i`), all copies
/// stepped in lockstep until each has finished one episode.
func evaluateVector(_ actor: any RecurrentActor, _ vector: VectorEnvironment, seed: UInt64, deterministic: Bool) throws -> EvaluationResult {
    let E = vector.count, o = vector.observationWidth, space = vector.actionSpace
    let episodes = SideBySideEpisodes(count: E, observationWidth: o, actor: actor)
    let envActions = Tensor(Shape(d0: E, d1: space.width))
    var result = EvaluationResult(returns: [Double](repeating: 0, count: E), lengths: [Int](repeating: 0, count: E))
    var alive = [Bool](repeating: true, count: E)
    try vector.reset(seed: seed)
    episodes.observations.copy(from: vector.observations)
    for e in 0..<E { actor.prepare(observation: episodes.observation(e)) }
    while alive.contains(true) {
        episodes.act(actor, deterministic: deterministic)
        for e in 0..<E { OffPolicyTrainer.environmentAction(episodes.action(e), space: space, into: envActions.data + e * space.width) }
        try vector.step(envActions.data)
        vector.drainFinishedEpisodes { _, _ in }
        for e in 0..<E where alive[e] {
            let r = vector.rewards.data[e]
            result.returns[e] += Double(r)
            result.lengths[e] += 1
            (episodes.observation(e)).update(from: vector.observation(e), count: o)
            actor.prepare(observation: episodes.observation(e))
            episodes.record(e, reward: actor.prepare(reward: r))
            if vector.terminated[e] || vector.truncated[e] { alive[e] = false }
        }
    }
    return result
}

/// The periodic deterministic evaluation of a training run: the same environments each time, the
/// k-th evaluation's episodes seeded from the run's seed and k (so a run's evaluations are
/// reproducible and differ from one another).
final class PeriodicEvaluation {
    let environments: EvaluationEnvironments
    let seed: UInt64
    /// Evaluations done so far.
    var count = 0

    /// `multiAgent`: a Python environment is served as a multi-agent one (masac).
    init(spec: EnvironmentSpec, episodes: Int, seed: UInt64, multiAgent: Bool = false) throws {
        environments = try EvaluationEnvironments(spec: spec, episodes: episodes, multiAgent: multiAgent)
        self.seed = seed
    }

    /// Mean and standard deviation of the return of one deterministic episode per environment,
    /// run side by side with the recurrent state carried through each episode.
    func next(_ actor: any RecurrentActor) -> (mean: Double, std: Double) {
        var seeds = RandomGenerator(seed: seed &+ 0x9E37_79B9 &* UInt64(count + 1))
        count += 1
        // An evaluation that fails (a Python process died) reports NaN; training stops at its next step with the error.
        return (try? environments.run(actor, seeds: &seeds, deterministic: true).summary) ?? (.nan, .nan)
    }
}

/// Where a training loop stands between steps (saved in checkpoints): the step of the next metrics
/// row, the wall seconds of earlier sessions, and the rows written so far.
public struct LoopState: Codable, Equatable, Sendable {
    public var nextRow: Int
    public var wallSeconds: Double = 0
    public var rows = 0
    public init(nextRow: Int) { self.nextRow = nextRow }
}

/// The loop both trainers share: `advance` until `totalSteps`, a metrics row (from `measure`, given
/// the wall seconds so far and the steps per second) at the first step at or past every multiple of
/// `interval` and at the end, then `afterStep` (where checkpoints are taken), and a progress report
/// at most once a second and at the end. `loop` is where the loop starts (a resumed run's saved state); `saveLoop`
/// receives its state after every step.
func runTrainingLoop(totalSteps: Int, loop: LoopState, saveLoop: (LoopState) -> Void, step: () -> Int, advance: () throws -> Void,
                     measure: (_ wallSeconds: Double, _ stepsPerSecond: Double) -> MetricsRow,
                     interval: Int, onRow: (MetricsRow) throws -> Void, afterStep: (LoopState) throws -> Void,
                     onProgress: (Progress) -> Void) throws -> [MetricsRow] {
    var rows: [MetricsRow] = []
    var loop = loop
    let start = Clock.now, wallBefore = loop.wallSeconds, firstStep = step()
    var lastProgress = start
    var lastEvaluation: Double?, lastProbe: Double?
    while step() < totalSteps {
        try advance()
        let now = Clock.now, done = step()
        loop.wallSeconds = wallBefore + (now - start)
        if done >= loop.nextRow || done >= totalSteps {
            while loop.nextRow <= done { loop.nextRow += interval }
            let row = measure(loop.wallSeconds, Double(done) / max(loop.wallSeconds, 1e-9))
            lastEvaluation = row["eval_return_mean"]
            lastProbe = row["probe_accuracy"].flatMap { $0.isNaN ? nil : $0 }
            rows.append(row)
            loop.rows += 1
            try onRow(row)
        }
        saveLoop(loop)
        try afterStep(loop)
        if now - lastProgress >= 1 || done >= totalSteps {
            lastProgress = now
            let rate = Double(done - firstStep) / max(now - start, 1e-9)
            onProgress(Progress(step: min(done, totalSteps), totalSteps: totalSteps, stepsPerSecond: rate, lastEvaluation: lastEvaluation,
                                lastProbe: lastProbe, secondsLeft: Double(max(totalSteps - done, 0)) / max(rate, 1e-9)))
        }
    }
    return rows
}
