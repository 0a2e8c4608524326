import Foundation
import XCTest

/// The fault-injection suite: bad command lines and configuration files (the corpora in `Corpus/`),
/// folders rrl must not touch, damaged metrics, checkpoints and weights, `kill -9` at random moments,
/// a full disk, and misbehaving Python environments. Every case runs the real `rrl` binary and
/// asserts its exit code and message, that it neither crashed nor hung, and that no file it did not
/// write was touched and no earlier result was lost.
final class FaultInjectionTests: XCTestCase {
    /// Cases run by this suite, by kind (printed at the end of each test).
    static var counts: [String: Int] = [:]

    func count(_ kind: String, _ n: Int = 1) { FaultInjectionTests.counts[kind, default: 0] += n }

    override class func tearDown() {
        let total = counts.values.reduce(0, +)
        print("fault-injection cases: \(total) (" + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")")
    }

    override func setUp() {
        continueAfterFailure = true
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: RRLProcess.binary.path),
                      "the rrl binary is not next to the tests (\(RRLProcess.binary.path)); build it first (swift build -c release)")
    }

    /// Asserts what every bad input must satisfy: no crash, no hang, the exit code and the message.
    func assertFailsCleanly(_ result: RRLResult, exit: Int32?, message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(result.crashedOrHung, "crashed or hung: \(result.summary)", file: file, line: line)
        if let exit { XCTAssertEqual(result.status, exit, "exit code: \(result.summary)", file: file, line: line) }
        XCTAssertNotEqual(result.status, 0, "succeeded: \(result.summary)", file: file, line: line)
        XCTAssertTrue(result.output.contains(message), "expected '\(message)' in: \(result.summary)", file: file, line: line)
    }

    /// Splits a corpus line's arguments as a shell would: spaces separate, '...' quotes ('' is empty).
    static func split(_ text: String) -> [String] {
        var arguments: [String] = [], current = "", quoted = false, started = false
        for ch in text {
            if ch == "'" { quoted.toggle(); started = true; continue }
            if ch == " " && !quoted {
                if started { arguments.append(current) }
                current = ""; started = false
                continue
            }
            current.append(ch); started = true
        }
        if started { arguments.append(current) }
        return arguments
    }

    static func corpus(_ name: String) throws -> [(exit: Int32, text: String, rest: String)] {
        let url = RRLProcess.sourceRoot.appendingPathComponent("Tests/CLITests/Corpus/\(name)")
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            let parts = line.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let exit = Int32(parts[0].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (exit, parts[1].trimmingCharacters(in: .whitespaces), String(parts[2].dropFirst()))
        }
    }

    // MARK: - Corpora

    /// Every bad command line ends with its exit code and message, and writes nothing.
    func testBadCommandLinesFailCleanlyAndWriteNothing() throws {
        let cases = try FaultInjectionTests.corpus("commands.txt")
        XCTAssertGreaterThan(cases.count, 250)
        for (exit, text, rest) in cases {
            let sandbox = try makeSandbox("command")
            defer { try? FileManager.default.removeItem(at: sandbox) }
            let run = sandbox.appendingPathComponent("run").path
            let arguments = FaultInjectionTests.split(rest).map {
                $0.replacingOccurrences(of: "$RUN", with: run).replacingOccurrences(of: "$SANDBOX", with: sandbox.path)
            }
            let result = try RRLProcess.run(arguments, timeout: 30)
            assertFailsCleanly(result, exit: exit, message: text)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run), "a run folder was written: \(result.summary)")
            XCTAssertEqual(snapshot(sandbox).keys.sorted(), [], "files were written: \(result.summary)")
            count("command lines")
        }
    }

    /// Every bad configuration file ends with its exit code and message, and writes no run folder.
    func testBadConfigurationFilesFailCleanlyAndWriteNothing() throws {
        let cases = try FaultInjectionTests.corpus("configs.txt")
        XCTAssertGreaterThan(cases.count, 60)
        for (exit, text, contents) in cases {
            let sandbox = try makeSandbox("config")
            defer { try? FileManager.default.removeItem(at: sandbox) }
            let file = sandbox.appendingPathComponent("c.json")
            try Data(contents.utf8).write(to: file)
            let run = sandbox.appendingPathComponent("run").path
            let result = try RRLProcess.run(["train", "--config", file.path, "--run-dir", run], timeout: 30)
            assertFailsCleanly(result, exit: exit, message: text)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run), "a run folder was written: \(result.summary)")
            XCTAssertEqual(try Data(contentsOf: file), Data(contents.utf8), "the configuration file was changed")
            count("configuration files")
        }
    }

    // MARK: - Folders rrl must not touch

    /// A folder that holds other tools' files, even under names rrl uses (checkpoints/, event files),
    /// is refused and left byte for byte as it was, with or without --overwrite; an rrl run is
    /// replaced only with --overwrite, and then only rrl's own files go.
    func testFoldersRrlDidNotWriteAreNeverTouched() throws {
        let sandbox = try makeSandbox("folders")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let fm = FileManager.default
        let foreign = sandbox.appendingPathComponent("project")
        try fm.createDirectory(at: foreign.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        try Data("model".utf8).write(to: foreign.appendingPathComponent("checkpoints/model.pt"))
        try Data("tb".utf8).write(to: foreign.appendingPathComponent("events.out.tfevents.1.host"))
        try Data("notes".utf8).write(to: foreign.appendingPathComponent("notes.txt"))
        let before = snapshot(foreign)
        for extra in [[], ["--overwrite"]] {
            let result = try RRLProcess.run(["train", "sac", "--env", "pendulum", "--steps", "300", "--warmup", "100", "--run-dir", foreign.path] + extra)
            assertFailsCleanly(result, exit: 1, message: "is not empty and holds no rrl run")
            XCTAssertEqual(snapshot(foreign), before, "a foreign folder was changed")
            count("run folders")
        }
        // A folder with a foreign config.json (not an rrl configuration) is not a run either.
        let other = sandbox.appendingPathComponent("other")
        try fm.createDirectory(at: other, withIntermediateDirectories: true)
        try Data(#"{"lr": 3}"#.utf8).write(to: other.appendingPathComponent("config.json"))
        let otherBefore = snapshot(other)
        assertFailsCleanly(try RRLProcess.run(["train", "--run-dir", other.path, "--overwrite"]), exit: 1, message: "holds no rrl run")
        XCTAssertEqual(snapshot(other), otherBefore)
        count("run folders")

        // An rrl run: refused without --overwrite (nothing changes); with it, rrl's files are replaced
        // and a file the user put there stays.
        let run = sandbox.appendingPathComponent("run")
        let options = ["train", "sac", "--env", "pendulum", "--steps", "300", "--warmup", "100", "--eval-interval", "100", "--quiet"]
        let arguments = options + ["--run-dir", run.path]
        XCTAssertEqual(try RRLProcess.run(arguments).status, 0)
        try Data("mine".utf8).write(to: run.appendingPathComponent("my-notes.txt"))
        try Data("tb".utf8).write(to: run.appendingPathComponent("events.out.tfevents.2.other-tool"))
        let runBefore = snapshot(run).filter { !$0.key.hasSuffix(".rrl-lock") }
        assertFailsCleanly(try RRLProcess.run(arguments), exit: 1, message: "already holds a run")
        XCTAssertEqual(snapshot(run).filter { !$0.key.hasSuffix(".rrl-lock") }, runBefore)
        XCTAssertEqual(try RRLProcess.run(arguments + ["--overwrite"]).status, 0)
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("my-notes.txt")), Data("mine".utf8))
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("events.out.tfevents.2.other-tool")), Data("tb".utf8))
        let events = try fm.contentsOfDirectory(atPath: run.path).filter { $0.hasSuffix(".rrl") }
        XCTAssertEqual(events.count, 1, "the replaced run's event files are gone, the new run has one: \(events)")
        count("run folders", 3)

        // A run that cannot start leaves nothing; one whose folder holds no results yet is simply started again.
        let failed = sandbox.appendingPathComponent("failed")
        assertFailsCleanly(try RRLProcess.run(["train", "sac", "--replay-capacity", "10000000000", "--run-dir", failed.path]), exit: 64, message: "memory")
        XCTAssertFalse(fm.fileExists(atPath: failed.path))
        try fm.createDirectory(at: failed, withIntermediateDirectories: true)
        try fm.copyItem(at: run.appendingPathComponent("config.json"), to: failed.appendingPathComponent("config.json"))
        XCTAssertEqual(try RRLProcess.run(options + ["--run-dir", failed.path]).status, 0, "a run folder without results blocks a new run")
        count("run folders", 2)
    }

    /// Two processes on one run folder: the second is refused and names the first.
    func testASecondRunOnTheSameFolderIsRefused() throws {
        let sandbox = try makeSandbox("lock")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let run = sandbox.appendingPathComponent("run")
        let output = sandbox.appendingPathComponent("first.out").path
        let first = try RRLProcess.start(["train", "sac", "--env", "pendulum", "--steps", "200000", "--run-dir", run.path], outputPath: output)
        defer { kill(first, SIGKILL); _ = RRLProcess.wait(first, timeout: 10) }
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: run.appendingPathComponent("metrics.csv").path) && Date() < deadline { usleep(20_000) }
        for arguments in [["train", "--resume", run.path], ["train", "sac", "--env", "pendulum", "--run-dir", run.path, "--overwrite"]] {
            let result = try RRLProcess.run(arguments)
            assertFailsCleanly(result, exit: 1, message: "is in use by another rrl process (pid \(first))")
            count("locks")
        }
        // SIGHUP (a closed terminal) stops it like SIGTERM: a checkpoint, then exit 128 + 1.
        kill(first, SIGHUP)
        let (status, signal, timedOut) = RRLProcess.wait(first, timeout: 30)
        XCTAssertFalse(timedOut)
        XCTAssertNil(signal)
        XCTAssertEqual(status, 129)
        let log = try String(contentsOfFile: output, encoding: .utf8)
        XCTAssertTrue(log.contains("stopped by SIGHUP"), log)
        XCTAssertTrue(log.contains("training sac"), "progress lines reach a file as they are printed: \(log)")
        XCTAssertFalse(CheckpointFiles.list(run).isEmpty)
        count("signals")
    }

    // MARK: - Damaged files

    /// A short SAC run with checkpoints at steps 300 and 600 (kept: both), copied per case.
    func makeBaseRun(_ sandbox: URL) throws -> URL {
        let run = sandbox.appendingPathComponent("base")
        let result = try RRLProcess.run(["train", "sac", "--env", "pendulum", "--steps", "600", "--warmup", "100", "--eval-interval", "100",
                                         "--checkpoint-interval", "300", "--run-dir", run.path, "--quiet"])
        XCTAssertEqual(result.status, 0, result.summary)
        return run
    }

    func copy(_ run: URL, to name: String, in sandbox: URL) throws -> URL {
        let destination = sandbox.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: destination)
        try FileManager.default.copyItem(at: run, to: destination)
        return destination
    }

    /// What a failed resume must leave: every file as it was (the lock file aside).
    func unchanged(_ folder: URL) -> [String: Data] { snapshot(folder).filter { !$0.key.hasSuffix(".rrl-lock") } }

    /// A damaged metrics.csv stops a resume before anything is changed, with the line and what to do.
    func testADamagedMetricsFileStopsAResumeBeforeAnythingChanges() throws {
        let sandbox = try makeSandbox("metrics")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        let text = try String(contentsOf: base.appendingPathComponent("metrics.csv"), encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        let columns = lines[0].split(separator: ",").count
        func edited(_ body: (inout [String]) -> Void) -> String {
            var copy = lines
            body(&copy)
            return copy.joined(separator: "\n") + "\n"
        }
        let damaged: [(String, String)] = [
            (edited { $0[2] = "garbage,row" }, "line 3"),
            (edited { $0[2] = "nan" + $0[2].drop { $0 != "," } }, "line 3"),
            (edited { $0[3] = "1e300" + $0[3].drop { $0 != "," } }, "line 4"),
            (edited { $0[1] = "-5" + $0[1].drop { $0 != "," } }, "line 2"),
            (edited { $0[2] = "100.5" + $0[2].drop { $0 != "," } }, "line 3"),
            (edited { $0[3] = $0[3] + ",7" }, "line 4"),
            (edited { $0[3] = String($0[3][..<$0[3].lastIndex(of: ",")!]) }, "line 4"),
            (edited { $0[2] = $0[2].replacingOccurrences(of: ",", with: ";") }, "line 3"),
            (edited { $0[4] = $0[4].replacingOccurrences(of: ",", with: ",inf,", options: [], range: $0[4].range(of: ",")) }, "line 5"),
            (edited { $0[1] = "" }, "line 2"),
            (edited { $0.swapAt(2, 3) }, "line 4"),
            (edited { $0[0] = $0[0].replacingOccurrences(of: "step", with: "steps") }, "header"),
            (edited { $0.removeFirst() }, "header"),
            (edited { $0.removeLast(4) }, "cut short"),
            ("", "header"),
            ("\u{0}\u{0}\u{0}", "header"),
            (edited { $0[2] = String(repeating: "9", count: 400) + $0[2].drop { $0 != "," } }, "line 3"),
            (edited { $0[2] = "0x10" + $0[2].drop { $0 != "," } }, "line 3"),
            (edited { $0[5] = String(repeating: ",", count: columns - 1) }, "line 6"),
        ]
        for (contents, message) in damaged {
            let run = try copy(base, to: "case", in: sandbox)
            try Data(contents.utf8).write(to: run.appendingPathComponent("metrics.csv"))
            let before = unchanged(run)
            let result = try RRLProcess.run(["train", "--resume", run.path, "--steps", "900", "--quiet"])
            assertFailsCleanly(result, exit: nil, message: message)
            XCTAssertTrue(result.output.contains("metrics.csv"), result.summary)
            XCTAssertEqual(unchanged(run), before, "a failed resume changed the run folder: \(result.summary)")
            count("metrics files")
        }
        // An unreadable metrics file (a folder in its place) is the same.
        let run = try copy(base, to: "case", in: sandbox)
        try FileManager.default.removeItem(at: run.appendingPathComponent("metrics.csv"))
        try FileManager.default.createDirectory(at: run.appendingPathComponent("metrics.csv"), withIntermediateDirectories: true)
        assertFailsCleanly(try RRLProcess.run(["train", "--resume", run.path, "--steps", "900"]), exit: nil, message: "metrics.csv")
        count("metrics files")
    }

    /// Every bit flip and cut of the newest checkpoint is detected (the CRCs cover header and data),
    /// reported with the intact previous checkpoint, and changes nothing; with both damaged the run
    /// is reported as not resumable. Moving the damaged one away resumes from the previous one.
    func testDamagedCheckpointsAreDetectedAndNameTheIntactOne() throws {
        let sandbox = try makeSandbox("checkpoints")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        let checkpoints = CheckpointFiles.list(base)
        XCTAssertEqual(checkpoints.map(\.lastPathComponent), ["step-000000000300.ckpt", "step-000000000600.ckpt"])
        let newest = try Data(contentsOf: checkpoints[1])
        let headerLength = Int(newest.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var rng = SystemRandomNumberGenerator()
        var positions = (0..<60).map { _ in Int.random(in: 0..<(8 + headerLength), using: &rng) }  // the header, where damage misleads most
        positions += (0..<50).map { _ in Int.random(in: (8 + headerLength)..<newest.count, using: &rng) }
        positions += [0, 7, 8, 9, 8 + headerLength - 1, newest.count - 1]
        let cuts = [0, 4, 8, 9, 100, 8 + headerLength / 2, 8 + headerLength, 8 + headerLength + 1, newest.count / 2, newest.count - 1]
        let resume = { (run: URL) in try RRLProcess.run(["train", "--resume", run.path, "--steps", "900", "--quiet"]) }
        var cases: [(String, Data)] = positions.map { position in
            var data = newest
            data[position] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            return ("bit flip at byte \(position)", data)
        }
        cases += cuts.map { ("cut to \($0) bytes", newest.prefix($0)) }
        cases.append(("appended bytes", newest + Data("extra".utf8)))
        for (name, data) in cases {
            let run = try copy(base, to: "case", in: sandbox)
            try data.write(to: CheckpointFiles.list(run)[1])
            let before = unchanged(run)
            let result = try resume(run)
            assertFailsCleanly(result, exit: 1, message: "The previous checkpoint (step 300) is intact")
            XCTAssertEqual(unchanged(run), before, "\(name): a failed resume changed the run folder")
            count("checkpoints")
        }
        // Both damaged: no advice to resume from the previous one.
        let run = try copy(base, to: "case", in: sandbox)
        for url in CheckpointFiles.list(run) {
            var data = try Data(contentsOf: url)
            data[data.count / 2] ^= 0x10
            try data.write(to: url)
        }
        assertFailsCleanly(try resume(run), exit: 1, message: "is damaged too, so the run cannot be resumed")
        count("checkpoints")
        // The advice works: with the damaged newest moved away, the run resumes from step 300 and ends.
        let advised = try copy(base, to: "advised", in: sandbox)
        var data = newest
        data[20] ^= 0x01
        try data.write(to: CheckpointFiles.list(advised)[1])
        try FileManager.default.moveItem(at: CheckpointFiles.list(advised)[1], to: sandbox.appendingPathComponent("moved.ckpt"))
        let result = try resume(advised)
        XCTAssertEqual(result.status, 0, result.summary)
        XCTAssertTrue(result.output.contains("final evaluation"), result.summary)
        count("checkpoints")
    }

    /// `rrl export` writes each format (also for one actor network per agent) and never replaces a
    /// file without --overwrite (the file stays as it was).
    func testExportWritesEachFormatAndKeepsFiles() throws {
        let sandbox = try makeSandbox("export")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        for format in ["onnx", "c", "torch", "weights"] {
            // torch and weights both write policy.safetensors: each format into a folder of its own.
            let output = sandbox.appendingPathComponent(format == "onnx" ? "out" : "out-\(format)").path
            let result = try RRLProcess.run(["export", base.path, "--format", format, "--output", output])
            XCTAssertEqual(result.status, 0, result.summary)
        }
        let model = sandbox.appendingPathComponent("out/policy.onnx"), before = try Data(contentsOf: model)
        XCTAssertGreaterThan(before.count, 1000)
        let again = try RRLProcess.run(["export", base.path, "--format", "onnx", "--output", sandbox.appendingPathComponent("out").path])
        assertFailsCleanly(again, exit: 64, message: "exists; give --overwrite to replace it")
        XCTAssertEqual(try Data(contentsOf: model), before)
        let forced = try RRLProcess.run(["export", base.path, "--format", "onnx", "--output", sandbox.appendingPathComponent("out").path, "--overwrite"])
        XCTAssertEqual(forced.status, 0, forced.summary)
        // --output with the format's extension names the file; another format's extension is refused
        // and nothing is made.
        let named = sandbox.appendingPathComponent("named/pendulum.onnx")
        let byName = try RRLProcess.run(["export", base.path, "--format", "onnx", "--output", named.path])
        XCTAssertEqual(byName.status, 0, byName.summary)
        XCTAssertEqual(try Data(contentsOf: named), try Data(contentsOf: model))
        let header = sandbox.appendingPathComponent("named/pendulum.h")
        XCTAssertEqual(try RRLProcess.run(["export", base.path, "--format", "c", "--output", header.path]).status, 0)
        XCTAssertTrue(try String(contentsOf: header, encoding: .utf8).contains("rrl_policy_step"))
        let wrong = sandbox.appendingPathComponent("wrong.onnx")
        assertFailsCleanly(try RRLProcess.run(["export", base.path, "--format", "c", "--output", wrong.path]), exit: 64,
                           message: "a .onnx file is what --format onnx writes; for --format c give a folder or a name ending in .h")
        XCTAssertFalse(FileManager.default.fileExists(atPath: wrong.path))
        // Two PyTorch policies into one folder share its rrl_policy.py.
        for name in ["first", "second"] {
            let torch = try RRLProcess.run(["export", base.path, "--format", "torch", "--output", sandbox.appendingPathComponent("models/\(name).safetensors").path])
            XCTAssertEqual(torch.status, 0, torch.summary)
        }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: sandbox.appendingPathComponent("models").path)),
                       ["first.safetensors", "second.safetensors", "rrl_policy.py"])
        let perAgent = sandbox.appendingPathComponent("per-agent")
        let trained = try RRLProcess.run(["train", "masac", "--actor-per-agent", "--steps", "300", "--warmup", "100", "--eval-interval", "300",
                                          "--run-dir", perAgent.path, "--quiet"])
        XCTAssertEqual(trained.status, 0, trained.summary)
        let exported = try RRLProcess.run(["export", perAgent.path, "--format", "c"])
        XCTAssertEqual(exported.status, 0, exported.summary)
        XCTAssertTrue(FileManager.default.fileExists(atPath: perAgent.appendingPathComponent("policy.h").path))
    }

    /// `rrl sweep` trains every point of its grid for every seed, writes one report, skips what is
    /// finished when run again, continues its runs when the budget is raised, and refuses a folder
    /// that holds runs of another configuration without touching it.
    func testSweepTrainsTheGridAndRunsAgainWhereItStopped() throws {
        let sandbox = try makeSandbox("sweep")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let output = sandbox.appendingPathComponent("grid").path
        func sweep(_ steps: Int, hidden: String = "8") throws -> RRLResult {
            try RRLProcess.run(["sweep", "--vary", "epochs=1,2", "--seeds", "0", "1", "--jobs", "2", "--output", output, "--",
                                "ppo", "--env", "cartpole-position", "--envs", "2", "--rollout-steps", "32", "--minibatch-size", "32",
                                "--hidden", hidden, "--steps", "\(steps)", "--eval-interval", "64", "--eval-episodes", "2"], timeout: 120)
        }
        let first = try sweep(128)
        XCTAssertEqual(first.status, 0, first.summary)
        XCTAssertTrue(first.output.contains("0 finished, 4 to train"), first.summary)
        for point in ["epochs=1", "epochs=2"] {
            for seed in 0..<2 {
                let folder = "\(output)/\(point)/seed\(seed)"
                XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/weights.safetensors"), folder)
                XCTAssertTrue((try String(contentsOfFile: folder + "/config.json", encoding: .utf8)).contains("\"seed\" : \(seed)"))
            }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: output + "/report.html"))
        let again = try sweep(128)
        XCTAssertEqual(again.status, 0, again.summary)
        XCTAssertTrue(again.output.contains("4 finished, 0 to train"), again.summary)
        let longer = try sweep(256)
        XCTAssertEqual(longer.status, 0, longer.summary)
        XCTAssertTrue(longer.output.contains("0 finished, 4 to train"), longer.summary)
        let metrics = try String(contentsOfFile: "\(output)/epochs=2/seed1/metrics.csv", encoding: .utf8)
        XCTAssertTrue(metrics.split(separator: "\n").last!.hasPrefix("256,"), "continued to the new budget")
        let before = snapshot(sandbox)
        let other = try sweep(256, hidden: "16")
        assertFailsCleanly(other, exit: 64, message: "holds a run of another configuration")
        XCTAssertEqual(snapshot(sandbox), before, "nothing changed")
    }

    /// `rrl report` and `rrl plot` refresh what they wrote before but never replace a file of the
    /// user's without --overwrite; `rrl sweep` refuses, before training anything, a report.html of
    /// the user's in its folder.
    func testReportsAndPlotsNeverReplaceAUsersFile() throws {
        let sandbox = try makeSandbox("report")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        let notes = sandbox.appendingPathComponent("notes.html"), words = Data("my notes\n".utf8)
        try words.write(to: notes)
        for (command, output) in [("report", notes), ("plot", sandbox.appendingPathComponent("notes.svg"))] {
            if command == "plot" { try words.write(to: output) }
            assertFailsCleanly(try RRLProcess.run([command, base.path, "--output", output.path]), exit: 64,
                               message: "exists and was not written by `rrl \(command)`; give --overwrite")
            XCTAssertEqual(try Data(contentsOf: output), words, "the user's file is untouched")
            let forced = try RRLProcess.run([command, base.path, "--output", output.path, "--overwrite"])
            XCTAssertEqual(forced.status, 0, forced.summary)
            let again = try RRLProcess.run([command, base.path, "--output", output.path])
            XCTAssertEqual(again.status, 0, "\(command) refreshes its own file: \(again.summary)")
            count("other")
        }
        // A report written before reports carried their mark is recognised by its note on the curves.
        let earlier = sandbox.appendingPathComponent("earlier.html")
        try Data("<html><head><title>t</title></head><body><p>1 run in 1 configuration; curves show the mean over a configuration's runs (seeds)</p>".utf8).write(to: earlier)
        let refreshed = try RRLProcess.run(["report", base.path, "--output", earlier.path])
        XCTAssertEqual(refreshed.status, 0, refreshed.summary)
        let grid = sandbox.appendingPathComponent("grid")
        try FileManager.default.createDirectory(at: grid, withIntermediateDirectories: true)
        try words.write(to: grid.appendingPathComponent("report.html"))
        let before = snapshot(sandbox)
        let sweep = try RRLProcess.run(["sweep", "--seeds", "0", "--output", grid.path, "--", "sac", "--env", "pendulum", "--steps", "200", "--warmup", "100"])
        assertFailsCleanly(sweep, exit: 64, message: "was not written by `rrl sweep`; move it, or give the sweep another --output")
        XCTAssertEqual(snapshot(sandbox), before, "nothing trained, nothing changed")
        count("other")
    }

    /// `--preset` is where a run starts: a config file's keys apply over the recipe, and the command
    /// line over both (the recipe once replaced every setting the file made, silently).
    func testAConfigFileAppliesOverAPreset() throws {
        let sandbox = try makeSandbox("preset")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let file = sandbox.appendingPathComponent("small.json")
        try Data((#"{"agent": {"hiddenSize": 8, "headHiddenSizes": [8], "batchSize": 2, "criticHeads": 3, "#
                  + #""contextEncoder": {"after": 8, "before": [8], "inputEmbedding": 4, "projection": 4}}}"#).utf8).write(to: file)
        let sac = sandbox.appendingPathComponent("sac")
        let trained = try RRLProcess.run(["train", "sac", "--preset", "resel", "--config", file.path, "--env", "pendulum-velocity",
                                          "--critic-heads", "4", "--warmup", "8", "--steps", "10", "--eval-episodes", "1", "--run-dir", sac.path, "--quiet"])
        XCTAssertEqual(trained.status, 0, trained.summary)
        let agent = try XCTUnwrap(try runConfiguration(sac)["agent"] as? [String: Any])
        XCTAssertEqual(agent["hiddenSize"] as? Int, 8, "the file's")
        XCTAssertEqual(agent["headHiddenSizes"] as? [Int], [8], "the file's")
        XCTAssertEqual(agent["batchSize"] as? Int, 2, "the file's")
        XCTAssertEqual((agent["contextEncoder"] as? [String: Any])?["projection"] as? Int, 4, "the file's")
        XCTAssertEqual(agent["criticHeads"] as? Int, 4, "the command line's over the file's")
        XCTAssertEqual(agent["encoderLearningRate"] as? Double, 1e-5, "the recipe's")
        XCTAssertEqual(agent["targetSubset"] as? Int, 2, "the recipe's")
        XCTAssertEqual((agent["sampler"] as? [String: Any])?["sequenceLength"] as? Int, 200, "the recipe's, for the command line's environment")
        XCTAssertEqual((agent["sampler"] as? [String: Any])?["packEpisodes"] as? Bool, true, "the recipe's")
        count("other")

        let ppoFile = sandbox.appendingPathComponent("ppo.json")
        try Data(#"{"ppo": {"valueClipRange": 0.3, "hiddenSize": 8}}"#.utf8).write(to: ppoFile)
        let ppo = sandbox.appendingPathComponent("ppo")
        let ppoRun = try RRLProcess.run(["train", "ppo", "--preset", "rl-zoo", "--config", ppoFile.path, "--envs", "2", "--rollout-steps", "16",
                                         "--minibatch-size", "32", "--chunk-length", "16", "--steps", "32", "--eval-episodes", "1",
                                         "--run-dir", ppo.path, "--quiet"])
        XCTAssertEqual(ppoRun.status, 0, ppoRun.summary)
        let settings = try XCTUnwrap(try runConfiguration(ppo)["ppo"] as? [String: Any])
        XCTAssertEqual(settings["valueClipRange"] as? Double, 0.3, "the file's over the recipe's 0")
        XCTAssertEqual(settings["hiddenSize"] as? Int, 8, "the file's")
        count("other")
    }

    /// MASAC's default windows are whole episodes from their first step; options that make windows
    /// shorter than an episode (an MLP's single transitions, a number of steps) let them start anywhere,
    /// unless --start-at-episode-start says otherwise (team-recall's episodes are 7 steps).
    func testWindowsShorterThanEpisodesStartAnywhere() throws {
        let sandbox = try makeSandbox("windows")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        func sampler(_ options: [String]) throws -> (length: Int?, startsAtEpisodeStart: Bool?) {
            let run = sandbox.appendingPathComponent("run\(options.joined())")
            let trained = try RRLProcess.run(["train", "masac", "--env", "team-recall", "--warmup", "14", "--steps", "21", "--eval-episodes", "1",
                                              "--run-dir", run.path, "--quiet"] + options)
            XCTAssertEqual(trained.status, 0, trained.summary)
            let s = try XCTUnwrap((try runConfiguration(run)["agent"] as? [String: Any])?["sampler"] as? [String: Any])
            return (s["sequenceLength"] as? Int, s["alwaysStartAtEpisodeStart"] as? Bool)
        }
        let whole = try sampler([])
        XCTAssertEqual(whole.length, 7, "the default: whole episodes")
        XCTAssertEqual(whole.startsAtEpisodeStart, true, "whole episodes start where the episodes do")
        let mlp = try sampler(["--network", "mlp"])
        XCTAssertEqual(mlp.length, 1)
        XCTAssertEqual(mlp.startsAtEpisodeStart, false, "an MLP's transitions come from anywhere in an episode")
        XCTAssertEqual(try sampler(["--sequence-length", "3"]).startsAtEpisodeStart, false, "windows shorter than an episode")
        XCTAssertEqual(try sampler(["--sequence-length", "7"]).startsAtEpisodeStart, true, "windows as long as an episode")
        XCTAssertEqual(try sampler(["--sequence-length", "3", "--start-at-episode-start"]).startsAtEpisodeStart, true, "the option given")
        count("other", 5)
    }

    /// A damaged weights file never crashes `rrl evaluate`: it is a clear error, or (a flip in unused
    /// header padding or in a weight's low bits) an evaluation with finite numbers.
    func testDamagedWeightsNeverCrashEvaluate() throws {
        let sandbox = try makeSandbox("weights")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        let weights = try Data(contentsOf: base.appendingPathComponent("weights.safetensors"))
        let headerLength = Int(weights.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var rng = SystemRandomNumberGenerator()
        var cases: [Data] = (0..<30).map { _ in
            var data = weights
            data[Int.random(in: 0..<(8 + headerLength), using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            return data
        }
        cases += [0, 5, 8, headerLength / 2, 8 + headerLength, weights.count - 3].map { weights.prefix($0) }
        // A weight turned into NaN (a float's exponent bits all set).
        var poisoned = weights
        for i in 0..<4 { poisoned[8 + headerLength + 64 + i] = 0xFF }
        cases.append(poisoned)
        for data in cases {
            let run = try copy(base, to: "case", in: sandbox)
            try data.write(to: run.appendingPathComponent("weights.safetensors"))
            let result = try RRLProcess.run(["evaluate", run.path, "--episodes", "2"])
            XCTAssertFalse(result.crashedOrHung, result.summary)
            if result.status == 0 {
                XCTAssertFalse(result.output.contains("nan"), "a non-finite evaluation passed as a result: \(result.summary)")
            } else {
                XCTAssertTrue(result.output.contains("weights") || result.output.contains("safetensors"), result.summary)
            }
            count("weights files")
        }
    }

    // MARK: - kill -9

    /// Runs killed with SIGKILL at random moments (checkpoints every 100 steps, so many kills land in
    /// or near a checkpoint write) and resumed, again and again, end with the same metrics and weights
    /// as a run that was never stopped.
    func testKillNineAtRandomMomentsThenResumeGivesTheSameRun() throws {
        let sandbox = try makeSandbox("kill")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let arguments = ["train", "sac", "--env", "pendulum", "--steps", "1500", "--warmup", "100", "--eval-interval", "100",
                         "--checkpoint-interval", "100", "--quiet"]
        let reference = sandbox.appendingPathComponent("reference")
        let started = Date()
        XCTAssertEqual(try RRLProcess.run(arguments + ["--run-dir", reference.path]).status, 0)
        let duration = Date().timeIntervalSince(started)
        var rng = SystemRandomNumberGenerator()
        for k in 0..<8 {
            let run = sandbox.appendingPathComponent("run\(k)")
            let output = sandbox.appendingPathComponent("out\(k)").path
            var finished = false, kills = 0
            var next = arguments + ["--run-dir", run.path]
            while !finished {
                let pid = try RRLProcess.start(next, outputPath: output)
                if kills < 3 {
                    usleep(UInt32(Double.random(in: 0.02...max(0.05, duration * 0.8), using: &rng) * 1e6))
                    kill(pid, SIGKILL)
                    kills += 1
                }
                let (status, _, timedOut) = RRLProcess.wait(pid, timeout: 60)
                XCTAssertFalse(timedOut)
                if status == 0 { finished = true; break }
                // Killed after its weights were written at the end: the run is complete.
                if FileManager.default.fileExists(atPath: run.appendingPathComponent("weights.safetensors").path),
                   CheckpointFiles.list(run).last?.lastPathComponent == "step-000000001500.ckpt" { finished = true; break }
                // Continue: from the last checkpoint if there is one, else from the start.
                next = CheckpointFiles.list(run).isEmpty ? arguments + ["--run-dir", run.path, "--overwrite"] : ["train", "--resume", run.path, "--quiet"]
                count("kill -9")
            }
            XCTAssertEqual(try Self.metricsWithoutTiming(run), try Self.metricsWithoutTiming(reference), "run \(k) after \(kills) kills")
            XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("weights.safetensors")),
                           try Data(contentsOf: reference.appendingPathComponent("weights.safetensors")), "run \(k) after \(kills) kills")
            let leftovers = (try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [], "temporary files of interrupted writes are cleaned up on resume")
        }
    }

    /// metrics.csv without its timing columns.
    static func metricsWithoutTiming(_ run: URL) throws -> [String] {
        let lines = try String(contentsOf: run.appendingPathComponent("metrics.csv"), encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",", omittingEmptySubsequences: false)
        let keep = header.indices.filter { !["wall_seconds", "steps_per_second"].contains(String(header[$0])) }
        return lines.map { line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            return keep.map { String(cells[$0]) }.joined(separator: ",")
        }
    }

    // MARK: - A full disk

    /// On a small tmpfs (mounted by the test; root only): a checkpoint that does not fit stops the run
    /// with a message naming the file and the last good checkpoint, leaving no partial file; metrics
    /// that do not fit stop it the same way, with every row before intact. After space is freed the
    /// run resumes and ends as a run that never stopped.
    func testAFullDiskStopsCleanlyAndTheRunResumesExactly() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let sandbox = try makeSandbox("disk")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let mountPoint = sandbox.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        func shell(_ command: String) -> Int32 {
            let pid = try? RRLProcess.startShell(command)
            return pid.map { RRLProcess.wait($0, timeout: 30).0 ?? -1 } ?? -1
        }
        guard shell("mount -t tmpfs -o size=640k tmpfs '\(mountPoint.path)'") == 0 else { throw XCTSkip("cannot mount a tmpfs here") }
        defer { _ = shell("umount '\(mountPoint.path)'") }
        let arguments = ["train", "sac", "--env", "pendulum", "--steps", "2500", "--warmup", "100", "--eval-interval", "100",
                         "--checkpoint-interval", "500", "--quiet"]
        let reference = sandbox.appendingPathComponent("reference")
        XCTAssertEqual(try RRLProcess.run(arguments + ["--run-dir", reference.path]).status, 0)

        // Checkpoints of about 250 kB: the third one (with two kept and its temporary file) does not fit.
        let run = mountPoint.appendingPathComponent("run")
        let result = try RRLProcess.run(arguments + ["--run-dir", run.path])
        assertFailsCleanly(result, exit: 1, message: "the disk is full")
        XCTAssertTrue(result.output.contains("cannot write the checkpoint"), result.summary)
        XCTAssertTrue(result.output.contains("The last good checkpoint (step"), result.summary)
        let files = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
        XCTAssertEqual(files.filter { $0.contains(".tmp-") }, [], "a partial checkpoint was left behind")
        try Self.assertRowsAreWhole(run)
        count("full disk")

        XCTAssertEqual(shell("mount -o remount,size=8m '\(mountPoint.path)'"), 0)
        let resumed = try RRLProcess.run(["train", "--resume", run.path, "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
        XCTAssertEqual(try Self.metricsWithoutTiming(run), try Self.metricsWithoutTiming(reference))
        count("full disk")

        // Metrics that do not fit: a filler leaves a few kB, so rows stop fitting soon after the start.
        let second = mountPoint.appendingPathComponent("second")
        try? FileManager.default.removeItem(at: run)
        XCTAssertEqual(shell("mount -o remount,size=256k '\(mountPoint.path)' && head -c 236k /dev/zero > '\(mountPoint.path)/filler'"), 0)
        let stopped = try RRLProcess.run(["train", "sac", "--env", "pendulum", "--steps", "20000", "--warmup", "100", "--eval-interval", "20",
                                          "--checkpoint-interval", "0", "--quiet", "--run-dir", second.path])
        assertFailsCleanly(stopped, exit: 1, message: "the disk is full")
        XCTAssertTrue(stopped.output.contains("metrics") || stopped.output.contains("TensorBoard") || stopped.output.contains("run configuration"), stopped.summary)
        if FileManager.default.fileExists(atPath: second.appendingPathComponent("metrics.csv").path) { try Self.assertRowsAreWhole(second) }
        count("full disk")
    }

    /// Every line of metrics.csv has the header's number of cells and the file ends with a newline.
    static func assertRowsAreWhole(_ run: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try String(contentsOf: run.appendingPathComponent("metrics.csv"), encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("\n"), "metrics.csv ends mid-row", file: file, line: line)
        let lines = text.split(separator: "\n")
        let width = lines.first?.split(separator: ",", omittingEmptySubsequences: false).count ?? 0
        for l in lines { XCTAssertEqual(l.split(separator: ",", omittingEmptySubsequences: false).count, width, "a partial row: \(l)", file: file, line: line) }
    }

    // MARK: - Misbehaving Python environments

    /// Python environments that return the wrong shape, have empty observations, unbounded or huge
    /// action spaces, raise or crash: each a clear error; a Box(2, 2) action reaches the environment
    /// with its shape.
    func testMisbehavingPythonEnvironmentsAreClearErrors() throws {
        let probe = try RRLProcess.run(["list", "--python"], timeout: 60)
        guard probe.status == 0 else { throw XCTSkip("gymnasium is not installed: \(probe.output.prefix(200))") }
        let sandbox = try makeSandbox("python")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let cases: [(String, String, Int32?, String)] = [
            ("sac", "WrongShape", 64, "has shape (4,)"), ("ppo", "WrongShape", 64, "has shape (4,)"),
            ("sac", "EmptyObservation", 64, "has no values"), ("ppo", "EmptyObservation", 64, "has no values"),
            ("sac", "UnboundedAction", 64, "infinite bounds"), ("ppo", "UnboundedAction", 64, "infinite bounds"),
            ("sac", "HugeDiscreteAction", 64, "10000000 discrete actions"), ("ppo", "HugeDiscreteAction", 64, "10000000 discrete actions"),
            ("sac", "Raise", 1, "the pole fell off the cart"), ("ppo", "Crash", 1, "exited with status 3"),
        ]
        for (algorithm, name, exit, message) in cases {
            let run = sandbox.appendingPathComponent("\(algorithm)-\(name)")
            let warmup = algorithm == "sac" ? ["--warmup", "50"] : []
            let result = try RRLProcess.run(["train", algorithm, "--env", "gym:rrl-testing/\(name)-v0", "--env-module", "rrl_bridge.testing",
                                             "--steps", "300", "--run-dir", run.path, "--quiet"] + warmup, timeout: 120)
            assertFailsCleanly(result, exit: exit, message: message)
            count("Python environments")
        }
        let run = sandbox.appendingPathComponent("matrix")
        let result = try RRLProcess.run(["train", "sac", "--env", "gym:rrl-testing/MatrixAction-v0", "--env-module", "rrl_bridge.testing",
                                         "--steps", "300", "--warmup", "50", "--run-dir", run.path, "--quiet"], timeout: 120)
        XCTAssertEqual(result.status, 0, result.summary)
        count("Python environments")
    }

    // MARK: - Other paths

    /// evaluate on an interrupted run points at --resume; a finished PPO run extended with --steps says
    /// what happens to its schedule.
    func testInterruptedAndExtendedRunsSayWhatToDo() throws {
        let sandbox = try makeSandbox("other")
        defer { try? FileManager.default.removeItem(at: sandbox) }
        let base = try makeBaseRun(sandbox)
        try FileManager.default.removeItem(at: base.appendingPathComponent("weights.safetensors"))
        assertFailsCleanly(try RRLProcess.run(["evaluate", base.path]), exit: 1, message: "continue it with `rrl train --resume")
        count("other")
        let ppo = sandbox.appendingPathComponent("ppo")
        XCTAssertEqual(try RRLProcess.run(["train", "ppo", "--steps", "512", "--eval-interval", "256", "--run-dir", ppo.path, "--quiet"]).status, 0)
        let extended = try RRLProcess.run(["train", "--resume", ppo.path, "--steps", "1024", "--quiet"])
        XCTAssertEqual(extended.status, 0, extended.summary)
        XCTAssertTrue(extended.output.contains("annealed to 0"), extended.summary)
        count("other")
        assertFailsCleanly(try RRLProcess.run(["evaluate", ppo.path, "--render", "--render-steps", "0"]), exit: 1, message: "--render-steps must be at least 1")
        count("other")
    }
}

/// The checkpoints of a run folder, oldest first.
enum CheckpointFiles {
    static func list(_ run: URL) -> [URL] {
        let folder = run.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".ckpt") }.sorted().map { folder.appendingPathComponent($0) }
    }
}

extension RRLProcess {
    /// Starts `/bin/sh -c command` (output discarded).
    static func startShell(_ command: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let words: [String] = ["/bin/sh", "-c", command]
        let argv = words.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
        guard status == 0 else { throw NSError(domain: "spawn", code: Int(status)) }
        return pid
    }
}
