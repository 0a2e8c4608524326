import ArgumentParser
import CKernels
import Foundation
import RecurrentRL

/// Options of the whole-training benchmarks.
struct TrainingBenchOptions: ParsableArguments {
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Option(help: "Environment steps (the reference figures are for the default).") var steps: Int?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Seconds spent measuring the FMA peak before the run.") var peakSeconds: Double = 0.5

    func validate() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be positive") }
        guard peakSeconds > 0 else { throw ValidationError("--peak-seconds must be positive") }
    }
}

/// What a training benchmark measured: CPU and wall seconds, and the matrix products' flops against
/// the FMA peak measured in the same run (the one figure that compares across machines).
struct TrainingMeasurement {
    let cpu: Double, wall: Double, flops: Double, peak: Double
    var gflops: Double { flops / cpu / 1e9 }
    var fractionOfPeak: Double { gflops / peak }

    /// Measures the peak, then `body`.
    static func of(peakSeconds: Double, _ body: () throws -> Void) rethrows -> TrainingMeasurement {
        let peak = rrl_measure_fma_peak_gflops(peakSeconds)
        let flops0 = rrl_gemm_flops(), cpu0 = Clock.processCPU, wall0 = Clock.now
        try body()
        return TrainingMeasurement(cpu: Clock.processCPU - cpu0, wall: Clock.now - wall0, flops: Double(rrl_gemm_flops() - flops0), peak: peak)
    }

    var json: [String: Any] {
        ["cpu_seconds": cpu, "wall_seconds": wall, "matrix_gflop": flops / 1e9, "matrix_gflops_per_cpu_second": gflops,
         "fma_peak_gflops": peak, "fraction_of_fma_peak": fractionOfPeak]
    }

    var line: String {
        String(format: "  matrix products: %.1f GFLOP, %.1f GFLOP/s per CPU second = %.1f%% of the FMA peak measured now (%.1f GFLOP/s, one thread)",
               flops / 1e9, gflops, 100 * fractionOfPeak, peak)
    }
}

/// Trains `configuration` in this process and reports process CPU seconds (one thread) and the
/// matrix products' share of the FMA peak measured in the same run. RLtools' figure for the same
/// workload was timed once on another machine of this kind: it is printed as that, without a ratio
/// (machines of one kind differ by 2x and more; compare side by side in the same minutes instead).
func benchTraining(name: String, configuration: OffPolicyConfiguration, referenceSecondsPerStep: Double?,
                   referenceNote: String, options: TrainingBenchOptions) throws {
    var c = configuration
    c.seed = options.seed
    if let steps = options.steps { c.steps = steps }
    let trainer = try OffPolicyTrainer(configuration: c)
    var rows: [MetricsRow] = []
    let m = try TrainingMeasurement.of(peakSeconds: options.peakSeconds) { rows = try trainer.run() }
    let perStep = m.cpu / Double(c.steps)
    let reference = referenceSecondsPerStep.map { $0 * Double(c.steps) }
    let last = rows.last
    var result: [String: Any] = [
        "benchmark": name, "environment": c.environment, "algorithm": c.agent.algorithm.rawValue, "network": c.agent.network.rawValue,
        "steps": c.steps, "cpu_ms_per_step": perStep * 1e3,
        "final_eval_return": last?["eval_return_mean"] ?? Double.nan,
        "final_probe_accuracy": last?["probe_accuracy"] ?? Double.nan,
    ].merging(m.json) { a, _ in a }
    if let reference { result["rltools_cpu_seconds_on_another_machine"] = reference }
    if options.json {
        try printJSON(result)
        return
    }
    print("\(name): \(c.agent.algorithm.rawValue) (\(c.agent.network.rawValue)) on \(c.environment), \(c.steps) steps, batch \(c.agent.batchSize), evaluation every \(c.evaluationInterval) steps (\(c.evaluationEpisodes) episodes)")
    print(String(format: "  CPU %.2f s (%.3f ms per environment step), wall %.2f s", m.cpu, perStep * 1e3, m.wall))
    print(m.line)
    if let reference {
        print(String(format: "  (RLtools, timed once on another machine of this kind: %.2f s for the same steps, %@; not a comparison: time both here, alternately)", reference, referenceNote))
    }
    if let last {
        var line = String(format: "  final evaluation return %.1f", last["eval_return_mean"] ?? .nan)
        if let p = last["probe_accuracy"], !p.isNaN { line += String(format: ", probe accuracy %.2f", p) }
        print(line)
    }
}

