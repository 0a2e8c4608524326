import Foundation
import XCTest

/// How a run of the `rrl` binary ended.
struct RRLResult {
    var arguments: [String]
    /// The exit status, nil when the process was killed by a signal.
    var status: Int32?
    /// The signal that ended the process (a crash: 4, 6, 11, ...), nil when it exited.
    var signal: Int32?
    /// Whether the test's time limit ran out (a hang); the process was then killed.
    var timedOut: Bool
    /// Standard output and standard error, together.
    var output: String
    var seconds: Double

    var summary: String {
        "rrl \(arguments.map { $0.isEmpty || $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")): "
            + (timedOut ? "hung (killed after \(String(format: "%.0f", seconds)) s)" : signal.map { "killed by signal \($0)" } ?? "exit \(status!)")
            + "\n" + output
    }

    /// A crash or a hang: what no input may ever cause.
    var crashedOrHung: Bool { timedOut || signal != nil }
}

/// Runs the `rrl` binary built next to the test bundle (`swift build` and `swift test` build it in
/// the same folder).
enum RRLProcess {
    static var binary: URL {
        let candidates = [
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("rrl"),
            Bundle.main.bundleURL.appendingPathComponent("rrl"),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("rrl"),
        ] + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent().appendingPathComponent("rrl") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// Starts `rrl arguments` with standard output and error in one file; returns its process id.
    static func start(_ arguments: [String], outputPath: String, environment: [String: String] = [:]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        env["RRL_BRIDGE_PATH"] = env["RRL_BRIDGE_PATH"] ?? sourceRoot.appendingPathComponent("python").path
        for (k, v) in environment { env[k] = v }
        let path = binary.path
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard status == 0 else { throw NSError(domain: "spawn", code: Int(status), userInfo: [NSLocalizedDescriptionKey: "cannot start \(path): \(String(cString: strerror(status)))"]) }
        return pid
    }

    /// Waits for `pid` at most `timeout` seconds (then kills it): (status, signal, timed out).
    static func wait(_ pid: pid_t, timeout: Double) -> (Int32?, Int32?, Bool) {
        let start = Date()
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return (nil, nil, false) }
            if Date().timeIntervalSince(start) > timeout {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                return (nil, SIGKILL, true)
            }
            usleep(2000)
        }
        let signal = status & 0x7F
        return signal == 0 ? ((status >> 8) & 0xFF, nil, false) : (nil, signal, false)
    }

    /// Runs `rrl arguments` to its end (at most `timeout` seconds).
    static func run(_ arguments: [String], timeout: Double = 60, environment: [String: String] = [:]) throws -> RRLResult {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-out-\(UUID().uuidString)").path
        defer { unlink(outputPath) }
        let started = Date()
        let pid = try start(arguments, outputPath: outputPath, environment: environment)
        let (status, signal, timedOut) = wait(pid, timeout: timeout)
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return RRLResult(arguments: arguments, status: status, signal: signal, timedOut: timedOut, output: output,
                         seconds: Date().timeIntervalSince(started))
    }

    /// This repository's root (for the Python bridge and the corpus files).
    static var sourceRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// A folder's files (relative paths) with their contents, to show that nothing was touched.
func snapshot(_ folder: URL) -> [String: Data] {
    var result: [String: Data] = [:]
    guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey]) else { return result }
    for case let url as URL in walker {
        guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
        result[String(url.path.dropFirst(folder.path.count))] = try? Data(contentsOf: url)
    }
    return result
}

/// A new empty folder under the temporary directory.
func makeSandbox(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-fault-\(name)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A run folder's config.json, as JSON objects.
func runConfiguration(_ run: URL) throws -> [String: Any] {
    let data = try Data(contentsOf: run.appendingPathComponent("config.json"))
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
}
