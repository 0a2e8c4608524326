import Agents
import Environments
import Foundation
import Tensors
import TestSupport
@testable import Training
import XCTest

/// The bridge against Gymnasium itself, its failure handling, and PPO through it. Skipped when
/// python3 with gymnasium (and popgym) is missing; .ci/run installs them.
final class PythonBridgeTests: XCTestCase {
    override func setUpWithError() throws {
        let (status, output) = try runPython("import gymnasium, popgym, numpy; print('ok')", arguments: [])
        if status != 0 { throw XCTSkip("python3 with gymnasium and popgym is not usable here: \(output)") }
    }

    /// The float32 values Python printed (its shortest decimal of each float32, read back as a
    /// Double within one unit of the last place, so rounding to Float32 recovers it exactly).
    func float32(_ values: [Double]?) -> [Float] { (values ?? []).map { Float($0) } }

    /// With fixed actions and seeds, every observation, reward and flag seen through the bridge
    /// equals what Gymnasium gives when called directly (float32, bit for bit), auto-resets included.
    func testBridgeMatchesGymnasiumStepForStep() throws {
        // Box observations (CartPole), Discrete ones (one-hot), Tuple ones (concatenated one-hots),
        // and MultiDiscrete([4, 4]) actions taken as one Discrete(16).
        for (id, modules, actionCount) in [("CartPole-v1", [String](), 2), ("popgym-RepeatPreviousEasy-v0", ["popgym"], 4),
                                           ("popgym-AutoencodeEasy-v0", ["popgym"], 4), ("popgym-MineSweeperEasy-v0", ["popgym"], 16)] {
            let N = 3, T = 120
            let actions = (0..<T * N).map { Float(($0 * 7 + $0 / 5) % actionCount) }
            let script = """
            import sys, json, importlib, numpy as np, gymnasium as gym
            for m in json.loads(sys.argv[2]): importlib.import_module(m)
            N, T = 3, 120
            actions = json.loads(sys.argv[3])
            envs = [gym.make(sys.argv[1]) for _ in range(N)]
            space, action_space = envs[0].observation_space, envs[0].action_space
            def enc(o):
                return gym.spaces.flatten(space, o).astype(np.float32).tolist()
            def act(k):
                if isinstance(action_space, gym.spaces.MultiDiscrete):
                    return np.array(np.unravel_index(k, action_space.nvec), dtype=np.int64)
                return k
            obs = [enc(e.reset(seed=100 + i)[0]) for i, e in enumerate(envs)]
            out = {"reset": obs, "steps": []}
            for t in range(T):
                row = []
                for i, e in enumerate(envs):
                    o, r, term, trunc, _ = e.step(act(int(actions[t * N + i])))
                    final = enc(o)
                    if term or trunc: o, _ = e.reset()
                    row.append([enc(o), float(np.float32(r)), int(term) | 2 * int(trunc), final if (term or trunc) else None])
                out["steps"].append(row)
            print(json.dumps(out))
            """
            let actionsJSON = String(decoding: try JSONSerialization.data(withJSONObject: actions.map { Double($0) }), as: UTF8.self)
            let (status, output) = try runPython(script, arguments: [id, modules.description, actionsJSON])
            XCTAssertEqual(status, 0, output)
            let reference = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            let resetRows = try XCTUnwrap(reference["reset"] as? [[Double]])
            let steps = try XCTUnwrap(reference["steps"] as? [[[Any]]])

            let bridge = try PythonBridge(environment: id, count: N, options: .init(modules: modules))
            let w = bridge.observationWidth
            let obs = UnsafeMutablePointer<Float>.allocate(capacity: N * w), final = UnsafeMutablePointer<Float>.allocate(capacity: N * w)
            let rewards = UnsafeMutablePointer<Float>.allocate(capacity: N), flags = UnsafeMutablePointer<UInt8>.allocate(capacity: N)
            defer { obs.deallocate(); final.deallocate(); rewards.deallocate(); flags.deallocate() }
            try bridge.reset(seed: 100, observations: obs)
            for i in 0..<N { XCTAssertEqual((0..<w).map { obs[i * w + $0] }, float32(resetRows[i]), "\(id) reset \(i)") }
            var ends = 0
            for t in 0..<T {
                try actions.withUnsafeBufferPointer { a in
                    try bridge.step(actions: a.baseAddress! + t * N, observations: obs, finalObservations: final, rewards: rewards, flags: flags)
                }
                for i in 0..<N {
                    let row = steps[t][i]
                    XCTAssertEqual((0..<w).map { obs[i * w + $0] }, float32(row[0] as? [Double]), "\(id) step \(t) copy \(i)")
                    XCTAssertEqual(rewards[i], (row[1] as? Double).map { Float($0) }, "\(id) step \(t) copy \(i) reward")
                    XCTAssertEqual(Int(flags[i]), row[2] as? Int, "\(id) step \(t) copy \(i) flags")
                    if let f = row[3] as? [Double] {
                        ends += 1
                        XCTAssertEqual((0..<w).map { final[i * w + $0] }, float32(f), "\(id) step \(t) copy \(i) final observation")
                    }
                }
            }
            XCTAssertGreaterThan(ends, 2, "\(id): episodes ended (and were reset) inside the comparison")
        }
    }

