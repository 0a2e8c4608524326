import Agents
import Collectives
import Foundation
import Replay
import Tensors

/// Actor-learner off-policy training over MPI ranks (Ape-X, R2D2): rank 0 is the learner (the
/// replay, the updates, evaluation, checkpoints); ranks 1 ..< N are actors, each stepping its own
/// environment copies with the weights the learner last sent it.
///
/// The exchange goes in rounds, so a run is the same for the same seed and rank count: each actor
/// steps its copies `stepsPerMessage` times, then sends the steps (with the recurrent states it
/// acted with, for stored-state windows), the returns of the episodes it finished and the version of
/// its weights; the learner takes the actors' messages in rank order, adds their steps to the ring
/// of that actor's copy, answers each (new weights when it made `weightsInterval` updates since
/// that actor's last ones; stop at the end), and then makes the updates the steps received are
/// owed, at the ratio one process makes them (`criticUpdateInterval`). Actors act while the learner
/// updates. The age of the weights each step was taken with (in learner updates) is logged.
///
/// An actor the learner hears nothing from for `timeout` seconds is reported by rank and the run
/// stops (it is never waited for forever); an actor that dies is reported by mpirun, which stops the job.
public final class ActorLearner {
    public let ranks: any Communicator
    public var isLearner: Bool { ranks.rank == 0 }
    /// Environment passes per message from an actor.
    public let stepsPerMessage: Int
    /// Learner updates between two weight sends to an actor.
    public let weightsInterval: Int
    /// Seconds the learner waits for an actor's message before reporting it.
    public let timeout: Double
    /// An actor's finished episodes' returns since its last message.
    var finishedReturns: [Double] = []
    /// Learner: the version (critic updates) of the weights last sent to each actor; actors: of the weights acting.
    var sentVersions: [Int]
    var actingVersion = 0
    /// Learner: the weights' age over the steps received since the last metrics row (sum, steps).
    var ageSum = 0.0, ageSteps = 0
    /// Learner: whether the actors were told to stop.
    var actorsStopped = false

    init(ranks: any Communicator, configuration: OffPolicyConfiguration) {
        self.ranks = ranks
        stepsPerMessage = configuration.actorSteps ?? 1
        weightsInterval = configuration.weightsInterval ?? 1
        let environment = ProcessInfo.processInfo.environment
        timeout = environment["RRL_ACTOR_TIMEOUT"].flatMap(Double.init) ?? 120
        sentVersions = Array(repeating: -1, count: ranks.size)
    }

    /// An actor's message: how many steps (records) follow, the weights they were taken with, and returns.
    struct Report: Codable {
        var steps: Int, version: Int, returns: [Double]
    }

    /// The learner's answer: stop, the step count over all actors (for warm-up and exploration
    /// schedules), and the version of the weights that follow (none: keep yours).
    struct Answer: Codable {
        var stop: Bool, step: Int, version: Int?
    }

    /// A JSON header with its length in front, then raw floats.
    static func pack<H: Encodable>(_ header: H, floats: UnsafeBufferPointer<Float>) -> Data {
        let json = try! JSONEncoder().encode(header)
        var length = UInt32(json.count).littleEndian
        var data = Data(bytes: &length, count: 4)
        data.append(json)
        data.append(floats)
        return data
    }

