import Agents
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors

/// A trainer whose whole state a checkpoint holds: `rrl train` runs either kind through this.
public protocol TrainingSession: AnyObject, Checkpointable {
    var step: Int { get }
    var totalSteps: Int { get }
    /// Steps between checkpoints (0: only at the end and when interrupted).
    var checkpointInterval: Int { get }
    /// What a resume cannot restore, when something (a Python environment's state); nil when it
    /// continues exactly.
    var resumeCaveat: String? { get }
    var loop: LoopState { get }
    /// The metrics columns of this kind of run.
    var metricsColumns: [String] { get }
    @discardableResult
    func run(onRow: (MetricsRow) throws -> Void, afterStep: (LoopState) throws -> Void, onProgress: (Progress) -> Void) throws -> [MetricsRow]
    /// The weights file's tensors and metadata.
    func exportedWeights() -> (tensors: [NamedParameter], metadata: [String: String])
}

func pythonResumeCaveat(_ environments: any EnvironmentCopies) -> String? {
    guard environments.restoreStartsNewEpisodes else { return nil }
    return "\(environments.name) runs in Python, whose state a checkpoint cannot hold: a resumed run starts new episodes (those in progress are cut)"
}

/// The resolved configuration, for a checkpoint's metadata and the check on restore.
func configurationJSON<C: Encodable>(_ configuration: C) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try! encoder.encode(configuration), as: UTF8.self)
}

/// Refuses a checkpoint written by a run with another configuration (the step budget may differ);
/// returns the configuration that wrote it.
@discardableResult
func checkConfiguration<C: Codable & Equatable>(_ archive: StateArchiveReader, matches configuration: C, ignoringSteps set: (inout C) -> Void) throws -> C {
    guard let text = archive.metadata["configuration"], let saved = try? JSONDecoder().decode(C.self, from: Data(text.utf8)) else {
        throw StateArchiveError("checkpoint \(archive.path) does not say which configuration wrote it")
    }
    var theirs = saved, mine = configuration
    set(&theirs)
    set(&mine)
    if theirs != mine {
        throw StateArchiveError("checkpoint \(archive.path) was written by a run with another configuration than this run's config.json; resume with the run folder that wrote it")
    }
    return saved
}

extension OffPolicyTrainer: TrainingSession {
    public var resumeCaveat: String? { pythonResumeCaveat(environments) }
    public var totalSteps: Int { configuration.steps }
    public var checkpointInterval: Int { configuration.checkpointInterval ?? 25_000 }
    public var metricsColumns: [String] {
        // Actor-learner training adds the age of the weights the actors acted with.
        let actorLearnerColumns = actorLearner == nil ? [] : ["acting_weights_age"]
        if configuration.agent.algorithm.isValueDecomposition { return MetricsRow.valueDecompositionColumns + actorLearnerColumns }
        guard logsActorEncoderDiagnostics else { return MetricsRow.columns + actorLearnerColumns }
        return MetricsRow.withRecurrentActorDiagnostics(sequenceLength: configuration.agent.sampler.sequenceLength) + actorLearnerColumns
    }

    public func exportedWeights() -> (tensors: [NamedParameter], metadata: [String: String]) {
        let a = configuration.agent
        let manifest = agent.policyManifest(actionSpace: environments.actionSpace).metadata
        return (agent.namedParameters(), manifest.merging(["algorithm": a.algorithm.rawValue, "network": a.network.rawValue,
                                                           "environment": configuration.environment, "steps": "\(step)",
                                                           "seed": "\(configuration.seed)"]) { $1 })
    }

    struct State: Codable {
        var step: Int, episodes: Int, episodeReturn: Double, recentReturns: [Double], previousReward: Float
        var rng: RandomGenerator, samplerRNG: RandomGenerator, evaluations: Int, loop: LoopState
        /// Every copy's (absent with one copy: the fields above are copy 0's).
        var episodeReturns: [Double]?, previousRewards: [Float]?
    }

