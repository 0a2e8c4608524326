import Agents
import Collectives
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors

/// A training run in its folder: the library's whole training loop, with checkpoints (every
/// interval, at the end, and when SIGINT, SIGTERM or SIGHUP arrives), exact resume, the metrics log
/// and TensorBoard events, the weights file, and what to do when something fails. `rrl train` is a
/// thin layer over it; a library user gets the same by calling it. Under mpirun every rank makes
/// its own `TrainingRun` with the same arguments and `ranks`.
///
/// ```swift
/// let run = try TrainingRun(configuration: .offPolicy(configuration), path: "runs/mine")
/// let outcome = try run.train()
/// // later, or after a crash:
/// let resumed = try TrainingRun(resuming: "runs/mine")
/// ```
public final class TrainingRun {
    public let configuration: RunConfiguration
    public let session: any TrainingSession
    public let folder: RunFolder
    let store: CheckpointStore
    /// The step of the newest checkpoint in place (nil: none yet).
    public private(set) var lastCheckpoint: Int?
    /// Notes for the user (a resume's caveats), to print before training.
    public private(set) var notes: [String] = []
    /// The checkpoint a resumed run started from.
    public private(set) var resumedFrom: String?

    /// The MPI ranks training together (nil: one process): data-parallel (PPO, IPPO, MAPPO) or
    /// actor-learner (the off-policy algorithms). Rank 0 alone writes the run folder.
    public let ranks: (any Communicator)?
    /// Whether this process writes the run folder (rank 0, or a single process).
    public var writesFolder: Bool { (ranks?.rank ?? 0) == 0 }
    /// Whether every rank trains in lockstep (data-parallel PPO): then every rank's state goes into
    /// the checkpoints and a signal stops all together. Otherwise (actor-learner) rank 0 alone.
    var lockstep: Bool { ranks != nil && !(session is OffPolicyTrainer) }
    /// This rank's trainer when it is an actor of actor-learner training.
    var actorRank: OffPolicyTrainer? { (session as? OffPolicyTrainer).flatMap { $0.actorLearner?.isLearner == false ? $0 : nil } }

    /// A new run in `path`. The trainer is built first (environments, the memory check, networks), so a
    /// run that cannot start leaves no folder behind; the folder is then taken by `RunFolder`'s rules
    /// (an earlier run is replaced only with `overwrite`). `ranks`: train with the other ranks (every
    /// rank calls this with the same arguments).
    public init(configuration: RunConfiguration, path: String, overwrite: Bool = false, ranks: (any Communicator)? = nil) throws {
        self.configuration = configuration
        let ranks = severalRanks(ranks)
        self.ranks = ranks
        let root = (ranks?.rank ?? 0) == 0
        var made: (session: any TrainingSession, folder: RunFolder)?
        try agreeing(ranks) {
            let session = try makeTrainingSession(configuration, ranks: ranks)
            guard root else { made = (session, RunFolder(writtenElsewhere: path)); return }
            let folder = try RunFolder(path: path, overwrite: overwrite)
            try folder.writeConfiguration(configuration)
            try folder.startMetrics(columns: session.metricsColumns)
            made = (session, folder)
        }
        (session, folder) = made!
        store = CheckpointStore(directory: folder.checkpointsURL)
        if case .ppo(let c) = configuration {
            let perRollout = c.ppo.environments * c.ppo.rolloutSteps * (ranks?.size ?? 1)
            if c.steps % perRollout != 0 {
                let ranksNote = ranks.map { " x \($0.size) ranks" } ?? ""
                notes.append("PPO trains on whole rollouts of \(perRollout) steps (\(c.ppo.environments) copies x \(c.ppo.rolloutSteps)\(ranksNote)), so it runs \((c.steps + perRollout - 1) / perRollout * perRollout) steps")
            }
        }
    }

