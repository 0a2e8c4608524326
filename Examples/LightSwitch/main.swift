// A partially observable task written as user code, registered under a name, and learned by
// recurrent SAC with checkpoints (Ctrl-C stops it; run it again to continue from the checkpoint).
//
//   swift run -c release LightSwitchExample [run-folder]
import Foundation
import RecurrentRL

/// A light flashes left (-1) or right (+1) at the first step, then the room is dark for `delay`
/// steps; at the last step the agent must point where the light was: the reward is the action times
/// the side (+1 for pointing fully right). Without memory the best an agent can do is 0 on average.
final class LightSwitch: Environment {
    let delay: Int
    var rng = RandomGenerator(seed: 0)
    var side: Float = 1, t = 0

    init(delay: Int) { self.delay = delay }

    var name: String { "light-switch" }
    var observationSpace: Space { .box(low: [-1, 0], high: [1, 1]) }  // (light, "choose now")
    var actionSpace: Space { .box(low: [-1], high: [1]) }
    var maxEpisodeSteps: Int { delay + 1 }

    func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        side = rng.uniform() < 0.5 ? -1 : 1
        t = 0
        observation[0] = side
        observation[1] = 0
    }

    func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        t += 1
        observation[0] = 0
        observation[1] = t == delay ? 1 : 0
        guard t > delay else { return StepResult(reward: 0) }
        return StepResult(reward: action[0] * side, terminated: true)
    }

    // Checkpoints hold everything the next steps depend on.
    struct State: Codable { var rng: RandomGenerator, side: Float, t: Int }
    func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, side: side, t: t))
    }
    func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        (rng, side, t) = (s.rng, s.side, s.t)
    }
}

try EnvironmentRegistry.register("light-switch", summary: "point where the light flashed, after a dark delay",
                                 options: ["delay": "dark steps before the choice (default 5)"]) { options in
    LightSwitch(delay: try options.int("delay", default: 5, in: 1...1000))
}

let folder = CommandLine.arguments.dropFirst().first ?? "runs/light-switch-example"
let run: TrainingRun
let finished = FileManager.default.fileExists(atPath: folder + "/weights.safetensors")
if !finished && FileManager.default.fileExists(atPath: folder + "/checkpoints") {
    run = try TrainingRun(resuming: folder)
} else {
    var configuration = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "light-switch")
    configuration.environmentOptions = ["delay": "6"]
    configuration.steps = 10_000
    configuration.evaluationInterval = 2_500
    configuration.checkpointInterval = 5_000
    configuration.agent.network = .gru          // short episodes: train on whole episodes from a zero state
    configuration.agent.hiddenSize = 32
    configuration.agent.headHiddenSizes = [64]
    configuration.agent.sampler.sequenceLength = 7
    configuration.agent.sampler.alwaysStartAtEpisodeStart = true
    configuration.agent.batchSize = 32
    configuration.agent.gamma = 0.9
    run = try TrainingRun(configuration: .offPolicy(configuration), path: folder, overwrite: true)
}
switch try run.train(onRow: { row in print("step \(Int(row["step"]!))  evaluation return \(String(format: "%.2f", row["eval_return_mean"]!))") }) {
case .finished: print("done: \(run.folder.url.path)")
case .interrupted(_, let step): print("stopped at step \(step); run again to continue")
}