    /// Everything the next steps depend on: agent, replay, sampler, environment, acting state,
    /// counters, random generators, and the loop's position.
    public func save(to archive: StateArchive, prefix: String) throws {
        archive.metadata["configuration"] = configurationJSON(configuration)
        archive.metadata["step"] = "\(step)"
        try agent.save(to: archive, prefix: prefix + "agent.")
        try replay.save(to: archive, prefix: prefix + "replay.")
        try environments.save(to: archive, prefix: prefix + "environment.")
        let N = copies, R = N * agents, o = environments.observationWidth, a = agent.actionWidth, g = environments.globalStateWidth
        archive.put(prefix + "observation", floats: observation, count: R * o)
        archive.put(prefix + "previous_action", floats: previousAction, count: R * a)
        if agent.configuration.context.lastObservation { archive.put(prefix + "previous_observation", floats: previousObservation, count: R * o) }
        if g > 0 { archive.put(prefix + "global_state", floats: globalState, count: N * g) }
        archive.put(prefix + "actor_state", actorState)
        archive.put(prefix + "critic_state", criticState)
        let rewards = Array(UnsafeBufferPointer(start: previousReward, count: R))
        archive.put(prefix + "state", value: State(step: step, episodes: episodes, episodeReturn: episodeReturns[0], recentReturns: recentReturns,
                                                   previousReward: rewards[0], rng: rng, samplerRNG: sampler.rng,
                                                   evaluations: evaluation.count, loop: loop,
                                                   episodeReturns: R > 1 ? episodeReturns : nil, previousRewards: R > 1 ? rewards : nil))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        try checkConfiguration(archive, matches: configuration) { $0.steps = 0; $0.checkpointInterval = nil }
        let s = try archive.value(prefix + "state", as: State.self)
        try agent.restore(from: archive, prefix: prefix + "agent.")
        try replay.restore(from: archive, prefix: prefix + "replay.")
        try environments.restore(from: archive, prefix: prefix + "environment.")
        let N = copies, R = N * agents, o = environments.observationWidth, a = agent.actionWidth, g = environments.globalStateWidth
        let returns = s.episodeReturns ?? [s.episodeReturn], rewards = s.previousRewards ?? [s.previousReward]
        guard returns.count == N, rewards.count == R else {
            throw StateArchiveError("checkpoint \(archive.path): \(returns.count) environment copies with \(rewards.count / max(returns.count, 1)) agents each, this run has \(N) with \(agents)")
        }
        try archive.floats(prefix + "observation", into: observation, count: R * o)
        try archive.floats(prefix + "previous_action", into: previousAction, count: R * a)
        if agent.configuration.context.lastObservation { try archive.floats(prefix + "previous_observation", into: previousObservation, count: R * o) }
        if g > 0 { try archive.floats(prefix + "global_state", into: globalState, count: N * g) }
        try archive.read(prefix + "actor_state", into: actorState)
        try archive.read(prefix + "critic_state", into: criticState)
        step = s.step; episodes = s.episodes; episodeReturns = returns
        previousReward.update(from: rewards, count: R)
        recentReturns.removeAll(keepingCapacity: true)
        recentReturns += s.recentReturns
        rng = s.rng; sampler.rng = s.samplerRNG; evaluation.count = s.evaluations; loop = s.loop
        if actorLearner != nil {
            // The actors start new episodes: the learner's rings end theirs (cut, as truncations).
            replay.cutOpenEpisode()
        }
        if environments.restoreStartsNewEpisodes {
            // A Python environment starts a new episode: the stored one ends (cut, as a truncation)
            // and the acting state starts over as after any reset.
            replay.cutOpenEpisode()
            for n in 0..<N { startEpisode(n) }
        }
    }
}

extension PPOTrainer: TrainingSession {
    public var resumeCaveat: String? {
        let notes = [pythonResumeCaveat(environments), scheduleNote].compactMap { $0 }
        return notes.isEmpty ? nil : notes.joined(separator: "\nnote: ")
    }
    public var totalSteps: Int { configuration.steps }
    public var checkpointInterval: Int { configuration.checkpointInterval ?? 25_000 }
    public var metricsColumns: [String] { MetricsRow.ppoColumns }