struct BenchSAC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sac", abstract: "Pendulum, MLP SAC, batch 100, hidden 64, 20k steps: CPU seconds and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws {
        try benchTraining(name: "bench sac", configuration: .defaults(algorithm: .sac, environment: "pendulum"),
                          referenceSecondsPerStep: 9.8 / 20_000, referenceNote: "9.8 s per 20k steps", options: options)
    }
}

struct BenchTD3: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "td3", abstract: "Pendulum, MLP TD3, batch 100, hidden 64, 20k steps: CPU seconds and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws {
        try benchTraining(name: "bench td3", configuration: .defaults(algorithm: .td3, environment: "pendulum"),
                          referenceSecondsPerStep: 7.7 / 20_000, referenceNote: "7.7 s per 20k steps", options: options)
    }
}

struct BenchMemory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "memory, recurrent SAC (GRU 16, windows of 50, batch 4), with 10 evaluation episodes of 2000 steps every 1000 steps: CPU per step and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws {
        var c = OffPolicyConfiguration.memoryDefault
        c.steps = 20_000
        try benchTraining(name: "bench memory", configuration: c, referenceSecondsPerStep: 2.9e-3,
                          referenceNote: "2.9 ms per step", options: options)
    }
}

struct BenchRESeL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resel",
        abstract: "pendulum-velocity, the RESeL preset with GRU 128: whole episodes, 10 rows of 200 steps (2000 valid steps) per batch, 8 Q-heads; 2000 random steps then 200 updates: CPU per update and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "pendulum-velocity")
        c.applyRESeL(episodeLimit: 200)
        c.agent.hiddenSize = 128
        c.warmupSteps = 2000
        c.steps = 2200
        c.evaluationInterval = 2200
        c.evaluationEpisodes = 2
        try benchTraining(name: "bench resel", configuration: c, referenceSecondsPerStep: nil, referenceNote: "", options: options)
    }
}

struct BenchPPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppo",
        abstract: "cartpole-position, recurrent PPO with rl-zoo's RecurrentPPO settings (8 copies x 32 steps, minibatch 256, 20 epochs, LSTM 64 for actor and critic, heads of 64), 100k steps: environment steps per CPU second and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws {
        var c = PPOTrainingConfiguration()
        c.environment = "cartpole-position"
        c.seed = options.seed
        c.steps = options.steps ?? 100_000
        c.evaluationInterval = c.steps  // one evaluation, at the end (sb3's figure is training only)
        let trainer = try PPOTrainer(configuration: c)
        var rows: [MetricsRow] = []
        let m = try TrainingMeasurement.of(peakSeconds: options.peakSeconds) { rows = try trainer.run() }
        let rate = Double(trainer.step) / m.cpu
        let (low, high) = (190.0, 310.0)
        let result: [String: Any] = [
            "benchmark": "bench ppo", "environment": c.environment, "algorithm": "ppo", "network": c.ppo.network.rawValue,
            "steps": trainer.step, "steps_per_cpu_second": rate,
            "sb3_contrib_steps_per_second_on_another_machine_low": low, "sb3_contrib_steps_per_second_on_another_machine_high": high,
            "final_eval_return": rows.last?["eval_return_mean"] ?? Double.nan,
        ].merging(m.json) { a, _ in a }
        if options.json {
            try printJSON(result)
            return
        }
        let p = c.ppo
        print("bench ppo: recurrent PPO (\(p.network.rawValue) \(p.hiddenSize), actor and critic encoders) on \(c.environment), \(trainer.step) steps: \(p.environments) copies x \(p.rolloutSteps) steps per rollout, minibatch \(p.minibatchSize), \(p.epochs) epochs")
        print(String(format: "  CPU %.2f s, wall %.2f s: %.0f environment steps per CPU second (training included; one evaluation at the end)", m.cpu, m.wall, rate))
        print(m.line)
        print("  (sb3-contrib RecurrentPPO, timed on another machine of this kind: 190-310 steps/s; not a comparison: time both here, alternately)")
        if let last = rows.last { print(String(format: "  final evaluation return %.1f", last["eval_return_mean"] ?? .nan)) }
    }
}

