import Foundation
import XCTest

/// Runs a Python script with `python3 -c`, returning its combined output and exit status. Throws
/// `XCTSkip` when python3 or a module the script imports is missing (`.ci/run` installs them), so
/// interoperability tests skip rather than fail on a machine without them.
public func runPython(_ script: String, arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { throw XCTSkip("python3 not available") }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    if output.contains("No module named") { throw XCTSkip("a Python module is missing: \(output)") }
    return (process.terminationStatus, output)
}