    public func exportedWeights() -> (tensors: [NamedParameter], metadata: [String: String]) {
        let p = configuration.ppo
        return (namedTensors(), normalizerMetadata().merging(agent.policyManifest(actionSpace: environments.actionSpace,
                                                                                  algorithm: configuration.algorithm).metadata) { $1 }.merging([
            "algorithm": configuration.algorithm, "network": p.network.rawValue, "environment": configuration.environment,
            "steps": "\(step)", "seed": "\(configuration.seed)",
        ]) { $1 })
    }

    struct State: Codable {
        var step: Int, updates: Int, episodes: Int, statistics: PPOStatistics, recentReturns: [Double], discountedReturns: [Double]
        var evaluations: Int, loop: LoopState
        /// The annealing schedule's start (absent in checkpoints of earlier versions: (0, 1)).
        var scheduleStep: Int?, scheduleRemaining: Float?
    }

    /// Taken between updates (a rollout boundary): the rollout buffer is rewritten by the next
    /// collection, so it is not saved; the copies' environments, states and contexts are.
    public func save(to archive: StateArchive, prefix: String) throws {
        archive.metadata["configuration"] = configurationJSON(configuration)
        archive.metadata["step"] = "\(step)"
        try agent.save(to: archive, prefix: prefix + "agent.")
        try environments.save(to: archive, prefix: prefix + "environments.")
        for (name, t) in [("actor_state", actorState), ("critic_state", criticState), ("previous_actions", previousActions),
                          ("previous_rewards", previousRewards), ("prepared_observations", preparedObservations)] {
            archive.put(prefix + name, t)
        }
        if agent.hasCentralCritic { archive.put(prefix + "prepared_states", preparedStates) }
        archive.put(prefix + "state", value: State(step: step, updates: updates, episodes: episodes, statistics: statistics,
                                                   recentReturns: recentReturns, discountedReturns: discountedReturns,
                                                   evaluations: evaluation.count, loop: loop,
                                                   scheduleStep: schedule.step, scheduleRemaining: schedule.remaining))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let saved = try checkConfiguration(archive, matches: configuration) { $0.steps = 0; $0.checkpointInterval = nil }
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.discountedReturns.count == buffer.envs else {
            throw StateArchiveError("checkpoint \(archive.path): \(s.discountedReturns.count) rollout rows (copies x agents), this run has \(buffer.envs) (\(environments.count) copies x \(agents) agents)")
        }
        try agent.restore(from: archive, prefix: prefix + "agent.")
        try environments.restore(from: archive, prefix: prefix + "environments.")
        for (name, t) in [("actor_state", actorState), ("critic_state", criticState), ("previous_actions", previousActions),
                          ("previous_rewards", previousRewards), ("prepared_observations", preparedObservations)] {
            try archive.read(prefix + name, into: t)
        }
        if agent.hasCentralCritic { try archive.read(prefix + "prepared_states", into: preparedStates) }
        step = s.step; updates = s.updates; episodes = s.episodes; statistics = s.statistics
        recentReturns.removeAll(keepingCapacity: true)
        recentReturns += s.recentReturns
        discountedReturns = s.discountedReturns; evaluation.count = s.evaluations; loop = s.loop
        schedule = (s.scheduleStep ?? 0, s.scheduleRemaining ?? 1)
        if saved.steps != configuration.steps {
            // A new budget: the schedule goes on from where it stood at this step, to 0 at the new end.
            let savedSteps = saved.steps
            schedule = (step, scheduleRemaining(atStep: step, budget: savedSteps))
            let p = configuration.ppo
            if schedule.remaining <= 0 && p.annealLearningRate {
                scheduleNote = "the learning rate had annealed to 0 by step \(step) (the end of the earlier budget of \(savedSteps) steps) and a new budget continues the schedule from where it stands, so the extra steps collect and evaluate but do not change the policy; train longer from the start (a larger --steps), or with --no-anneal-lr"
            } else {
                scheduleNote = "a new budget continues the learning-rate and clip-range schedule from where it stood at step \(step) (\(String(format: "%.3f", schedule.remaining)) of the initial values), linearly to 0 at step \(configuration.steps)"
            }
        }
        // A checkpoint is taken after an update, when the ranks' statistics agree.
        if ranks != nil { agreeOnStatistics() }
        if environments.restoreStartsNewEpisodes {
            // Python copies start new episodes: per-copy state starts over as after any reset.
            for t in [actorState, criticState, previousActions, previousRewards] { t.zero() }
            discountedReturns = [Double](repeating: 0, count: buffer.envs)
            prepareObservations()
        }
    }
}