    /// An exception inside step, a child that dies, a child that hangs, an unknown name, a space
    /// that cannot be flattened: each a clear error within a bounded time.
    func testFailuresAreClearErrorsWithinBoundedTime() throws {
        func failure(_ id: String, timeout: Double = 20) -> (message: String, seconds: Double) {
            let start = Date()
            do {
                let vector = VectorEnvironment(bridge: try PythonBridge(environment: id, count: 2, options: .init(modules: ["rrl_bridge.testing"], timeout: timeout)))
                try vector.reset(seed: 0)
                for _ in 0..<5 { try vector.step([0, 1]) }
                return ("no error", Date().timeIntervalSince(start))
            } catch {
                return ("\(error)", Date().timeIntervalSince(start))
            }
        }
        var (message, seconds) = failure("rrl-testing/Raise-v0")
        XCTAssertTrue(message.contains("Python raised: ValueError: the pole fell off the cart") && message.contains("testing.py"), message)
        (message, seconds) = failure("rrl-testing/Crash-v0")
        XCTAssertTrue(message.contains("the Python bridge exited with status 3"), message)
        XCTAssertLessThan(seconds, 15)
        (message, seconds) = failure("rrl-testing/Hang-v0", timeout: 2)
        XCTAssertTrue(message.contains("did not answer within 2 s"), message)
        XCTAssertLessThan(seconds, 10, "the hang is detected by the timeout")
        (message, _) = failure("rrl-testing/Print-v0")
        XCTAssertEqual(message, "no error", "what an environment prints (from Python or to file descriptor 1) stays out of the protocol")
        (message, _) = failure("CartPol-v1")
        XCTAssertTrue(message.contains("unknown environment 'CartPol-v1'") && message.contains("CartPole-v1") && message.contains("rrl list --python"), message)
        (message, _) = failure("rrl-testing/TextObservation-v0")
        XCTAssertTrue(message.contains("observation space") && message.contains("Text") && message.contains("not supported"), message)
        XCTAssertTrue(try PythonBridge.list(options: .init(modules: ["popgym"])).contains("popgym-CountRecallEasy-v0"))
    }

