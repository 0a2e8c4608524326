import Environments
import Foundation
import XCTest

/// Runs a Python script with `python3 -c`, returning its output (standard output, then standard
/// error) and exit status. Throws `XCTSkip` when python3 or a module the script imports is missing
/// (`.ci/run` installs them), so interoperability tests skip rather than fail on a machine without
/// them. The child is started with posix_spawn (`ChildProcess`), as the bridge's is: Foundation's
/// Process, used next to another child, corrupted the heap now and then.
public func runPython(_ script: String, arguments: [String]) throws -> (status: Int32, output: String) {
    let errorURL = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-python-\(UUID().uuidString).err")
    defer { try? FileManager.default.removeItem(at: errorURL) }
    let child: ChildProcess
    do {
        child = try ChildProcess(arguments: ["python3", "-c", script] + arguments, stderrPath: errorURL.path)
    } catch {
        throw XCTSkip("python3 not available (\(error))")
    }
    child.closeInput()
    let output = child.readOutput()
    let exit = child.waitForExit()
    let errors = (try? String(contentsOf: errorURL, encoding: .utf8)) ?? ""
    let all = output + errors
    if all.contains("No module named") { throw XCTSkip("a Python module is missing: \(all)") }
    guard exit.hasPrefix("exited with status "), let status = Int32(exit.dropFirst("exited with status ".count)) else {
        return (-1, all + "\n(python3 \(exit))")
    }
    return (status, all)
}