/// A corrupt or unreadable checkpoint, or none where one was expected.
public struct CheckpointError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A run's checkpoints: `checkpoints/step-NNNNNNNNNNNN.ckpt`, each written atomically (temporary
/// file, fsync, rename, fsync of the folder); after a new one is in place, all but the newest
/// `keep` are deleted, so the previous good checkpoint survives a crash during the next write.
public final class CheckpointStore {
    public let directory: URL
    public let keep: Int

    public init(directory: URL, keep: Int = 2) {
        precondition(keep >= 1, "keep at least one checkpoint")
        self.directory = directory
        self.keep = keep
    }

    func url(step: Int) -> URL { directory.appendingPathComponent(String(format: "step-%012d.ckpt", step)) }

    /// The checkpoints in place, oldest first (temporary files of interrupted writes are ignored).
    public func list() -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("step-"), name.hasSuffix(".ckpt"), let step = Int(name.dropFirst(5).dropLast(5)) else { return nil }
            return (step, directory.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    /// Writes `session`'s state as the checkpoint of its current step.
    @discardableResult
    public func write(_ session: any TrainingSession) throws -> URL {
        let archive = StateArchive()
        try session.save(to: archive, prefix: "")
        return try write(archive.encode(), step: session.step)
    }

    /// `crashAfter` (tests): write only that many bytes of the temporary file and stop, as a crash would.
    @discardableResult
    func write(_ data: Data, step: Int, crashAfter: Int? = nil) throws -> URL {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError("cannot create the checkpoint folder \(directory.path): \(error.localizedDescription)")
        }
        let destination = url(step: step)
        if let crashAfter {
            let temporary = directory.appendingPathComponent(".\(destination.lastPathComponent).tmp-crash")
            try data.prefix(crashAfter).write(to: temporary)
            throw CheckpointError("simulated crash while writing \(destination.path)")
        }
        try writeAtomically(data, to: destination, role: "checkpoint")
        for old in list().dropLast(keep) { try? FileManager.default.removeItem(at: old.url) }
        return destination
    }

    /// Opens the newest checkpoint. A newest checkpoint that is damaged is an error that names it and
    /// the previous one (which stays usable: pass it to `load`).
    public func latest() throws -> StateArchiveReader? {
        let all = list()
        guard let newest = all.last else { return nil }
        do {
            return try StateArchiveReader(url: newest.url)
        } catch {
            var message = "\(error)"
            if let previous = all.dropLast().last {
                if (try? StateArchiveReader(url: previous.url)) != nil {
                    message += ". The previous checkpoint (step \(previous.step)) is intact: move \(newest.url.path) out of \(directory.path) and resume again to continue from step \(previous.step)"
                } else {
                    message += ". The previous checkpoint (step \(previous.step)) is damaged too, so the run cannot be resumed: start it again (the metrics and weights in the run folder are kept until you do)"
                }
            } else {
                message += ". There is no earlier checkpoint: start the run again"
            }
            throw CheckpointError(message)
        }
    }
}

/// The parameter group of a parameter's name: its network (actor, critic0, critic_target1, ...),
/// and the part of it (encoder or head) when the name says.
func parameterGroup(_ name: String) -> String {
    let parts = name.split(separator: ".")
    guard let network = parts.first else { return name }
    if parts.count > 1, ["encoder", "head"].contains(parts[1]) { return "\(network) \(parts[1])" }
    return String(network)
}
