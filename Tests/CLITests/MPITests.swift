import Foundation
import XCTest

/// `mpirun -np N rrl train ...` end to end. These need Open MPI (`apt-get install libopenmpi-dev
/// openmpi-bin`) and an rrl built with the MPI trait, named by `RRL_MPI_RRL` (CI builds one with
/// `swift build -c release --traits MPI --build-path .build/mpi`); without them they are skipped,
/// unless `RRL_REQUIRE_MPI_CHECKS=1` says they must run.
final class MPITests: XCTestCase {
    struct Run {
        var status: Int32
        var output: String
        var timedOut: Bool
        var summary: String { "exit \(status)\(timedOut ? " (hung, killed)" : "")\n\(output)" }
    }

    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: folder)
    }

    static var mpirun: String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map(String.init)
        return paths.map { $0 + "/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The MPI build of rrl and mpirun, or a skip (a failure when the checks are required).
    func requirements() throws -> (rrl: String, mpirun: String) {
        let required = ProcessInfo.processInfo.environment["RRL_REQUIRE_MPI_CHECKS"] == "1"
        let rrl = ProcessInfo.processInfo.environment["RRL_MPI_RRL"]
        guard let rrl, FileManager.default.isExecutableFile(atPath: rrl), let mpirun = MPITests.mpirun else {
            let missing = "the MPI checks need mpirun and RRL_MPI_RRL naming an rrl built with --traits MPI (RRL_MPI_RRL=\(rrl ?? "unset"), mpirun \(MPITests.mpirun ?? "not found"))"
            if required { XCTFail(missing) }
            throw XCTSkip(missing)
        }
        return (rrl, mpirun)
    }

    /// Runs `mpirun -np ranks binary arguments` (at most `timeout` seconds, then everything is killed).
    /// `whileRunning` gets mpirun's process id while the job runs.
    func mpirun(_ ranks: Int, _ binary: String, _ arguments: [String], timeout: Double = 120, environment extra: [String: String] = [:],
                whileRunning: ((Int32) -> Void)? = nil) throws -> Run {
        let (_, mpirun) = try requirements()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["--oversubscribe", "-np", "\(ranks)", binary] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        for (k, v) in extra { environment[k] = v }
        process.environment = environment
        let log = folder.appendingPathComponent("mpirun-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let start = Date()
        var reported = false
        while process.isRunning && Date().timeIntervalSince(start) < timeout {
            if !reported, let whileRunning { reported = true; whileRunning(process.processIdentifier) }
            usleep(20_000)
        }
        let timedOut = process.isRunning
        if timedOut {
            process.terminate()
            usleep(500_000)
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return Run(status: process.terminationStatus, output: output, timedOut: timedOut)
    }

    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// metrics.csv without the timing columns.
    func metrics(_ run: String) throws -> [[String]] {
        let rows = try String(contentsOfFile: path(run) + "/metrics.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = rows[0]
        let keep = header.indices.filter { !["wall_seconds", "steps_per_second"].contains(header[$0]) }
        return rows.map { row in keep.map { row[$0] } }
    }

    let ppo = ["train", "ppo", "--env", "cartpole-position", "--envs", "4", "--rollout-steps", "32", "--steps", "4608",
               "--eval-interval", "1536", "--eval-episodes", "2", "--checkpoint-interval", "2304", "--quiet"]

    /// Three ranks train PPO; the same seed gives the same metrics; a run cut back to its earlier
    /// checkpoint and resumed with three ranks ends with the same metrics and weights; another rank
    /// count or a single process is refused with the command that resumes.
    func testDataParallelPPORepeatsAndResumesExactly() throws {
        let (rrl, _) = try requirements()
        let first = try mpirun(3, rrl, ppo + ["--run-dir", path("a")])
        XCTAssertEqual(first.status, 0, first.summary)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("a") + "/weights.safetensors"), first.summary)
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: path("a") + "/checkpoints").sorted()
        XCTAssertEqual(checkpoints, ["step-000000002304.ckpt", "step-000000004608.ckpt"])
        let newest = try Data(contentsOf: URL(fileURLWithPath: path("a") + "/checkpoints/" + checkpoints[1]))
        XCTAssertTrue(String(decoding: newest.prefix(4096), as: UTF8.self).contains("\"ranks\":\"3\""), "the checkpoint says 3 ranks wrote it")
        XCTAssertEqual(try metrics("a").count, 4, "a header and three rows")

        let again = try mpirun(3, rrl, ppo + ["--run-dir", path("b")])
        XCTAssertEqual(again.status, 0, again.summary)
        XCTAssertEqual(try metrics("a"), try metrics("b"), "the same seed, the same run")

        // Back to the checkpoint at step 2304, then resumed: the same run as without the cut.
        try FileManager.default.copyItem(atPath: path("a"), toPath: path("c"))
        try FileManager.default.removeItem(atPath: path("c") + "/checkpoints/" + checkpoints[1])
        try FileManager.default.removeItem(atPath: path("c") + "/weights.safetensors")
        let resumed = try mpirun(3, rrl, ["train", "--resume", path("c"), "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
        XCTAssertEqual(try metrics("a"), try metrics("c"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("a") + "/weights.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: path("c") + "/weights.safetensors")))

        let wrongCount = try mpirun(2, rrl, ["train", "--resume", path("a"), "--steps", "6000", "--quiet"])
        XCTAssertNotEqual(wrongCount.status, 0)
        XCTAssertTrue(wrongCount.output.contains("written by 3 MPI ranks") && wrongCount.output.contains("mpirun -np 3"), wrongCount.summary)
        let alone = try mpirun(1, rrl, ["train", "--resume", path("a"), "--steps", "6000", "--quiet"])
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.output.contains("written by 3 MPI ranks and this run has one process"), alone.summary)
    }

    /// MAPPO over two ranks (a central critic's state normaliser merged across ranks) trains and evaluates.
    func testDataParallelMAPPO() throws {
        let (rrl, _) = try requirements()
        let run = try mpirun(2, rrl, ["train", "mappo", "--env", "team-recall", "--envs", "4", "--rollout-steps", "32", "--steps", "1024",
                                      "--eval-interval", "512", "--eval-episodes", "2", "--run-dir", path("m"), "--quiet"])
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertEqual(try metrics("m").count, 3)
    }

    /// An rrl built without MPI under mpirun says how to build one (instead of N runs side by side).
    func testAPlainBuildUnderMpirunSaysHowToBuildWithMPI() throws {
        _ = try requirements()
        let plain = RRLProcess.binary.path
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: plain), "no plain rrl next to the tests")
        let run = try mpirun(2, plain, ppo + ["--run-dir", path("p")])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.output.contains("built without MPI") && run.output.contains("--traits MPI"), run.summary)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("p") + "/config.json"), "nothing written")
    }

    let sac = ["train", "sac", "--env", "pendulum", "--steps", "1500", "--warmup", "300", "--eval-interval", "500", "--eval-episodes", "2",
               "--actor-steps", "4", "--checkpoint-interval", "500", "--quiet"]

    /// Actor-learner SAC: rank 0 learns, two actors act; the same seed gives the same run; the age of
    /// the acting weights is logged; a resumed run goes on from the learner's checkpoint.
    func testActorLearnerSACRepeatsAndResumes() throws {
        let (rrl, _) = try requirements()
        let first = try mpirun(3, rrl, sac + ["--run-dir", path("a")])
        XCTAssertEqual(first.status, 0, first.summary)
        let again = try mpirun(3, rrl, sac + ["--run-dir", path("b")])
        XCTAssertEqual(again.status, 0, again.summary)
        let rows = try metrics("a")
        XCTAssertEqual(rows, try metrics("b"), "the same seed, the same run")
        XCTAssertEqual(rows.count, 4)
        let age = rows[0].firstIndex(of: "acting_weights_age")
        XCTAssertNotNil(age)
        if let age { XCTAssertEqual(Double(rows[3][age]) ?? .nan, 4 * 2 + 3, accuracy: 4, "weights a round old: the updates for 2 actors x 4 passes, and within a round") }
        let resumed = try mpirun(3, rrl, ["train", "--resume", path("a"), "--steps", "2000", "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
        XCTAssertEqual(try metrics("a").count, 5)
        let wrongCount = try mpirun(2, rrl, ["train", "--resume", path("a"), "--steps", "3000", "--quiet"])
        XCTAssertTrue(wrongCount.status != 0 && wrongCount.output.contains("mpirun -np 3"), wrongCount.summary)
    }

    /// An actor that stops answering (SIGSTOP) is reported by rank within the timeout (here 3 s), and
    /// the run stops instead of waiting for it.
    func testAHungActorIsReportedByRank() throws {
        let (rrl, _) = try requirements()
        var stopped: Int32 = 0
        let run = try mpirun(3, rrl, ["train", "sac", "--env", "pendulum", "--steps", "10000000", "--warmup", "100",
                                      "--checkpoint-interval", "500", "--run-dir", path("h"), "--quiet"], timeout: 90,
                             environment: ["RRL_ACTOR_TIMEOUT": "3"]) { mpirunID in
            if let rank2 = self.rank2(of: mpirunID, afterACheckpointIn: "h") { stopped = rank2; kill(rank2, SIGSTOP) }
        }
        if stopped > 0 { kill(stopped, SIGKILL) }
        XCTAssertGreaterThan(stopped, 0, "found the actor's process\n\(run.summary)")
        XCTAssertFalse(run.timedOut, run.summary)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.output.contains("actor rank 2 sent nothing for 3 s") || run.output.contains("actor rank 2 took no answer for 3 s"), run.summary)
    }

    /// A rank killed in the middle of training is reported by mpirun (its rank and signal) and the
    /// job ends within seconds instead of hanging; the last checkpoint stays usable.
    func testAKilledRankIsReportedAndNothingHangs() throws {
        let (rrl, _) = try requirements()
        var killed = false
        let run = try mpirun(3, rrl, ["train", "ppo", "--env", "cartpole-position", "--envs", "4", "--rollout-steps", "32",
                                      "--steps", "10000000", "--checkpoint-interval", "1536", "--run-dir", path("k"), "--quiet"],
                             timeout: 90) { mpirunID in
            // After the first checkpoint, rank 2's process is killed.
            if let rank2 = self.rank2(of: mpirunID, afterACheckpointIn: "k") { kill(rank2, SIGKILL); killed = true }
        }
        XCTAssertTrue(killed, "found the three ranks' processes\n\(run.summary)")
        XCTAssertFalse(run.timedOut, run.summary)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.output.contains("rank") && (run.output.contains("signal 9") || run.output.contains("Killed")), run.summary)
        let resumed = try mpirun(3, rrl, ["train", "--resume", path("k"), "--steps", "4608", "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
    }

    /// Once the run in `run` has written a checkpoint (at most 60 s), the process of the third of the
    /// three ranks mpirun `mpirunID` started (nil when there are not three).
    func rank2(of mpirunID: Int32, afterACheckpointIn run: String) -> Int32? {
        let start = Date()
        while Date().timeIntervalSince(start) < 60 {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path(run) + "/checkpoints")) ?? []
            if names.contains(where: { $0.hasSuffix(".ckpt") }) { break }
            usleep(50_000)
        }
        let children = MPITests.children(of: mpirunID).sorted()
        return children.count == 3 ? children[2] : nil
    }

    /// Process ids whose parent is `parent` (from /proc).
    static func children(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == parent
        }
    }
}