/// The Python bridge's overhead: N copies of a Gymnasium environment stepped with random actions
/// through the bridge (one message per step of all copies) against the same N environments stepped
/// in a plain Python loop, both measured in this run, in wall seconds.
struct BenchBridge: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bridge", abstract: "Python bridge overhead: N Gymnasium environments through the bridge vs a plain Python loop.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Gymnasium environment id.") var env: String = "CartPole-v1"
    @Option(help: "Copies stepped together.") var copies: Int = 8
    @Option(help: "Steps of all copies.") var steps: Int = 20_000
    @Option(help: "A module to import first (e.g. popgym); repeatable.") var envModule: [String] = []
    @Option(help: "Repeats of each measurement (the fastest is kept).") var repeats: Int = 3

    func run() throws {
        let N = copies
        // The plain Python loop: the same environments, random actions drawn in advance.
        let script = """
        import sys, time, json, importlib, numpy as np, gymnasium as gym
        for m in json.loads(sys.argv[4]): importlib.import_module(m)
        N, T = int(sys.argv[2]), int(sys.argv[3])
        envs = [gym.make(sys.argv[1]) for _ in range(N)]
        for i, e in enumerate(envs): e.reset(seed=i)
        rng = np.random.default_rng(0)
        n = envs[0].action_space.n
        actions = rng.integers(0, n, size=(T, N)).tolist()
        t0 = time.perf_counter()
        for t in range(T):
            row = actions[t]
            for i, e in enumerate(envs):
                o, r, term, trunc, _ = e.step(row[i])
                if term or trunc: e.reset()
        print(time.perf_counter() - t0)
        """
        let modules = String(decoding: try JSONSerialization.data(withJSONObject: envModule), as: UTF8.self)
        var python = Double.infinity, bridged = Double.infinity
        for _ in 0..<repeats {
            // (A child of our own: Foundation's Process, used here next to the bridge, corrupted the heap now and then.)
            let errorURL = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-bench-bridge-\(UUID().uuidString).err")
            defer { try? FileManager.default.removeItem(at: errorURL) }
            let child = try ChildProcess(arguments: ["python3", "-c", script, env, "\(N)", "\(steps)", modules], stderrPath: errorURL.path)
            let text = child.readOutput()
            let exit = child.waitForExit()
            guard exit == "exited with status 0", let seconds = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                let errors = ((try? String(contentsOf: errorURL, encoding: .utf8)) ?? "").split(separator: "\n").suffix(3).joined(separator: "\n")
                throw ValidationError("the plain Python loop over \(env) failed (\(exit)); its stderr ends with:\n\(errors)")
            }
            python = min(python, seconds)

            let vector = VectorEnvironment(bridge: try PythonBridge(environment: env, count: N, options: .init(modules: envModule)))
            guard case .discrete(let n) = vector.actionSpace else { throw ValidationError("bench bridge takes an environment with discrete actions") }
            try vector.reset(seed: 0)
            var rng = RandomGenerator(seed: 0)
            let actions = (0..<steps * N).map { _ in Float(rng.integer(below: n)) }
            let start = Clock.now
            try actions.withUnsafeBufferPointer { a in
                for t in 0..<steps {
                    try vector.step(a.baseAddress! + t * N)
                    vector.drainFinishedEpisodes { _, _ in }
                }
            }
            bridged = min(bridged, Clock.now - start)
        }
        let ratio = python / bridged
        let overhead = (bridged - python) / Double(steps) * 1e6
        let result: [String: Any] = [
            "benchmark": "bench bridge", "environment": env, "copies": N, "steps": steps,
            "python_loop_seconds": python, "bridge_seconds": bridged,
            "python_steps_per_second": Double(steps * N) / python, "bridge_steps_per_second": Double(steps * N) / bridged,
            "bridge_speed_fraction_of_python": ratio, "overhead_microseconds_per_vector_step": overhead,
        ]
        if options.json { return try printJSON(result) }
        print("bench bridge: \(N) copies of \(env), \(steps) steps of all copies, random actions (fastest of \(repeats))")
        print(String(format: "  plain Python loop: %.3f s (%.0f env steps/s); through the bridge: %.3f s (%.0f env steps/s)", python, Double(steps * N) / python, bridged, Double(steps * N) / bridged))
        print(String(format: "  the bridge runs at %.0f%% of the plain loop's speed; overhead %.1f µs per step of all %d copies", 100 * ratio, overhead, N))
    }
}

