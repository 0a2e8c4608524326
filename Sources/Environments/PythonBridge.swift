import Foundation
import Tensors

/// N copies of a Python (Gymnasium) environment served by a child process running
/// `python3 -m rrl_bridge` (the package in the repository's `python/` folder), spoken to over its
/// standard input and output with a compact binary protocol: one message steps all N copies.
///
/// Failures never hang and never pass silently: a Python exception in `reset` or `step` becomes an
/// `EnvironmentError` carrying the Python message; a child that exits is reported with its exit
/// status and the end of what it wrote to stderr; a reply that does not come within `timeout`
/// seconds kills the child and is reported as a hang.
public final class PythonBridge {
    /// Where the bridge finds Python and its package, and how long it waits.
    public struct Options: Sendable {
        /// Python modules to import before making the environment (they register it, e.g. `popgym`).
        public var modules: [String] = []
        public var python = "python3"
        /// Seconds to wait for any reply (making an environment may import large packages).
        public var timeout: Double = 60
        /// The folder that holds `rrl_bridge/` (default: `$RRL_BRIDGE_PATH`, else `python/` in the
        /// current folder or above the executable's).
        public var packagePath: String? = nil
        /// `gym.make`'s keyword arguments, as text: each value is read as JSON when it is valid JSON
        /// (numbers, true/false, lists), else passed as a string.
        public var keywordArguments: [String: String] = [:]
        public init(modules: [String] = [], timeout: Double = 60) {
            self.modules = modules
            self.timeout = timeout
        }
    }

    public let environment: String
    /// How messages name the environment: `gym:ID`, or a multi-agent bridge's own name (`pz:MODULE`, `gym:ID`).
    public let displayName: String
    public let count: Int
    /// Agents per copy (1 unless the bridge serves a multi-agent environment).
    public private(set) var agents = 1
    /// Floats of the global state a multi-agent environment reports (0: none).
    public private(set) var globalStateWidth = 0
    /// Whether a multi-agent environment sends action masks with its observations.
    public private(set) var hasActionMasks = false
    /// Whether this bridge serves one copy of a multi-agent environment (see `PythonMultiAgentEnvironment`).
    public let multiAgent: Bool
    public private(set) var observationSpace: Space = .discrete(1)
    public private(set) var actionSpace: Space = .discrete(1)
    public private(set) var observationWidth = 0
    public private(set) var actionWidth = 0
    /// The time limit the environment registers (0 when it has none).
    public private(set) var maxEpisodeSteps = 0
    let options: Options
    let process: ChildProcess
    let input: Int32, output: Int32
    let stderrURL: URL
    var closed = false
    /// The last reply, header included: its payload starts at byte 5.
    var reply: [UInt8] = []
    var outgoing: [UInt8] = []
    var readBuffer = [UInt8](repeating: 0, count: 1 << 16)

    static let make: UInt8 = 1, resetCode: UInt8 = 2, stepCode: UInt8 = 3, listCode: UInt8 = 4, closeCode: UInt8 = 5

    static func displayName(_ name: String) -> String {
        name.hasPrefix("pz:") || name.hasPrefix("gym:") ? name : "gym:" + name
    }

