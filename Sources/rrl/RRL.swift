import ArgumentParser
import Foundation
import RecurrentRL

/// The `rrl` command: train, evaluate and ship recurrent reinforcement-learning agents.
@main
struct RRL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rrl",
        abstract: "Deep reinforcement learning with memory: recurrent (GRU/LSTM) agents, trained fast on a CPU.",
        version: RRL.version,
        subcommands: [Train.self, Evaluate.self, Export.self, Plot.self, Report.self, Sweep.self, List.self, Bench.self]
    )

    /// The version `rrl --version` prints.
    static let version = "0.12.0"

    /// Parses and runs the command. A bad value found while running (a `ValidationError` thrown
    /// from `run()`, such as an out-of-range option or an unknown environment) is printed without
    /// ArgumentParser's usage line, which would show the root command's usage there; the exit code
    /// stays 64 (a usage error). Parsing errors keep their usage line.
    static func main() {
        // Progress lines reach a file or a pipe as they are printed (a killed run keeps its log).
        setvbuf(stdout, nil, _IOLBF, 0)
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let first = arguments.first, !first.hasPrefix("-") {
            let names = configuration.subcommands.map { $0._commandName } + ["help"]
            if !names.contains(first) {
                let near = names.min { editDistance($0, first) < editDistance($1, first) }!
                let hint = editDistance(near, first) <= 2 ? "did you mean '\(near)'? " : ""
                FileHandle.standardError.write(Data("Error: unknown command '\(first)'; \(hint)the commands are \(names.dropLast().joined(separator: ", ")) (see `rrl --help`)\n".utf8))
                Foundation.exit(64)
            }
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if arguments.first == "train", let message = withOptionHint(fullMessage(for: error)) {
                FileHandle.standardError.write(Data((message + "\n").utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
        do {
            try command.run()
        } catch let error as ValidationError {
            let kind = type(of: command)
            let isBench = Bench.configuration.subcommands.contains { $0 == kind }
            let help = kind == RRL.self ? "rrl --help" : "rrl \(isBench ? "bench " : "")\(kind._commandName) --help"
            FileHandle.standardError.write(Data("Error: \(error.message)\n(see `\(help)`)\n".utf8))
            Foundation.exit(64)
        } catch {
            exit(withError: error)
        }
    }
}

/// Options of `rrl train` that other libraries' users type (Stable-Baselines3, CleanRL, rl-zoo) and
/// what rrl calls them.
let foreignOptions: [String: String] = [
    "--output": "rrl train calls the run folder --run-dir",
    "--total-timesteps": "rrl calls it --steps", "--n-timesteps": "rrl calls it --steps", "--timesteps": "rrl calls it --steps",
    "--env-id": "rrl calls it --env", "--num-envs": "rrl calls it --envs", "--n-envs": "rrl calls it --envs",
    "--learning-rate": "rrl calls it --lr for ppo, --actor-lr and --critic-lr for the off-policy algorithms",
    "--algo": "the algorithm comes first, without a flag: rrl train sac", "--algorithm": "the algorithm comes first, without a flag: rrl train sac",
]

/// ArgumentParser's message for an unknown option of `rrl train` that another library's users
/// would type ("Unknown option '--total-timesteps'"), with what rrl calls it in place of
/// ArgumentParser's own guess on the first line; nil when there is no such hint.
func withOptionHint(_ message: String) -> String? {
    var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (i, line) in lines.enumerated() {
        guard let start = line.range(of: "Unknown option '") else { continue }
        guard let hint = foreignOptions[String(line[start.upperBound...].prefix { $0 != "'" })] else { return nil }
        lines[i] = line[..<(line.range(of: ". Did you mean")?.lowerBound ?? line.endIndex)] + "; " + hint
        return lines.joined(separator: "\n")
    }
    return nil
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained run: mean ± standard deviation of the return over N episodes.",
        discussion: "Reads config.json and weights.safetensors from the run folder. Deterministic actions unless --stochastic; the same --seed gives the same episodes.")
    @Argument(help: "Run folder (made by `rrl train`).") var runDirectory: String
    @Option(parsing: .unconditional, help: "Episodes, run side by side.") var episodes: Int = 10
    @Option(parsing: .unconditional, help: "Seed of the evaluation episodes.") var seed: UInt64 = 0
    @Flag(help: "Sample actions from the policy instead of taking its mode.") var stochastic = false
    @Flag(help: "Print one episode step by step as text (goal-cycle).") var render = false
    @Option(parsing: .unconditional, help: "With --render: at most this many steps.") var renderSteps: Int = 50

    func run() throws {
        let saved = try SavedRun(path: runDirectory)
        if render {
            print(try saved.renderEpisode(seed: seed, stochastic: stochastic, maxSteps: renderSteps), terminator: "")
            return
        }
        let result = try saved.evaluate(episodes: episodes, seed: seed, stochastic: stochastic)
        guard result.mean.isFinite, result.std.isFinite else {
            throw TrainingError("the evaluation of \(runDirectory) gave a non-finite return (\(result.mean)); the policy or the environment produced NaN or infinite values")
        }
        print("\(saved.algorithm) on \(saved.environment), \(episodes) \(stochastic ? "stochastic" : "deterministic") episodes, seed \(seed): return \(String(format: "%.2f", result.mean)) ± \(String(format: "%.2f", result.std))")
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plot one metric of one or more runs as an SVG file.",
        discussion: "Runs that share a configuration (all but the seed) make one curve: their mean, with a band of ± one standard error. `rrl list` and metrics.csv's header name the metrics.")
    @Argument(help: "Run folders (made by `rrl train`).") var runDirectories: [String]
    @Option(help: "The metric (a metrics.csv column).") var metric: String = "eval_return_mean"
    @Option(help: "The SVG file to write.") var output: String
    @Option(help: "The column on the x axis.") var x: String = "step"
    @Flag(help: "Replace the output file even if `rrl plot` did not write it.") var overwrite = false

    func run() throws {
        guard !runDirectories.isEmpty else { throw ValidationError("give at least one run folder") }
        let runs = try runDirectories.map { try RunRecord(path: $0) }
        let known = Set(runs.flatMap(\.columns))
        for name in [metric, x] where !known.contains(name) {
            let near = known.min { editDistance($0, name) < editDistance($1, name) }
            throw ValidationError("no run has a metric '\(name)'\(near.map { "; did you mean '\($0)'?" } ?? ""); the metrics are: \(known.sorted().joined(separator: ", "))")
        }
        let url = URL(fileURLWithPath: output)
        try checkReplaceable(url, marks: [plotMark], command: "plot", overwrite: overwrite)
        let svg = plotMark + "\n" + svgPlot(groups: groupRuns(runs).groups, metric: metric, x: x)
        try writeAtomically(Data(svg.utf8), to: url, role: "plot")
        print("wrote \(output)")
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a self-contained HTML report comparing runs.",
        discussion: "Learning curves (mean ± standard error over the seeds of each configuration), a table of final results, and the options where the configurations differ. One file, no scripts, nothing fetched.")
    @Argument(help: "Run folders (made by `rrl train`).") var runDirectories: [String]
    @Option(help: "The HTML file to write.") var output: String = "report.html"
    @Option(help: "The page's title.") var title: String = "RecurrentRL report"
    @Flag(help: "Replace the output file even if `rrl report` did not write it.") var overwrite = false

    func run() throws {
        guard !runDirectories.isEmpty else { throw ValidationError("give at least one run folder") }
        let runs = try runDirectories.map { try RunRecord(path: $0) }
        let url = URL(fileURLWithPath: output)
        try checkReplaceable(url, marks: reportMarks, command: "report", overwrite: overwrite)
        try writeAtomically(Data(htmlReport(runs: runs, title: title).utf8), to: url, role: "report")
        print("wrote \(output) (\(runs.count) runs)")
    }
}

/// Refuses to replace a file at `url` that `rrl COMMAND` did not write (its first 4 KB hold none of
/// `marks`) unless `overwrite`: a report or plot written before is refreshed, a user's own file is
/// never lost.
func checkReplaceable(_ url: URL, marks: [String], command: String, overwrite: Bool,
                      remedy: String = "give --overwrite to replace it, or --output another file") throws {
    var isDirectory: ObjCBool = false
    guard !overwrite, FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else { return }
    let head = FileHandle(forReadingAtPath: url.path).map { handle in
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4096)) ?? Data()
    }
    if let head, case let text = String(decoding: head, as: UTF8.self), marks.contains(where: text.contains) { return }
    throw ValidationError("\(url.path) exists and was not written by `rrl \(command)`; \(remedy)")
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List environments (with their spaces), algorithms, and every option with its default.",
        discussion: "Options are shown as configuration-file keys (the keys of a run's config.json, usable with `rrl train --config`); their command-line flags and meanings are in `rrl train --help`. Off-policy defaults depend on the environment: pass --env to see them for one.")
    @Option(help: "Show the defaults for this environment (default: memory for sac/td3, cartpole-position for ppo).") var env: String?
    @Flag(help: "List the Python (Gymnasium) environments the bridge can see, usable as --env gym:ID.") var python = false
    @Option(help: "With --python: a module to import first (it registers environments), e.g. popgym; repeatable.") var envModule: [String] = []

    func run() throws {
        if let env, !python { _ = try asUsageError { try EnvironmentRegistry.makeMultiAgent(env) } }
        if python {
            let ids = try PythonBridge.list(options: .init(modules: envModule))
            print("\(ids.count) Python environments (train with `rrl train ALGORITHM --env gym:ID\(envModule.map { " --env-module \($0)" }.joined())`):")
            for id in ids { print("  gym:\(id)") }
            return
        }
        func column(_ text: String, _ width: Int) -> String {
            text.count < width ? text + String(repeating: " ", count: width - text.count) : text + " "
        }
        print(column("environment", 19) + column("observation", 24) + column("action", 22) + "description")
        for entry in EnvironmentRegistry.entries {
            if entry.isMultiAgent {
                let env = try EnvironmentRegistry.makeMultiAgent(entry.name)
                print(column(entry.name, 19) + column("\(env.agents) x \(env.observationSpace)", 24) + column("\(env.agents) x \(env.actionSpace)", 22)
                      + entry.summary + (env.globalStateWidth > 0 ? " [\(env.agents) agents, global state \(env.globalStateWidth)]" : " [\(env.agents) agents]"))
            } else {
                let env = try EnvironmentRegistry.make(entry.name)
                print(column(entry.name, 19) + column("\(env.observationSpace)", 24) + column("\(env.actionSpace)", 22) + entry.summary)
            }
            if !entry.options.isEmpty {
                print(String(repeating: " ", count: 19) + "options (--env-option KEY=VALUE): " + entry.options.keys.sorted().map { "\($0): \(entry.options[$0]!)" }.joined(separator: "; "))
            }
        }
        print("")
        print("algorithms:")
        print("  sac   soft actor-critic (continuous actions: tanh-Gaussian; discrete actions: categorical), MLP/GRU/LSTM, sequence replay")
        print("  td3   twin delayed DDPG (continuous actions), MLP/GRU/LSTM, sequence replay")
        print("  masac multi-agent SAC: one recurrent actor shared by the agents (agent id in the context), centralised or independent critics per agent; every sac option")
        print("  vdn   value decomposition networks: recurrent agent Q-networks (shared with agent ids, or one per agent) whose Q-values add up; ε-greedy, double Q, n-step or TD(λ) returns")
        print("  qmix  QMIX: as vdn, with the agents' Q-values mixed monotonically under the global state by hypernetworks")
        print("  ppo   PPO-Clip (categorical or Gaussian), MLP/GRU/LSTM, rollouts cut into chunks from stored states")
        var sac = OffPolicyConfiguration.defaults(algorithm: .sac, environment: env ?? "memory")
        var td3 = OffPolicyConfiguration.defaults(algorithm: .td3, environment: env ?? "memory")
        var ppo = PPOTrainingConfiguration.defaults(environment: env ?? "cartpole-position")
        sac.checkpointInterval = 25_000
        td3.checkpointInterval = 25_000
        ppo.checkpointInterval = 25_000
        let sacValues = flattenConfiguration(sac), td3Values = flattenConfiguration(td3), ppoValues = flattenConfiguration(ppo)
        print("")
        print("sac / td3 options, defaults on \(sac.environment) (config-file keys; optional ones unset: agent.encoderLearningRate = the network's rate, agent.targetEntropy = -action dimensions or 0.98 log n):")
        for key in sacValues.keys.sorted() {
            let a = sacValues[key]!, b = td3Values[key] ?? "-"
            print("  " + column(key, 44) + column(a, 18) + (a == b ? "" : "td3: \(b)"))
        }
        print("")
        print("ppo options, defaults on \(ppo.environment):")
        for key in ppoValues.keys.sorted() { print("  " + column(key, 44) + ppoValues[key]!) }
    }

}