/// `rrl bench vdn|qmix`: the algorithm's defaults on cooperative foraging (8x8, 2 agents, 2 foods,
/// 8 copies): environment steps per CPU second and the matrix products' share of the FMA peak.
func benchValueDecomposition(_ algorithm: OffPolicyAlgorithm, options: TrainingBenchOptions) throws {
    var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: "foraging-8x8-2p-2f-coop")
    c.seed = options.seed
    c.steps = options.steps ?? 50_000
    c.environments = 8
    c.agent.sampler.sequenceLength = 50  // whole episodes (foraging's limit)
    c.evaluationInterval = c.steps
    let trainer = try OffPolicyTrainer(configuration: c)
    let m = try TrainingMeasurement.of(peakSeconds: options.peakSeconds) { try trainer.run() }
    let rate = Double(trainer.step) / m.cpu
    let name = "bench \(algorithm.rawValue)"
    if options.json {
        try printJSON(["benchmark": name, "environment": c.environment, "algorithm": algorithm.rawValue, "steps": c.steps,
                       "updates": trainer.agent.criticUpdates, "steps_per_cpu_second": rate].merging(m.json) { a, _ in a })
        return
    }
    print("\(name): \(algorithm.rawValue) (GRU \(c.agent.hiddenSize), batch \(c.agent.batchSize) whole episodes, one update per \(c.agent.criticUpdateInterval) steps) on \(c.environment), 8 copies, \(c.steps) steps, \(trainer.agent.criticUpdates) updates")
    print(String(format: "  CPU %.2f s: %.0f environment steps per CPU second (wall %.2f s)", m.cpu, rate, m.wall))
    print(m.line)
}

struct BenchVDN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vdn", abstract: "Cooperative foraging 8x8, VDN's defaults, 8 copies, 50k steps: steps per CPU second and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws { try benchValueDecomposition(.vdn, options: options) }
}

struct BenchQMIX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qmix", abstract: "Cooperative foraging 8x8, QMIX's defaults, 8 copies, 50k steps: steps per CPU second and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws { try benchValueDecomposition(.qmix, options: options) }
}

/// `rrl bench ippo|mappo`: the algorithm's defaults (16 copies x 64 steps, GRU 64, 4 epochs) on
/// cooperative foraging (8x8, 2 agents, 2 foods): environment steps per CPU second and the matrix
/// products' share of the FMA peak.
func benchMultiAgentPPO(_ algorithm: String, options: TrainingBenchOptions) throws {
    var c = PPOTrainingConfiguration.defaults(environment: "foraging-8x8-2p-2f-coop", algorithm: algorithm)
    c.seed = options.seed
    c.steps = options.steps ?? 200_000
    c.evaluationInterval = c.steps
    let trainer = try PPOTrainer(configuration: c)
    let m = try TrainingMeasurement.of(peakSeconds: options.peakSeconds) { try trainer.run() }
    let rate = Double(trainer.step) / m.cpu
    let name = "bench \(algorithm)", p = c.ppo
    if options.json {
        try printJSON(["benchmark": name, "environment": c.environment, "algorithm": algorithm, "steps": trainer.step,
                       "updates": trainer.updates, "steps_per_cpu_second": rate].merging(m.json) { a, _ in a })
        return
    }
    print("\(name): \(algorithm) (\(p.network.rawValue) \(p.hiddenSize) actor and critic shared by the agents, \(p.environments) copies x \(p.rolloutSteps) steps, chunks of \(p.chunkLength), \(p.epochs) epochs) on \(c.environment), \(trainer.step) steps, \(trainer.updates) updates")
    print(String(format: "  CPU %.2f s: %.0f environment steps per CPU second (wall %.2f s; one evaluation of %d episodes at the end)", m.cpu, rate, m.wall, c.evaluationEpisodes))
    print(m.line)
}

struct BenchIPPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ippo", abstract: "Cooperative foraging 8x8, IPPO's defaults, 200k steps: steps per CPU second and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws { try benchMultiAgentPPO("ippo", options: options) }
}

struct BenchMAPPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mappo", abstract: "Cooperative foraging 8x8, MAPPO's defaults, 200k steps: steps per CPU second and % of the FMA peak.")
    @OptionGroup var options: TrainingBenchOptions
    func run() throws { try benchMultiAgentPPO("mappo", options: options) }
}