    /// Continues the run in `path` from its newest checkpoint, with its own configuration (a new step
    /// budget or checkpoint interval aside). Everything is checked before anything is changed. A
    /// data-parallel run resumes with as many ranks as wrote the checkpoint: rank 0 reads the folder
    /// and hands every other rank its configuration and its part of the checkpoint.
    public init(resuming path: String, steps: Int? = nil, checkpointInterval: Int? = nil, ranks: (any Communicator)? = nil) throws {
        let ranks = severalRanks(ranks)
        self.ranks = ranks
        let root = (ranks?.rank ?? 0) == 0, size = ranks?.size ?? 1
        var folderRead: RunFolder?, archive: StateArchiveReader?, saved: RunConfiguration?
        try agreeing(ranks) {
            guard root else { return }
            let folder = try RunFolder(resuming: path)
            saved = try ConfigurationFile.load(path: folder.configurationURL.path)
            guard let newest = try CheckpointStore(directory: folder.checkpointsURL).latest() else {
                throw ConfigurationError("\(path) has no checkpoint to resume from (\(folder.checkpointsURL.path) is empty); start the run again")
            }
            let writers = Int(newest.metadata["ranks"] ?? "1") ?? 1
            if writers != size {
                throw ConfigurationError("the checkpoint \(newest.path) was written by \(writers == 1 ? "one process" : "\(writers) MPI ranks") and this run has \(size == 1 ? "one process" : "\(size) ranks"); resume it with \(writers == 1 ? "a plain `rrl train --resume`" : "`mpirun -np \(writers) rrl train --resume \(path)`") (a run continues exactly only with the rank count that wrote it)")
            }
            (folderRead, archive) = (folder, newest)
        }
        // Rank 0's configuration, on every rank.
        var configuration: RunConfiguration
        if let ranks {
            let text = ranks.broadcast(root ? (try? JSONEncoder().encode(saved!)) ?? Data() : Data(), root: 0)
            configuration = try ConfigurationFile.parse(text, source: "rank 0's \(path)/config.json")
        } else {
            configuration = saved!
        }
        configuration.set(steps: steps, checkpointInterval: checkpointInterval)
        try agreeing(ranks) { try configuration.validate() }
        self.configuration = configuration
        var made: (any TrainingSession)?
        try agreeing(ranks) { made = try makeTrainingSession(configuration, ranks: ranks) }
        session = made!
        folder = folderRead ?? RunFolder(writtenElsewhere: path)
        store = CheckpointStore(directory: folder.checkpointsURL)
        // Every rank's part: rank 0's entries are the file's own, rank k's is the file's entry `rank.k`.
        // (Actor-learner: the learner's alone; the actors start afresh and take its weights.)
        var parts: [Data]?
        let lockstep = self.lockstep
        try agreeing(ranks) { parts = root && lockstep ? try [Data()] + (1..<size).map { try archive!.bytes("rank.\($0)") } : nil }
        let part = lockstep ? ranks?.scatter(parts) : nil
        let mine = root ? archive : lockstep ? try StateArchiveReader(data: part!, path: "\(path) (rank \(ranks!.rank)'s part)") : nil
        let session = self.session
        try agreeing(ranks) {
            if let mine { try session.restore(from: mine, prefix: "") }
            if root && session.step >= session.totalSteps && FileManager.default.fileExists(atPath: folder.weightsURL.path) {
                throw ConfigurationError("the run in \(path) already reached its \(session.totalSteps) steps (its last checkpoint is at step \(session.step)); pass --steps with a larger budget to train on")
            }
        }
        lastCheckpoint = session.step
        resumedFrom = mine?.path
        if root {
            let kept = try folder.readMetrics(columns: session.metricsColumns, rows: session.loop.rows)
            try folder.writeConfiguration(configuration)
            try folder.resumeMetrics(columns: session.metricsColumns, keeping: kept)
        }
        if let caveat = session.resumeCaveat { notes.append(caveat) }
    }

    /// How a call to `train` ended.
    public enum Outcome {
        /// The budget was reached; the last metrics row.
        case finished(MetricsRow?)
        /// A signal stopped the run after its checkpoint and weights were written.
        case interrupted(signal: Int32, step: Int)
    }