    /// Starts the child and makes `count` copies of `environment` (a Gymnasium id such as
    /// `CartPole-v1`). With `multiAgent`, one copy of a multi-agent environment named with its prefix
    /// (`pz:MODULE` for PettingZoo's parallel API, `gym:ID` for one whose spaces are per-agent Tuples,
    /// or any other `gym:ID` as one agent).
    public init(environment: String, count: Int, multiAgent: Bool = false, options: Options = Options()) throws {
        precondition(count >= 1, "the bridge needs at least one copy")
        precondition(!multiAgent || count == 1, "a multi-agent bridge serves one copy")
        self.environment = environment
        self.displayName = PythonBridge.displayName(environment)
        self.count = count
        self.multiAgent = multiAgent
        self.options = options
        (process, stderrURL) = try PythonBridge.start(options, name: environment)
        input = process.input
        output = process.output
        var kwargs: [String: Any] = [:]
        for (key, text) in options.keywordArguments {
            kwargs[key] = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) ?? text
        }
        let request = try JSONSerialization.data(withJSONObject: ["env": environment, "count": count, "modules": options.modules, "kwargs": kwargs, "multi_agent": multiAgent] as [String: Any])
        let answer: [String: Any]
        do {
            try send(PythonBridge.make, [UInt8](request))
            let data = try receive(timeout: options.timeout)
            guard let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else {
                throw EnvironmentError(environment: displayName, message: "the bridge answered something that is not a description of the environment")
            }
            answer = object
        } catch {
            shutDown()
            throw error
        }
        guard let protocolVersion = answer["protocol"] as? Int, protocolVersion == 1, let agentCount = answer["agents"] as? Int,
              multiAgent ? agentCount >= 1 : agentCount == 1 else {
            shutDown()
            throw EnvironmentError(environment: displayName, message: "the bridge speaks protocol \(answer["protocol"] ?? "?") with \(answer["agents"] ?? "?") agents; this rrl speaks protocol 1 with \(multiAgent ? "one or more agents" : "one agent")")
        }
        agents = agentCount
        globalStateWidth = answer["global_state_width"] as? Int ?? 0
        hasActionMasks = answer["action_masks"] as? Bool ?? false
        func space(_ value: Any?) -> Space? {
            guard let spec = value as? [String: Any], let type = spec["type"] as? String else { return nil }
            if type == "discrete", let n = spec["n"] as? Int { return .discrete(n) }
            func bound(_ v: Any) -> Float? {
                if let s = v as? String { return s == "inf" ? .infinity : s == "-inf" ? -.infinity : nil }
                return (v as? NSNumber).map { $0.floatValue }
            }
            if type == "box", let low = (spec["low"] as? [Any])?.compactMap(bound), let high = (spec["high"] as? [Any])?.compactMap(bound),
               low.count == high.count, low.count == (spec["low"] as? [Any])?.count, high.count == (spec["high"] as? [Any])?.count {
                return .box(low: low, high: high)
            }
            return nil
        }
        guard let o = space(answer["observation"]), let a = space(answer["action"]) else {
            shutDown()
            throw EnvironmentError(environment: displayName, message: "the bridge described spaces this rrl cannot read: \(answer)")
        }
        observationSpace = o
        actionSpace = a
        observationWidth = o.width
        actionWidth = a.width
        maxEpisodeSteps = answer["max_episode_steps"] as? Int ?? 0
    }

    deinit { shutDown() }

    /// The environment ids Gymnasium has registered once `modules` are imported.
    public static func list(options: Options = Options()) throws -> [String] {
        let bridge = try PythonBridge(listing: options)
        defer { bridge.shutDown() }
        let request = try JSONSerialization.data(withJSONObject: ["modules": options.modules])
        try bridge.send(listCode, [UInt8](request))
        let data = try bridge.receive(timeout: options.timeout)
        return (try? JSONSerialization.jsonObject(with: Data(data)) as? [String]) ?? []
    }

    private init(listing options: Options) throws {
        environment = "(list)"
        displayName = "(list)"
        multiAgent = false
        count = 0
        self.options = options
        (process, stderrURL) = try PythonBridge.start(options, name: "(list)")
        input = process.input
        output = process.output
    }

    /// Resets every copy (copy i with `seed + i`, or continuing its stream) and writes `[N, width]` observations.
    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) throws {
        let size = try requestReset(seed: seed)
        try copy(size, 0, into: observations, count: count * observationWidth, what: "reset")
    }

    /// Sends a reset request (`u8 has_seed | u64 seed`, built on the stack) and reads the reply into
    /// `reply`; returns its payload's size.
    func requestReset(seed: UInt64?) throws -> Int {
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 9) { payload in
            payload[0] = seed == nil ? 0 : 1
            for k in 0..<8 { payload[1 + k] = UInt8(truncatingIfNeeded: (seed ?? 0) >> (8 * UInt64(k))) }
            try send(PythonBridge.resetCode, UnsafeRawBufferPointer(payload))
        }
        return try receiveInPlace(timeout: options.timeout)
    }

    /// Steps every copy with its row of `actions`. A copy whose episode ended is reset by the bridge:
    /// its row of `observations` is then the next episode's first, and `finalObservations` holds the
    /// ended episode's last. `flags`: bit 0 terminated, bit 1 truncated. (Nothing is allocated: the
    /// actions go out from the caller's memory and the reply is read from the kept reply buffer.)
    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, finalObservations: UnsafeMutablePointer<Float>,
                     rewards: UnsafeMutablePointer<Float>, flags: UnsafeMutablePointer<UInt8>) throws {
        try send(PythonBridge.stepCode, UnsafeRawBufferPointer(start: actions, count: count * actionWidth * 4))
        let size = try receiveInPlace(timeout: options.timeout)
        let w = count * observationWidth
        guard size == 8 * w + 5 * count else {
            throw EnvironmentError(environment: displayName, message: "the bridge's step reply has \(size) bytes, expected \(8 * w + 5 * count)")
        }
        try copy(size, 0, into: observations, count: w, what: "step")
        try copy(size, 4 * w, into: finalObservations, count: w, what: "step")
        try copy(size, 8 * w, into: rewards, count: count, what: "step")
        for i in 0..<count { flags[i] = reply[5 + 8 * w + 4 * count + i] }
    }

    /// Copies `count` floats from the reply's payload (of `size` bytes) at `offset`.
    func copy(_ size: Int, _ offset: Int, into destination: UnsafeMutablePointer<Float>, count: Int, what: String) throws {
        guard size >= offset + 4 * count else {
            throw EnvironmentError(environment: displayName, message: "the bridge's \(what) reply is too short (\(size) bytes)")
        }
        reply.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + 5 + offset, byteCount: 4 * count)
        }
    }

    // MARK: The child process

    /// The folder holding `rrl_bridge/__main__.py`.
    static func packageFolder(_ options: Options) -> String? { pythonFolder(containing: "rrl_bridge/__main__.py", explicit: options.packagePath) }

    /// The repository's `python/` folder holding `file` (searched from `explicit`, `$RRL_BRIDGE_PATH`, then
    /// `python/` beside the working directory and its parents and beside the executable and its parents).
    public static func pythonFolder(containing file: String, explicit: String? = nil) -> String? {
        var candidates: [String] = []
        if let p = explicit { candidates.append(p) }
        if let p = ProcessInfo.processInfo.environment["RRL_BRIDGE_PATH"] { candidates.append(p) }
        var folder = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        for _ in 0..<4 {
            candidates.append(folder.appendingPathComponent("python").path)
            folder.deleteLastPathComponent()
        }
        var executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(executable.appendingPathComponent("python").path)
            executable.deleteLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/" + file) }
    }

    static func start(_ options: Options, name: String) throws -> (ChildProcess, URL) {
        guard let folder = packageFolder(options) else {
            throw EnvironmentError(environment: PythonBridge.displayName(name), message: "cannot find the Python package rrl_bridge (python/rrl_bridge in the repository); run from the repository, or set RRL_BRIDGE_PATH to the folder that holds rrl_bridge/")
        }
        // A write to a child that died must be an error, not a SIGPIPE that kills rrl.
        signal(SIGPIPE, SIG_IGN)
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = folder + (environment["PYTHONPATH"].map { ":" + $0 } ?? "")
        PythonBridge.removeStaleLogs()
        let stderrURL = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-bridge-\(getpid())-\(UUID().uuidString).log")
        do {
            let child = try ChildProcess(arguments: [options.python, "-u", "-m", "rrl_bridge"], environment: environment, stderrPath: stderrURL.path)
            return (child, stderrURL)
        } catch {
            throw EnvironmentError(environment: PythonBridge.displayName(name), message: "cannot start \(options.python): \(error); install Python 3 with numpy and gymnasium")
        }
    }

    /// The last lines the child wrote to stderr.
    func stderrTail(lines: Int = 12) -> String {
        let text = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    func failure(_ what: String) -> EnvironmentError {
        var message = what
        let tail = stderrTail()
        if !tail.isEmpty { message += "; its stderr ends with:\n" + tail }
        return EnvironmentError(environment: displayName, message: message)
    }

    func died() -> EnvironmentError {
        failure("the Python bridge \(process.waitForExit())")
    }

    func send(_ opcode: UInt8, _ payload: [UInt8]) throws {
        try payload.withUnsafeBytes { try send(opcode, $0) }
    }

    func send(_ opcode: UInt8, _ payload: UnsafeRawBufferPointer) throws {
        guard !closed else { throw EnvironmentError(environment: displayName, message: "the Python bridge is closed") }
        let length = UInt32(payload.count + 1)
        outgoing.removeAll(keepingCapacity: true)
        for k in 0..<4 { outgoing.append(UInt8(truncatingIfNeeded: length >> (8 * UInt32(k)))) }
        outgoing.append(opcode)
        outgoing.append(contentsOf: payload)
        var offset = 0
        while offset < outgoing.count {
            let n = outgoing.withUnsafeBytes { Foundation.write(input, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { closed = true; throw died() }
            offset += n
        }
    }

    /// Reads into `reply` until it holds at least `count` bytes (taking all that is available: only
    /// one reply is ever outstanding, so nothing read can belong to the next). Waits by polling
    /// briefly first (the reply usually comes within tens of microseconds, sooner than a sleeping
    /// thread is woken), then blocking, until the deadline; fails on end of file or timeout.
    func fill(_ count: Int, deadline: Double) throws {
        var spins = 0
        while reply.count < count {
            var fds = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            var ready: Int32
            if spins < 2000 {
                spins += 1
                ready = poll(&fds, 1, 0)
                if ready == 0 { continue }
            } else {
                let left = deadline - Date().timeIntervalSince1970
                guard left > 0 else {
                    closed = true
                    process.kill()
                    throw failure("the Python bridge did not answer within \(String(format: "%.0f", options.timeout)) s (the environment hangs?); it was stopped")
                }
                ready = poll(&fds, 1, Int32(min(left * 1000, 1_000_000)))
            }
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { continue }
            let n = readBuffer.withUnsafeMutableBytes { Foundation.read(output, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { closed = true; throw died() }
            readBuffer.withUnsafeBytes { reply.append(contentsOf: $0[0..<n]) }
        }
    }

    /// One reply's payload, as an array (for the replies that are not per step).
    func receive(timeout: Double) throws -> [UInt8] {
        _ = try receiveInPlace(timeout: timeout)
        return Array(reply[5...])
    }

    /// Reads one reply into `reply` and returns its payload's size; an error status becomes an
    /// `EnvironmentError` with the Python message.
    func receiveInPlace(timeout: Double) throws -> Int {
        let deadline = Date().timeIntervalSince1970 + timeout
        reply.removeAll(keepingCapacity: true)
        try fill(5, deadline: deadline)
        let length = Int(reply[0]) | Int(reply[1]) << 8 | Int(reply[2]) << 16 | Int(reply[3]) << 24
        let status = reply[4]
        guard length >= 1 else { throw failure("the Python bridge sent a malformed reply") }
        try fill(4 + length, deadline: deadline)
        guard reply.count == 4 + length else { throw failure("the Python bridge sent more than one reply") }
        if status != 0 {
            throw EnvironmentError(environment: displayName, message: "Python raised: " + String(decoding: reply[5...], as: UTF8.self))
        }
        return length - 1
    }

    /// Asks the child to exit, and makes sure it does.
    func shutDown() {
        if !closed && process.isRunning {
            try? send(PythonBridge.closeCode, [])
            closed = true
            let deadline = Date().timeIntervalSince1970 + 2
            while process.isRunning && Date().timeIntervalSince1970 < deadline { usleep(2000) }
        }
        closed = true
        if process.isRunning { process.kill() }
        _ = process.waitForExit()
        process.closePipes()
        try? FileManager.default.removeItem(at: stderrURL)
    }
}

extension PythonBridge {
    /// Removes the error logs (`rrl-bridge-PID-*.log` in the temporary folder) of rrl processes that
    /// are gone (killed before they could remove them).
    static func removeStaleLogs() {
        let folder = FileManager.default.temporaryDirectory
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix("rrl-bridge-") && name.hasSuffix(".log") {
            guard let pid = Int32(name.dropFirst("rrl-bridge-".count).prefix { $0.isNumber }), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
    }
}

/// A child process started with posix_spawn, its standard input and output on pipes and its
/// standard error in a file (no monitoring thread, nothing shared with Foundation's Process).
public final class ChildProcess {
    public let pid: pid_t
    public let input: Int32, output: Int32
    private var exitDescription: String?

    struct SpawnError: Error, CustomStringConvertible {
        let description: String
    }

    public init(arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment, stderrPath: String = "/dev/null") throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw SpawnError(description: String(cString: strerror(errno))) }
        let errFD = open(stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard errFD >= 0 else { throw SpawnError(description: "cannot create \(stderrPath): \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errFD, 2)
        for fd in [toChild[0], toChild[1], fromChild[0], fromChild[1], errFD] { posix_spawn_file_actions_addclose(&actions, fd) }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, nil, argv, envp)
        close(toChild[0])
        close(fromChild[1])
        close(errFD)
        guard status == 0 else {
            close(toChild[1])
            close(fromChild[0])
            throw SpawnError(description: String(cString: strerror(status)))
        }
        // The parent's ends are not inherited by later children.
        _ = fcntl(toChild[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fromChild[0], F_SETFD, FD_CLOEXEC)
        pid = child
        input = toChild[1]
        output = fromChild[0]
    }

    /// Whether the child is still running (reaps it when it has ended).
    public var isRunning: Bool {
        guard exitDescription == nil else { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { exitDescription = ChildProcess.describe(status); return false }
        return r == 0
    }

    func kill() { if exitDescription == nil { _ = Glibc.kill(pid, SIGKILL) } }

    /// Waits for the child and says how it ended ("exited with status 3", "was killed by signal 9").
    public func waitForExit() -> String {
        if let exitDescription { return exitDescription }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = ChildProcess.describe(status)
        exitDescription = text
        return text
    }

    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7F
        return signal == 0 ? "exited with status \((status >> 8) & 0xFF)" : "was killed by signal \(signal)"
    }

    private var pipesClosed = false, inputClosed = false
    func closePipes() {
        guard !pipesClosed else { return }
        pipesClosed = true
        closeInput()
        close(output)
    }

    /// Closes the child's standard input (it reads end of file).
    public func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        close(input)
    }

    deinit { closePipes() }

    /// Everything the child writes to its standard output until it closes it.
    public func readOutput() -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Foundation.read(output, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
