import Agents
import Environments
import Foundation
import NeuralNetworks
import Replay

/// A rough count of the memory a run will use at its largest, checked against the machine's before
/// anything large is allocated, so that a run too large for the machine is a clear error at start-up
/// rather than a crash, or a swap storm, hours later.
///
/// The counts are upper estimates in Float32 (4 bytes): parameters with their gradients and two
/// Adam moments (targets counted too), the activations a training batch keeps for its backward
/// pass (forward values and gradients), and the replay (at capacity) or the rollout.
public struct MemoryEstimate: CustomStringConvertible {
    /// What takes memory, its bytes, and the options that set its size.
    public var parts: [(what: String, bytes: Double, options: String)] = []

    /// What makes the run large when it is not an option (a huge action space).
    public var note: String?

    public var total: Double { parts.reduce(0) { $0 + $1.bytes } }

    /// The memory this machine has, in bytes.
    public static var machineMemory: Double { Double(ProcessInfo.processInfo.physicalMemory) }

    public var description: String {
        parts.map { "\($0.what) \(MemoryEstimate.format($0.bytes))" }.joined(separator: ", ")
    }

    static func format(_ bytes: Double) -> String {
        if bytes >= 1e12 { return String(format: "%.1f TB", bytes / 1e12) }
        if bytes >= 1e9 { return String(format: "%.1f GB", bytes / 1e9) }
        return String(format: "%.0f MB", max(bytes / 1e6, 1))
    }

    /// Throws when the run would need more than `fraction` of the machine's memory.
    public func check(fraction: Double = 0.8, machine: Double = MemoryEstimate.machineMemory) throws {
        guard total > fraction * machine else { return }
        let largest = parts.max { $0.bytes < $1.bytes }!
        var advice = "Lower \(largest.options)"
        if let note { advice = note + "; or lower " + largest.options }
        throw ConfigurationError("this run would need about \(MemoryEstimate.format(total)) of memory (\(description)); this machine has \(MemoryEstimate.format(machine)). \(advice)")
    }

    /// Floats of one recurrent-plus-head network: its parameters, and the activations one row (one
    /// time step of one sequence) keeps for backward.
    static func network(input: Int, cell: CellKind?, hidden: Int, layers: Int, heads: [Int], extra: Int, output: Int) -> (parameters: Double, perRow: Double) {
        var parameters = 0.0, perRow = Double(input)
        var width = Double(input)
        if let cell {
            let gates = cell == .lstm ? 4.0 : 3.0, h = Double(hidden)
            for _ in 0..<layers {
                parameters += gates * h * (width + h + 2)
                perRow += h * (gates + 4)
                width = h
            }
        }
        width += Double(extra)
        for w in heads + [output] {
            parameters += (width + 1) * Double(w)
            perRow += 2 * Double(w)
            width = Double(w)
        }
        return (parameters, perRow)
    }

    static func width(_ space: Space) -> Int {
        if case .discrete(let n) = space { return n }
        return space.width
    }

    /// An off-policy run (SAC, TD3) on an environment with these spaces.
    public static func offPolicy(_ c: OffPolicyConfiguration, observationWidth: Int, actionSpace: Space, agents: Int = 1,
                                 globalStateWidth: Int = 0, actionMaskWidth: Int = 0) -> MemoryEstimate {
        var estimate = offPolicyParts(c, observationWidth: observationWidth, actionSpace: actionSpace, agents: agents, globalStateWidth: globalStateWidth,
                                      actionMaskWidth: actionMaskWidth)
        estimate.note = spaceNote(observationWidth: observationWidth, actionSpace: actionSpace)
        return estimate
    }

    /// What to say when the spaces themselves are very wide.
    static func spaceNote(observationWidth: Int, actionSpace: Space) -> String? {
        if case .discrete(let n) = actionSpace, n > 10_000 {
            return "The action space has \(n) discrete actions, one network output each: give the environment fewer actions (e.g. several smaller choices)"
        }
        if observationWidth > 100_000 { return "Observations have \(observationWidth) values: reduce them (e.g. downsample or encode them) before training" }
        return nil
    }