    /// Trains to the end of the budget. `handleSignals`: SIGINT, SIGTERM and SIGHUP stop the run
    /// between two steps with a checkpoint (restored to their defaults afterwards). A failure is a
    /// `RunFailure` that says where the last good checkpoint and the metrics are.
    @discardableResult
    public func train(handleSignals: Bool = true, onRow: (MetricsRow) -> Void = { _ in }, onProgress: (Progress) -> Void = { _ in }) throws -> Outcome {
        if let actor = actorRank {
            // An actor rank acts and sends its steps until the learner says stop.
            try actor.runAsActor()
            return .finished(nil)
        }
        // A learner stops its actors however training ends.
        defer { (session as? OffPolicyTrainer)?.stopActors() }
        if session.step >= session.totalSteps {
            // Stopped after its last checkpoint but before its weights were written: finish that.
            if writesFolder { try writeWeights() }
            return .finished(nil)
        }
        let interval = session.checkpointInterval
        var nextCheckpoint = interval > 0 ? (session.step / interval + 1) * interval : Int.max
        if handleSignals { InterruptSignals.install() }
        defer { if handleSignals { InterruptSignals.restore() } }
        var last: MetricsRow?
        do {
            try session.run(onRow: { row in
                do {
                    if writesFolder { try folder.append(row) }
                } catch let error as FileWriteError {
                    throw WriteStopped(error: error)
                }
                onRow(row)
                last = row
            }, afterStep: { _ in
                if let signal = agreedSignal() {
                    try checkpoint()
                    throw Interrupted(signal: signal)
                }
                if session.step >= nextCheckpoint {
                    try checkpoint()
                    while nextCheckpoint <= session.step { nextCheckpoint += interval }
                }
            }, onProgress: onProgress)
        } catch let stop as WriteStopped {
            // The metrics cannot be written (a full disk): keep what was learned in a checkpoint if one fits.
            var message = "\(stop.error)\nTraining stopped at step \(session.step). "
            do {
                // (A checkpoint needs every rank, which this rank alone cannot ask for: the last good one stays.)
                guard !lockstep else { throw CheckpointError("the other ranks are not taking one") }
                try checkpoint()
                message += "A checkpoint of this step is in \(folder.checkpointsURL.path); "
            } catch {
                message += "No checkpoint of this step fits either (\(error)); "
                message += lastCheckpoint.map { "the last good checkpoint (step \($0)) is kept in \(folder.checkpointsURL.path); " } ?? "there is no earlier checkpoint; "
            }
            message += "metrics.csv holds every row written before. Free some space, then continue with `rrl train --resume \(folder.url.path)`."
            throw RunFailure(message: message, lastCheckpoint: nil, folder: folder)
        } catch let error as FileWriteError {
            throw RunFailure(message: "\(error)\nTraining stopped at step \(session.step).", lastCheckpoint: lastCheckpoint, folder: folder)
        } catch let stop as Interrupted {
            if writesFolder { try writeWeights() }
            return .interrupted(signal: stop.signal, step: session.step)
        } catch let error as TrainingError {
            throw RunFailure(message: error.message, lastCheckpoint: lastCheckpoint, folder: folder)
        } catch let error as EnvironmentError {
            throw RunFailure(message: "\(error)", lastCheckpoint: lastCheckpoint, folder: folder)
        }
        if lastCheckpoint != session.step { try checkpoint() }
        if writesFolder { try writeWeights() }
        return .finished(last)
    }

    /// A signal received by this process, or (several ranks) by any rank: every rank stops after the same step.
    func agreedSignal() -> Int32? {
        let own = InterruptSignals.received
        guard let ranks, lockstep else { return own }
        return ranks.sum(own == nil ? 0 : 1) > 0 ? own ?? SIGTERM : nil
    }

    /// Writes the checkpoint of this step. Several ranks: each saves its own state, and rank 0 writes
    /// one file holding its own entries and every other rank's archive as the entry `rank.K`.
    func checkpoint() throws {
        let archive = StateArchive()
        try session.save(to: archive, prefix: "")
        if let ranks {
            archive.metadata["ranks"] = "\(ranks.size)"
            if lockstep, let parts = ranks.gather(ranks.rank == 0 ? Data() : archive.encode()) {
                for k in 1..<ranks.size { archive.put("rank.\(k)", bytes: parts[k]) }
            }
        }
        if writesFolder { try store.write(archive.encode(), step: session.step) }
        lastCheckpoint = session.step
    }