    static func unpack<H: Decodable>(_ data: Data, as: H.Type, from rank: Int) throws -> (H, [Float]) {
        guard data.count >= 4 else { throw TrainingError("rank \(rank) sent a message of \(data.count) bytes that rrl cannot read (a different rrl build on that rank?)") }
        let length = Int(data.prefix(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
        guard data.count >= 4 + length, (data.count - 4 - length) % 4 == 0,
              let header = try? JSONDecoder().decode(H.self, from: data.subdata(in: 4..<(4 + length))) else {
            throw TrainingError("rank \(rank) sent a message that rrl cannot read (a different rrl build on that rank?)")
        }
        let floats = data.subdata(in: (4 + length)..<data.count).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (header, floats)
    }
}

extension OffPolicyTrainer {
    /// The weights the actors act with, as one flat array (`OffPolicyAgent.namedParameters` in order).
    func actingWeights() -> [Float] {
        agent.namedParameters().flatMap { $0.parameter.value.array }
    }

    func loadActingWeights(_ values: [Float]) throws {
        var at = 0
        let parameters = agent.namedParameters()
        let total = parameters.reduce(0) { $0 + $1.parameter.value.count }
        guard values.count == total else {
            throw TrainingError("the learner sent \(values.count) weights and this actor has \(total): the ranks run different configurations or rrl builds")
        }
        for (_, p) in parameters {
            p.value.data.update(from: values, count: p.value.count, at: at)
            at += p.value.count
        }
    }

    /// Learner: one round. Takes every actor's steps (in rank order), answers each, then makes the
    /// updates they are owed.
    func advanceAsLearner(_ al: ActorLearner) throws {
        let N = environments.count, before = step
        var answered: [(rank: Int, version: Int)] = []
        for k in 1..<al.ranks.size {
            guard let message = al.ranks.receive(from: k, tag: MessageTags.steps, timeout: al.timeout) else {
                throw TrainingError("actor rank \(k) sent nothing for \(Int(al.timeout)) s (at step \(step)): it hangs or its environment stopped answering; the run stops (its last checkpoint is kept; RRL_ACTOR_TIMEOUT sets the wait in seconds)")
            }
            let (report, records) = try ActorLearner.unpack(message, as: ActorLearner.Report.self, from: k)
            let width = StepRecorder.recordFloats(replay.layout)
            guard records.count == report.steps * width else {
                throw TrainingError("actor rank \(k) sent \(records.count) floats for \(report.steps) steps of \(width): the ranks run different configurations or rrl builds")
            }
            records.withUnsafeBufferPointer {
                StepRecorder.add($0.baseAddress!, count: report.steps, layout: replay.layout, to: replay, copyOffset: (k - 1) * N)
            }
            step += report.steps
            for r in report.returns { recordFinishedEpisode(return: r) }
            al.ageSum += Double(report.steps * (agent.criticUpdates - report.version))
            al.ageSteps += report.steps
            answered.append((k, report.version))
        }
        let stop = step >= configuration.steps
        var weights: [Float]?
        for (k, _) in answered {
            let fresh = al.sentVersions[k] < 0 || agent.criticUpdates - al.sentVersions[k] >= al.weightsInterval
            let answer = ActorLearner.Answer(stop: stop, step: step, version: fresh && !stop ? agent.criticUpdates : nil)
            if answer.version != nil { al.sentVersions[k] = agent.criticUpdates }
            let data = answer.version == nil ? ActorLearner.pack(answer, floats: UnsafeBufferPointer(start: nil, count: 0))
                                             : weights.cached(actingWeights).withUnsafeBufferPointer { ActorLearner.pack(answer, floats: $0) }
            guard al.ranks.send(data, to: k, tag: MessageTags.answer, timeout: al.timeout) else {
                throw TrainingError("actor rank \(k) took no answer for \(Int(al.timeout)) s (at step \(step)): it hangs or its environment stopped answering; the run stops (its last checkpoint is kept; RRL_ACTOR_TIMEOUT sets the wait in seconds)")
            }
        }
        al.actorsStopped = stop
        // The updates owed for the steps received, at one process's ratio.
        let interval = agent.configuration.criticUpdateInterval
        var due = (before / interval + 1) * interval
        while due <= step {
            if due >= configuration.warmupSteps { try update(atStep: due) }
            due += interval
        }
    }

    /// Learner: tells actors still acting to stop (after the last round, an interrupt or a failure
    /// the actors cannot see); their steps in flight are dropped.
    public func stopActors() {
        guard let al = actorLearner, al.isLearner, !al.actorsStopped else { return }
        al.actorsStopped = true
        for k in 1..<al.ranks.size {
            guard al.ranks.receive(from: k, tag: MessageTags.steps, timeout: al.timeout) != nil else { continue }
            let answer = ActorLearner.Answer(stop: true, step: step, version: nil)
            _ = al.ranks.send(ActorLearner.pack(answer, floats: UnsafeBufferPointer(start: nil, count: 0)), to: k, tag: MessageTags.answer, timeout: al.timeout)
        }
    }

    /// Actor: acts and sends its steps until the learner says stop. Signals are left to the learner
    /// (mpirun passes them to every rank; the learner checkpoints and then stops the actors).
    public func runAsActor() throws {
        guard let al = actorLearner, !al.isLearner, let recorder = store as? StepRecorder else { return }
        InterruptSignals.install()
        defer { InterruptSignals.restore() }
        while true {
            for _ in 0..<al.stepsPerMessage { try advance() }
            let report = ActorLearner.Report(steps: recorder.steps, version: al.actingVersion, returns: al.finishedReturns)
            al.ranks.send(recorder.records.withUnsafeBufferPointer { ActorLearner.pack(report, floats: $0) }, to: 0, tag: MessageTags.steps)
            recorder.clear()
            al.finishedReturns.removeAll(keepingCapacity: true)
            // (The learner may evaluate or checkpoint for a while: an actor waits for it without a limit.)
            let (answer, weights) = try ActorLearner.unpack(al.ranks.receive(from: 0, tag: MessageTags.answer, timeout: nil)!, as: ActorLearner.Answer.self, from: 0)
            if answer.stop { return }
            step = answer.step
            if let version = answer.version {
                try loadActingWeights(weights)
                al.actingVersion = version
            }
        }
    }

    /// The mean age, in learner updates, of the weights the steps received since the last call were taken with.
    func takeActingWeightsAge() -> Double {
        guard let al = actorLearner, al.ageSteps > 0 else { return .nan }
        defer { al.ageSum = 0; al.ageSteps = 0 }
        return al.ageSum / Double(al.ageSteps)
    }
}

extension RandomGenerator {
    /// The generator of rank `rank` (above 0) of a multi-rank run whose single-process seed is
    /// `seed`: its own environment seeds and exploration (rank 0 keeps the single-process seeds).
    init(forRank rank: Int, of seed: UInt64) {
        self.init(seed: seed &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15)
    }
}

extension Optional {
    /// The value, made by `make` and kept the first time it is needed.
    mutating func cached(_ make: () -> Wrapped) -> Wrapped {
        if let value = self { return value }
        let value = make()
        self = value
        return value
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    /// Copies `count` values of `source` starting at `at`.
    func update(from source: [Float], count: Int, at: Int) {
        source.withUnsafeBufferPointer { self.update(from: $0.baseAddress! + at, count: count) }
    }
}
