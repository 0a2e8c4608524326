import Tensors

/// One copy of a Python multi-agent environment, served by a bridge child process of its own:
/// PettingZoo's parallel API (`pz:MODULE`, made by `MODULE.parallel_env(**options)`, e.g.
/// `pz:mpe2.simple_spread_v3`), or a Gymnasium environment whose spaces are Tuples with one entry
/// per agent (`gym:ID`, e.g. lbforaging's `gym:Foraging-8x8-2p-2f-v3` with `--env-module lbforaging`).
///
/// Agents are numbered in the environment's order (`possible_agents`, the Tuple's entries). Every
/// agent has the same action space; narrower observations are padded with zeros to the widest. A
/// PettingZoo agent that leaves `env.agents` (terminated or truncated) is inactive until the episode
/// ends, which is when no agent is left: terminated, unless an agent's end was a truncation. The
/// global state is PettingZoo's `state()` when the environment has a `state_space`; action masks are
/// PettingZoo's `{"observation", "action_mask"}` observations. The copy never resets by itself (the
/// vector environment decides when).
///
/// A Python failure (an exception, a crash, a hang) is thrown from `reset` or `step` as an
/// `EnvironmentError` with the Python message, as for single-agent Python environments.
public final class PythonMultiAgentEnvironment: MultiAgentEnvironment {
    public let bridge: PythonBridge
    public let name: String
    public let agents: Int
    public let observationSpace: Space
    public let actionSpace: Space
    public let globalStateWidth: Int
    public let maxEpisodeSteps: Int
    public let hasActionMasks: Bool
    let observationWidth: Int, actionWidth: Int, maskWidth: Int
    private let state: UnsafeMutablePointer<Float>
    private let masks: UnsafeMutablePointer<Float>

    /// Starts a bridge serving one copy of `spec` (a `pz:` or `gym:` name; its options are the
    /// constructor's keyword arguments).
    public init(spec: EnvironmentSpec) throws {
        bridge = try PythonBridge(environment: spec.name, count: 1, multiAgent: true, options: spec.bridgeOptions)
        name = bridge.displayName
        agents = bridge.agents
        observationSpace = bridge.observationSpace
        actionSpace = bridge.actionSpace
        observationWidth = bridge.observationWidth
        actionWidth = bridge.actionWidth
        globalStateWidth = bridge.globalStateWidth
        hasActionMasks = bridge.hasActionMasks
        maxEpisodeSteps = bridge.maxEpisodeSteps
        maskWidth = Environments.maskWidth(of: actionSpace, masked: hasActionMasks)
        state = .allocate(capacity: max(globalStateWidth, 1))
        state.initialize(repeating: 0, count: max(globalStateWidth, 1))
        masks = .allocate(capacity: max(agents * maskWidth, 1))
        masks.initialize(repeating: 1, count: max(agents * maskWidth, 1))
    }

    deinit {
        state.deallocate()
        masks.deallocate()
    }

    /// The bytes of a reset reply, and of a step reply before its rewards.
    private var observationBytes: Int { 4 * (agents * observationWidth + globalStateWidth + agents * maskWidth) }

    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) throws {
        let size = try bridge.requestReset(seed: seed)
        guard size == observationBytes else {
            throw EnvironmentError(environment: name, message: "the bridge's reset reply has \(size) bytes, expected \(observationBytes)")
        }
        try readObservations(size, into: observations, what: "reset")
    }

    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
                     active: UnsafeMutablePointer<Bool>) throws -> MultiAgentStepResult {
        try bridge.send(PythonBridge.stepCode, UnsafeRawBufferPointer(start: actions, count: agents * actionWidth * 4))
        let size = try bridge.receiveInPlace(timeout: bridge.options.timeout)
        let expected = observationBytes + 5 * agents + 1
        guard size == expected else {
            throw EnvironmentError(environment: name, message: "the bridge's step reply has \(size) bytes, expected \(expected)")
        }
        try readObservations(size, into: observations, what: "step")
        try bridge.copy(size, observationBytes, into: rewards, count: agents, what: "step")
        let flags = bridge.reply[5 + size - 1]
        for k in 0..<agents { active[k] = bridge.reply[5 + observationBytes + 4 * agents + k] != 0 }
        return MultiAgentStepResult(terminated: flags & 1 != 0, truncated: flags & 2 != 0)
    }

    /// The observations, global state and masks at the start of a `what` reply of `size` bytes.
    private func readObservations(_ size: Int, into observations: UnsafeMutablePointer<Float>, what: String) throws {
        try bridge.copy(size, 0, into: observations, count: agents * observationWidth, what: what)
        if globalStateWidth > 0 { try bridge.copy(size, 4 * agents * observationWidth, into: state, count: globalStateWidth, what: what) }
        if maskWidth > 0 { try bridge.copy(size, 4 * (agents * observationWidth + globalStateWidth), into: masks, count: agents * maskWidth, what: what) }
    }

    public func globalState(into state: UnsafeMutablePointer<Float>) {
        state.update(from: self.state, count: globalStateWidth)
    }

    public func availableActions(into mask: UnsafeMutablePointer<Float>) {
        guard case .discrete(let n) = actionSpace else { return }
        if maskWidth > 0 { mask.update(from: masks, count: agents * n) } else { mask.update(repeating: 1, count: agents * n) }
    }

    /// Nothing to save: the bridge cannot reach the Python environment's state. A restored run starts
    /// new episodes instead (`MultiAgentVectorEnvironment.restoreStartsNewEpisodes`).
    public func save(to archive: StateArchive, prefix: String) throws {}
    public func restore(from archive: StateArchiveReader, prefix: String) throws {}
}