    func writeWeights() throws {
        let weights = session.exportedWeights()
        try folder.writeWeights(weights.tensors, metadata: weights.metadata)
    }
}

/// A run that cannot go on, with where its last good checkpoint and its metrics are.
public struct RunFailure: Error, CustomStringConvertible {
    public let message: String
    public let lastCheckpoint: Int?
    let folder: RunFolder

    public var description: String {
        guard let lastCheckpoint else { return message }
        return message + "\nThe last good checkpoint (step \(lastCheckpoint)) is kept in \(folder.checkpointsURL.path); metrics up to the failure are in \(folder.metricsURL.path); continue with `rrl train --resume \(folder.url.path)` once the cause is fixed."
    }
}

/// The trainer of a configuration (with `ranks`: this rank's part of a data-parallel or actor-learner run).
public func makeTrainingSession(_ configuration: RunConfiguration, ranks: (any Communicator)? = nil) throws -> any TrainingSession {
    switch configuration {
    case .offPolicy(let c):
        return try OffPolicyTrainer(configuration: c, ranks: ranks)
    case .ppo(let c): return try PPOTrainer(configuration: c, ranks: ranks)
    }
}

/// Runs `body` on every rank (a setup step that may fail). When it fails on any rank, every rank
/// throws, the failing ones their own error and the others one that names them, so that no rank
/// goes on to wait for a rank that stopped.
func agreeing(_ ranks: (any Communicator)?, _ body: () throws -> Void) throws {
    guard let ranks else { return try body() }
    var failure: Error?
    do { try body() } catch { failure = error }
    var flags = [Double](repeating: 0, count: ranks.size)
    flags[ranks.rank] = failure == nil ? 0 : 1
    flags.withUnsafeMutableBufferPointer { ranks.sum($0.baseAddress!, count: $0.count) }
    if let failure { throw failure }
    let failed = flags.indices.filter { flags[$0] != 0 }
    if !failed.isEmpty {
        throw TrainingError("rank\(failed.count > 1 ? "s" : "") \(failed.map(String.init).joined(separator: ", ")) could not go on (\(failed.count > 1 ? "their messages say" : "its message says") why); this rank stops too")
    }
}

extension RunConfiguration: Encodable {
    public func encode(to encoder: Encoder) throws {
        switch self {
        case .offPolicy(let c): try c.encode(to: encoder)
        case .ppo(let c): try c.encode(to: encoder)
        }
    }

    public var seed: UInt64 {
        switch self {
        case .offPolicy(let c): return c.seed
        case .ppo(let c): return c.seed
        }
    }

    /// A new step budget and checkpoint interval (what a resume may change).
    mutating func set(steps: Int?, checkpointInterval: Int?) {
        switch self {
        case .offPolicy(var c):
            if let steps { c.steps = steps }
            if let checkpointInterval { c.checkpointInterval = checkpointInterval }
            self = .offPolicy(c)
        case .ppo(var c):
            if let steps { c.steps = steps }
            if let checkpointInterval { c.checkpointInterval = checkpointInterval }
            self = .ppo(c)
        }
    }

    public func validate() throws {
        switch self {
        case .offPolicy(let c): try c.validate()
        case .ppo(let c): try c.validate()
        }
    }
}

/// Training stopped because a metrics row could not be written.
struct WriteStopped: Error {
    let error: FileWriteError
}

/// Training stopped by a signal, between two steps.
struct Interrupted: Error {
    let signal: Int32
}

/// SIGINT, SIGTERM and SIGHUP set a flag that the training loop reads after each step (so the
/// checkpoint is taken between steps, never in the middle of one).
public enum InterruptSignals {
    nonisolated(unsafe) static var flag: Int32 = 0

    public static var received: Int32? { flag == 0 ? nil : flag }

    public static func install() {
        flag = 0
        signal(SIGINT) { InterruptSignals.flag = $0 }
        signal(SIGTERM) { InterruptSignals.flag = $0 }
        signal(SIGHUP) { InterruptSignals.flag = $0 }
    }

    public static func restore() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        signal(SIGHUP, SIG_DFL)
    }
}
