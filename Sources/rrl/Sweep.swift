import ArgumentParser
import Foundation
import RecurrentRL

/// `rrl sweep`: a grid of options x seeds, each point trained by its own `rrl train` process (up to
/// `--jobs` at a time), resumable, ending in one report and a table of final results.
struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a grid of options x seeds as parallel processes, then write one report.",
        discussion: """
        Everything after `--` is an `rrl train` command line shared by every run; each --vary adds one \
        option with several values (a flag takes true or false), and every combination trains once per \
        seed, in OUTPUT/<option=value,...>/seed<S>. Every configuration is checked before anything \
        starts. Run the same sweep again to finish it: finished runs are skipped, interrupted ones \
        resume from their last checkpoint. Example:
          rrl sweep --vary encoder-lr=1e-5,1e-4,3e-4 --seeds 0 1 2 --output runs/encoder-lr -- sac --env pendulum-velocity --network gru --steps 20000
        """
    )

    @Option(help: "An option and its values, OPTION=V1,V2,... (repeatable; e.g. encoder-lr=1e-5,1e-4 or refresh=true,false).") var vary: [String] = []
    @Option(parsing: .upToNextOption, help: "The seeds (default 0 1 2).") var seeds: [UInt64] = [0, 1, 2]
    @Option(help: "The sweep's folder: one run folder per point and seed, and report.html.") var output: String
    @Option(help: "Runs at a time (default: the number of CPUs).") var jobs: Int?
    @Argument(parsing: .captureForPassthrough, help: "-- then the `rrl train` arguments every run shares (the algorithm and its options).") var trainArguments: [String] = []

    /// One option's values, as `rrl train` arguments.
    struct Axis {
        let name: String
        let values: [String]
        func arguments(_ value: String) -> [String] {
            switch value {
            case "true": return ["--\(name)"]
            case "false": return ["--no-\(name)"]
            default: return ["--\(name)", value]
            }
        }
    }

    /// One run: the grid point's label (its folder), its seed, and its `rrl train` arguments.
    struct Job {
        let label: String, seed: UInt64, folder: String
        let arguments: [String]
    }

    func axes() throws -> [Axis] {
        try vary.map { text in
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts.first.map { $0.hasPrefix("--") ? String($0.dropFirst(2)) : $0 } ?? ""
            let values = parts.count == 2 ? parts[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } : []
            guard !name.isEmpty, !values.isEmpty, !values.contains("") else {
                throw ValidationError("--vary expects OPTION=V1,V2,... such as encoder-lr=1e-5,1e-4 (got '\(text)')")
            }
            return Axis(name: name, values: values)
        }
    }

    func makeJobs() throws -> [Job] {
        let shared = trainArguments.first == "--" ? Array(trainArguments.dropFirst()) : trainArguments
        guard !shared.isEmpty else {
            throw ValidationError("give the runs' `rrl train` arguments after --, e.g. rrl sweep --vary lr=1e-3,3e-4 --output runs/lr -- ppo --env cartpole-position")
        }
        for owned in ["--seed", "--run-dir", "--resume", "--overwrite", "--quiet"] where shared.contains(owned) {
            throw ValidationError("\(owned) is set by the sweep for each run; remove it from the train arguments")
        }
        guard !seeds.isEmpty else { throw ValidationError("give at least one seed") }
        let axes = try axes()
        for axis in axes where shared.contains("--\(axis.name)") || shared.contains("--no-\(axis.name)") {
            throw ValidationError("--\(axis.name) is both varied and set in the train arguments; keep one")
        }
        // Every combination of the axes' values.
        var points: [[(Axis, String)]] = [[]]
        for axis in axes { points = points.flatMap { point in axis.values.map { point + [(axis, $0)] } } }
        return points.flatMap { point -> [Job] in
            let label = point.map { "\($0.0.name)=\($0.1)" }.joined(separator: ",")
            return seeds.map { seed in
                let folder = URL(fileURLWithPath: output).appendingPathComponent(label.isEmpty ? "seed\(seed)" : "\(label)/seed\(seed)").path
                return Job(label: label, seed: seed, folder: folder,
                           arguments: ["train"] + shared + point.flatMap { $0.0.arguments($0.1) } + ["--seed", "\(seed)", "--run-dir", folder, "--quiet"])
            }
        }
    }

    /// Whether the run in `folder` reached `steps`.
    static func isFinished(_ folder: String, steps: Int) -> Bool {
        guard let run = try? RunRecord(path: folder), let last = run.rows.last?["step"] else { return false }
        return last >= Double(steps) && FileManager.default.fileExists(atPath: folder + "/weights.safetensors")
    }

    /// The options where the run already in `folder` differs from `configuration` (its budget and
    /// checkpoint interval aside), or nil when the folder holds no run.
    static func differences(_ folder: String, from configuration: RunConfiguration) -> [String]? {
        guard let saved = try? RunRecord(path: folder) else { return nil }
        let wanted = flattenConfiguration(configuration)
        let ignored: Set<String> = ["steps", "checkpointInterval"]
        return Set(saved.configuration.keys).union(wanted.keys).filter { !ignored.contains($0) && saved.configuration[$0] != wanted[$0] }.sorted()
    }

    func run() throws {
        let jobs = try makeJobs()
        let parallel = max(self.jobs ?? ProcessInfo.processInfo.activeProcessorCount, 1)
        if let j = self.jobs, j < 1 { throw ValidationError("--jobs must be at least 1 (got \(j))") }
        // Every configuration is checked before anything starts, and so is every folder that already holds a run.
        var configurations: [RunConfiguration] = []
        for job in jobs {
            let name = "\(job.label.isEmpty ? "" : "\(job.label), ")seed \(job.seed)"
            let configuration: RunConfiguration
            do {
                configuration = try Train.parse(Array(job.arguments.dropFirst())).resolvedRunConfiguration()
            } catch {
                let message = Train.message(for: error)
                throw ValidationError("the run \(name) would not start: \(withOptionHint(message) ?? message)")
            }
            if let changed = Sweep.differences(job.folder, from: configuration), !changed.isEmpty {
                throw ValidationError("\(job.folder) holds a run of another configuration (\(changed.prefix(5).joined(separator: ", "))\(changed.count > 5 ? ", ..." : "") differ); give the sweep another --output, or the arguments that made it")
            }
            configurations.append(configuration)
        }
        let report = URL(fileURLWithPath: output).appendingPathComponent("report.html")
        try checkReplaceable(report, marks: reportMarks, command: "sweep", overwrite: false, remedy: "move it, or give the sweep another --output")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var pending: [(Job, [String])] = [], skipped = 0
        for (job, configuration) in zip(jobs, configurations) {
            let steps = Int(flattenConfiguration(configuration)["steps"] ?? "") ?? 0
            if Sweep.isFinished(job.folder, steps: steps) { skipped += 1; continue }
            let checkpoints = CheckpointStore(directory: URL(fileURLWithPath: job.folder).appendingPathComponent("checkpoints"))
            if !checkpoints.list().isEmpty {
                // (A raised budget continues the run.)
                pending.append((job, ["train", "--resume", job.folder, "--steps", "\(steps)", "--quiet"]))
            } else {
                // A folder this sweep started that stopped before its first checkpoint starts over.
                let started = FileManager.default.fileExists(atPath: job.folder + "/config.json")
                pending.append((job, job.arguments + (started ? ["--overwrite"] : [])))
            }
        }
        print("sweep: \(jobs.count) runs (\(jobs.count / seeds.count) configurations x \(seeds.count) seeds) in \(output); \(skipped) finished, \(pending.count) to train, \(min(parallel, max(pending.count, 1))) at a time")
        var running: [(Job, ChildProcess, String)] = [], failures: [String] = []
        var next = 0
        while next < pending.count || !running.isEmpty {
            while running.count < parallel && next < pending.count {
                let (job, arguments) = pending[next]
                next += 1
                let log = job.folder + ".log"
                try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: log).deletingLastPathComponent().path, withIntermediateDirectories: true)
                running.append((job, try ChildProcess(arguments: [executable] + arguments, stderrPath: log), log))
            }
            // Collect the children that ended (polled: each reaps only its own).
            usleep(100_000)
            var still: [(Job, ChildProcess, String)] = []
            for (job, child, log) in running {
                if !child.isRunning {
                    let how = child.waitForExit()
                    let name = "\(job.label.isEmpty ? "" : job.label + ", ")seed \(job.seed)"
                    if how == "exited with status 0" {
                        try? FileManager.default.removeItem(atPath: log)
                        print("  done: \(name)")
                    } else {
                        let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(3).joined(separator: "\n    ")
                        failures.append("\(name): \(how)\(tail.isEmpty ? "" : "\n    " + tail) (log: \(log))")
                        print("  failed: \(name) (\(how))")
                    }
                } else {
                    still.append((job, child, log))
                }
            }
            running = still
        }
        // The table and the report, over every run that has metrics.
        let finished = jobs.filter { FileManager.default.fileExists(atPath: $0.folder + "/metrics.csv") }
        let runs = finished.compactMap { try? RunRecord(path: $0.folder) }
        if !runs.isEmpty {
            let labels = jobs.map(\.label).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            print("final eval_return_mean per configuration (mean ± s.e. over seeds; each seed's value):")
            for label in labels {
                let values = zip(finished, runs).filter { $0.0.label == label }.compactMap { $0.1.rows.last(where: { !($0["eval_return_mean"] ?? .nan).isNaN })?["eval_return_mean"] }
                let (mean, se) = meanAndStandardError(values)
                print("  \(label.isEmpty ? "(one configuration)" : label): \(values.isEmpty ? "–" : "\(formatValue(mean)) ± \(formatValue(se))") [\(values.map(formatValue).joined(separator: ", "))]")
            }
            try writeAtomically(Data(htmlReport(runs: runs, title: "rrl sweep: \(output)").utf8), to: report, role: "report")
            print("wrote \(report.path) (\(runs.count) runs)")
        }
        if !failures.isEmpty {
            throw TrainingError("\(failures.count) run\(failures.count == 1 ? "" : "s") failed:\n  " + failures.joined(separator: "\n  ") + "\nfix the cause and run the same sweep again: finished runs are kept")
        }
    }
}
