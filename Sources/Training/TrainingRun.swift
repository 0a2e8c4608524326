import Agents
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors

/// A training run in its folder: the library's whole training loop, with checkpoints (every
/// interval, at the end, and when SIGINT, SIGTERM or SIGHUP arrives), exact resume, the metrics log
/// and TensorBoard events, the weights file, and what to do when something fails. `rrl train` is a
/// thin layer over it; a library user gets the same by calling it.
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

    /// A new run in `path`. The trainer is built first (environments, the memory check, networks), so a
    /// run that cannot start leaves no folder behind; the folder is then taken by `RunFolder`'s rules
    /// (an earlier run is replaced only with `overwrite`).
    public init(configuration: RunConfiguration, path: String, overwrite: Bool = false) throws {
        self.configuration = configuration
        session = try makeTrainingSession(configuration)
        folder = try RunFolder(path: path, overwrite: overwrite)
        store = CheckpointStore(directory: folder.checkpointsURL)
        try folder.writeConfiguration(configuration)
        try folder.startMetrics(columns: session.metricsColumns)
        if case .ppo(let c) = configuration {
            let perRollout = c.ppo.environments * c.ppo.rolloutSteps
            if c.steps % perRollout != 0 {
                notes.append("PPO trains on whole rollouts of \(perRollout) steps (\(c.ppo.environments) copies x \(c.ppo.rolloutSteps)), so it runs \((c.steps + perRollout - 1) / perRollout * perRollout) steps")
            }
        }
    }

    /// Continues the run in `path` from its newest checkpoint, with its own configuration (a new step
    /// budget or checkpoint interval aside). Everything is checked before anything is changed.
    public init(resuming path: String, steps: Int? = nil, checkpointInterval: Int? = nil) throws {
        folder = try RunFolder(resuming: path)
        store = CheckpointStore(directory: folder.checkpointsURL)
        var configuration = try ConfigurationFile.load(path: folder.configurationURL.path)
        configuration.set(steps: steps, checkpointInterval: checkpointInterval)
        try configuration.validate()
        self.configuration = configuration
        session = try makeTrainingSession(configuration)
        guard let archive = try store.latest() else {
            throw ConfigurationError("\(path) has no checkpoint to resume from (\(folder.checkpointsURL.path) is empty); start the run again")
        }
        try session.restore(from: archive, prefix: "")
        lastCheckpoint = store.list().last?.step
        resumedFrom = archive.path
        if session.step >= session.totalSteps && FileManager.default.fileExists(atPath: folder.weightsURL.path) {
            throw ConfigurationError("the run in \(path) already reached its \(session.totalSteps) steps (its last checkpoint is at step \(session.step)); pass --steps with a larger budget to train on")
        }
        let kept = try folder.readMetrics(columns: session.metricsColumns, rows: session.loop.rows)
        try folder.writeConfiguration(configuration)
        try folder.resumeMetrics(columns: session.metricsColumns, keeping: kept)
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
        if session.step >= session.totalSteps {
            // Stopped after its last checkpoint but before its weights were written: finish that.
            try writeWeights()
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
                    try folder.append(row)
                } catch let error as FileWriteError {
                    throw WriteStopped(error: error)
                }
                onRow(row)
                last = row
            }, afterStep: { _ in
                if let signal = InterruptSignals.received {
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
            try writeWeights()
            return .interrupted(signal: stop.signal, step: session.step)
        } catch let error as TrainingError {
            throw RunFailure(message: error.message, lastCheckpoint: lastCheckpoint, folder: folder)
        } catch let error as EnvironmentError {
            throw RunFailure(message: "\(error)", lastCheckpoint: lastCheckpoint, folder: folder)
        }
        if lastCheckpoint != session.step { try checkpoint() }
        try writeWeights()
        return .finished(last)
    }

    func checkpoint() throws {
        try store.write(session)
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

/// The trainer of a configuration.
public func makeTrainingSession(_ configuration: RunConfiguration) throws -> any TrainingSession {
    switch configuration {
    case .offPolicy(let c): return try OffPolicyTrainer(configuration: c)
    case .ppo(let c): return try PPOTrainer(configuration: c)
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