    /// Several agents: one actor row per agent, critics over the joint input, per-agent replay columns.
    static func offPolicyParts(_ c: OffPolicyConfiguration, observationWidth: Int, actionSpace: Space, agents: Int = 1,
                               globalStateWidth: Int = 0, actionMaskWidth: Int = 0) -> MemoryEstimate {
        let a = c.agent, A = width(actionSpace), M = agents, id = M > 1 ? M : 0
        var discrete = false
        if case .discrete = actionSpace { discrete = true }
        let context = observationWidth + A + 1 + id
        let criticContext = M == 1 ? context : M * observationWidth + globalStateWidth + id + M * A + 1
        let actor = network(input: context, cell: a.network.cell, hidden: a.hiddenSize, layers: a.recurrentLayers, heads: a.headHiddenSizes,
                            extra: 0, output: discrete ? A : 2 * A)
        let critic = network(input: criticContext, cell: a.criticNetworkKind.cell, hidden: a.hiddenSize, layers: a.recurrentLayers, heads: a.headHiddenSizes,
                             extra: discrete ? (M - 1) * A : M * A, output: discrete ? A : 1)
        let critics = Double(a.criticCount)
        // Trained networks: value, gradient, two moments; targets: value only.
        let parameters = 4 * (actor.parameters + critics * critic.parameters) + actor.parameters + critics * critic.parameters
        let rows = Double(a.batchSize) * Double(a.sampler.sequenceLength + 1) * Double(M)
        let activations = rows * 2 * (actor.perRow + 2 * critics * critic.perRow)
        func stateWidth(_ kind: NetworkKind) -> Double { Double(kind.stateWidth(hiddenSize: a.hiddenSize, layers: a.recurrentLayers)) }
        let stored = a.sampler.initialState.usesStoredStates ? stateWidth(a.network) + critics * stateWidth(a.criticNetworkKind) : 0
        // Several agents: each agent's activity and finished flags; with masks, each agent's mask and next mask.
        let activity = (M > 1 ? 2.0 : 0) + 2 * Double(actionMaskWidth)
        let perStep = Double(M) * (2 * Double(observationWidth) + Double(actionSpace.width) + 1 + stored + activity) + 2 * Double(globalStateWidth)
        let replay = Double(a.replayCapacity) * (4 * perStep + 11)
        return MemoryEstimate(parts: [
            ("replay at capacity", replay, "--replay-capacity"),
            ("networks", 4 * parameters, "--hidden, --layers or --head-hidden"),
            ("training batch", 4 * activations, "--batch-size, --sequence-length or --hidden"),
        ])
    }

    /// A PPO run with `copies` environment copies on these spaces.
    public static func ppo(_ c: PPOTrainingConfiguration, observationWidth: Int, actionSpace: Space, agents: Int = 1,
                           globalStateWidth: Int = 0) -> MemoryEstimate {
        let p = c.ppo, A = width(actionSpace)
        let context = observationWidth + A + 1 + (agents > 1 ? agents : 0) + globalStateWidth
        let net = network(input: context, cell: p.network.cell, hidden: p.hiddenSize, layers: p.recurrentLayers, heads: p.headHiddenSizes,
                          extra: 0, output: 2 * A)
        let parameters = 2 * 4 * net.parameters
        let stateWidth = Double(p.network.stateWidth(hiddenSize: p.hiddenSize, layers: p.recurrentLayers))
        let rolloutRows = Double(p.environments) * Double(agents) * Double(p.rolloutSteps + 1)
        let rollout = rolloutRows * (Double(context + A) + 2 * stateWidth + 12)
        // A minibatch's chunks keep activations for backward; a refresh runs over the whole rollout.
        let activations = 2 * net.perRow * max(Double(p.minibatchSize), p.refreshStates ? rolloutRows : 0) * 2
        return MemoryEstimate(parts: [
            ("rollout", 4 * rollout, "--envs or --rollout-steps"),
            ("networks", 4 * parameters, "--hidden, --layers or --head-hidden"),
            ("training minibatch", 4 * activations, "--minibatch-size or --hidden"),
        ], note: spaceNote(observationWidth: observationWidth, actionSpace: actionSpace))
    }
}