    /// A short recurrent PPO run on POPGym's RepeatPreviousEasy through the bridge ends well above
    /// what a policy without memory can get (about -0.5: it can only guess one suit in four).
    func testPPOLearnsRepeatPreviousThroughTheBridge() throws {
        var c = PPOTrainingConfiguration.defaults(environment: "gym:popgym-RepeatPreviousEasy-v0")
        c.environmentModules = ["popgym"]
        c.steps = 40_000
        c.evaluationInterval = 40_000
        c.evaluationEpisodes = 8
        c.ppo.network = .gru
        c.ppo.environments = 16
        c.ppo.rolloutSteps = 64
        c.ppo.epochs = 10
        c.ppo.gamma = 0.99
        c.ppo.gaeLambda = 0.95
        c.ppo.entropyCoefficient = 0.01
        let trainer = try PPOTrainer(configuration: c)
        let rows = try trainer.run()
        let final = try XCTUnwrap(rows.last?["eval_return_mean"])
        XCTAssertGreaterThan(final, 0, "after 40k steps (memoryless about -0.5)")
    }

    /// SAC (MLP, the classic-control defaults) on Gymnasium's Pendulum-v1 through a one-copy
    /// bridge: after 6,000 steps its deterministic return is far above a random policy's (about
    /// -1,200 to -1,500 on this task; measured, the untrained agent's first evaluation here is below -1,000).
    func testSACLearnsPendulumThroughTheBridge() throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "gym:Pendulum-v1")
        c.steps = 6000
        c.evaluationInterval = 1000
        c.evaluationEpisodes = 5
        let trainer = try OffPolicyTrainer(configuration: c)
        let rows = try trainer.run()
        let first = try XCTUnwrap(rows.first?["eval_return_mean"]), final = try XCTUnwrap(rows.last?["eval_return_mean"])
        XCTAssertLessThan(first, -1000, "after 1,000 steps of random warm-up")
        XCTAssertGreaterThan(final, -600, "after 6,000 steps (random about -1,200)")
    }

    /// A Python exception while an off-policy agent trains reaches the caller with its message.
    func testPythonErrorsStopOffPolicyTraining() throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "gym:rrl-testing/Raise-v0")
        c.environmentModules = ["rrl_bridge.testing"]
        c.steps = 100
        c.warmupSteps = 10
        XCTAssertThrowsError(try OffPolicyTrainer(configuration: c).run()) { error in
            XCTAssertTrue("\(error)".contains("Python raised: ValueError: the pole fell off the cart"), "\(error)")
        }
    }

    /// Runs `make()` until `stopAt` says so, writes a checkpoint there and returns that first
    /// session; then twice restores the checkpoint into a fresh session, hands it to `check` (before
    /// it runs on), runs it to the end, and asserts the two resumed runs agree (weights and evaluations).
    func stoppedAndResumedTwice<S: TrainingSession>(_ make: () throws -> S, stopAt: (S) -> Bool, weights: (S) -> [[Float]],
                                                    check: (S) throws -> Void) throws -> S {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-python-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = CheckpointStore(directory: folder)
        let first = try make()
        XCTAssertThrowsError(try first.run(onRow: { _ in }, afterStep: { _ in
            if stopAt(first) {
                try store.write(first)
                throw StopHere()
            }
        }, onProgress: { _ in }))
        var runs: [(rows: [MetricsRow], weights: [[Float]])] = []
        for _ in 0..<2 {
            let resumed = try make()
            try resumed.restore(from: XCTUnwrap(try store.latest()), prefix: "")
            XCTAssertEqual(resumed.step, first.step)
            try check(resumed)
            let rows = try resumed.run(onRow: { _ in }, afterStep: { _ in }, onProgress: { _ in })
            XCTAssertEqual(resumed.step, resumed.totalSteps)
            XCTAssertTrue(rows.allSatisfy { ($0["eval_return_mean"] ?? .nan).isFinite })
            runs.append((rows, weights(resumed)))
        }
        XCTAssertEqual(runs[0].weights, runs[1].weights, "resuming twice gives the same run")
        XCTAssertEqual(runs[0].rows.map { $0["eval_return_mean"] }, runs[1].rows.map { $0["eval_return_mean"] })
        XCTAssertEqual(runs[0].rows.count, 2)
        return first
    }

    /// A Python run's checkpoint holds everything but the Python environment: resuming starts a new
    /// episode. The replay's episode in progress at the checkpoint ends there (cut, as a truncation),
    /// the acting state starts over, and resuming twice from the same checkpoint gives the same run.
    func testPythonRunsResumeWithNewEpisodes() throws {
        func make() throws -> OffPolicyTrainer {
            var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "gym:Pendulum-v1")
            c.steps = 1800
            c.warmupSteps = 500
            c.evaluationInterval = 600
            c.evaluationEpisodes = 2
            c.agent.network = .gru
            c.agent.hiddenSize = 8
            c.agent.headHiddenSizes = [16]
            c.agent.batchSize = 4
            c.agent.sampler.sequenceLength = 16
            c.agent.sampler.burnIn = 4
            c.agent.sampler.initialState = .storedBurnIn
            return try OffPolicyTrainer(configuration: c)
        }
        let first = try stoppedAndResumedTwice(make, stopAt: { $0.step == 1050 },  // 50 steps into an episode of 200
                                               weights: { $0.agent.namedParameters().map { $0.parameter.value.array } }) { resumed in
            XCTAssertEqual(resumed.episodes, 5, "the cut episode is not counted")
            XCTAssertEqual(resumed.environments.episodeLengths[0], 0, "a new episode")
            let last = resumed.replay.index(resumed.replay.count - 1)
            XCTAssertEqual(resumed.replay.count, 1050)
            XCTAssertTrue(resumed.replay.truncated(last) && !resumed.replay.terminated(last), "the stored episode ends where the run stopped")
            XCTAssertEqual(resumed.actorState.array.map { abs($0) }.max(), 0, "the actor starts the new episode from zeros")
            // The first step after the resume starts an episode in the replay.
            try resumed.advance()
            XCTAssertTrue(resumed.replay.isFirstStep(resumed.replay.index(1050)))
        }
        XCTAssertEqual(first.environments.episodeLengths[0], 50)
        XCTAssertFalse(first.replay.endsEpisode(first.replay.index(first.replay.count - 1)))
    }

    /// PPO on a Python environment resumes the same way: every copy starts a new episode with zero
    /// recurrent states and no previous action, and resuming twice gives the same run.
    func testPPOPythonRunsResumeWithNewEpisodes() throws {
        func make() throws -> PPOTrainer {
            var c = PPOTrainingConfiguration.defaults(environment: "gym:popgym-RepeatPreviousEasy-v0")
            c.environmentModules = ["popgym"]
            c.steps = 4 * 16 * 6
            c.evaluationInterval = 4 * 16 * 2
            c.evaluationEpisodes = 2
            c.ppo.network = .gru
            c.ppo.environments = 4
            c.ppo.rolloutSteps = 16
            c.ppo.chunkLength = 8
            c.ppo.minibatchSize = 32
            c.ppo.epochs = 2
            c.ppo.hiddenSize = 8
            c.ppo.headHiddenSizes = [8]
            return try PPOTrainer(configuration: c)
        }
        let first = try stoppedAndResumedTwice(make, stopAt: { $0.step >= 4 * 16 * 3 },
                                               weights: { $0.agent.namedParameters().map { $0.parameter.value.array } }) { resumed in
            XCTAssertEqual(resumed.environments.episodeStarts, [Bool](repeating: true, count: 4))
            XCTAssertEqual(resumed.environments.episodeLengths, [0, 0, 0, 0])
            XCTAssertEqual(resumed.actorState.array.map { abs($0) }.max(), 0)
            XCTAssertEqual(resumed.previousActions.array.map { abs($0) }.max(), 0)
        }
        XCTAssertTrue(first.environments.episodeLengths.contains { $0 > 0 }, "episodes were in progress at the checkpoint")
    }
}

/// Thrown to stop a run where a test wants it to stop.
private struct StopHere: Error {}
