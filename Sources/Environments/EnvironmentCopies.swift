import Tensors

/// Copies of an environment stepped together, as a trainer collects from them: `VectorEnvironment`
/// (single-agent copies, built-in or served by a Python bridge; one agent each) or
/// `MultiAgentVectorEnvironment`. Per-agent rows are agent-inner: copy i's agent k is row
/// i · agents + k of the observations `[count, agents, observationWidth]` and rewards `[count, agents]`.
public protocol EnvironmentCopies: AnyObject, Checkpointable {
    var name: String { get }
    /// Copies stepped together.
    var count: Int { get }
    /// Agents per copy.
    var agents: Int { get }
    /// One agent's spaces.
    var observationSpace: Space { get }
    var actionSpace: Space { get }
    var observationWidth: Int { get }
    var actionWidth: Int { get }
    /// Floats of a copy's global state (0: none).
    var globalStateWidth: Int { get }
    /// Actions per agent in the copies' action masks (0: every action is always available).
    var actionMaskWidth: Int { get }
    /// How the agents' rewards make a copy's return.
    var teamReturn: TeamReturn { get }
    /// `[count, agents]`: the last step's rewards.
    var rewards: Tensor { get }
    var terminated: [Bool] { get }
    var truncated: [Bool] { get }
    /// True where the copy's observations are the first of an episode.
    var episodeStarts: [Bool] { get }
    var episodeLengths: [Int] { get }
    /// Environment steps taken, summed over copies.
    var totalSteps: Int { get }
    /// Restoring a checkpoint starts new episodes (Python copies) instead of continuing the saved ones.
    var restoreStartsNewEpisodes: Bool { get }
    /// The first copy, when it is a single-agent built-in one (memory probes are made from it).
    var firstSingleAgentCopy: (any Environment)? { get }
    /// Copy i's observations (all agents'), the last ones of an episode that ended at the last step,
    /// and the global state before and after that step.
    func observation(_ i: Int) -> UnsafeMutablePointer<Float>
    func finalObservation(_ i: Int) -> UnsafeMutablePointer<Float>
    func globalState(_ i: Int) -> UnsafeMutablePointer<Float>
    func finalGlobalState(_ i: Int) -> UnsafeMutablePointer<Float>
    /// Copy i's action masks (`[agents, actionMaskWidth]`, 1 for an available action) for its current
    /// observations, and for the last ones of an episode that ended at the last step.
    func actionMask(_ i: Int) -> UnsafeMutablePointer<Float>
    func finalActionMask(_ i: Int) -> UnsafeMutablePointer<Float>
    /// False for a copy that ended and waits for the others (it was not stepped and stores nothing).
    func isRunning(_ i: Int) -> Bool
    /// Whether agent `k` of copy `i` is still in its episode (an agent that finished early is not;
    /// it acts again when the episode ends and the next begins).
    func isActive(_ i: Int, agent k: Int) -> Bool
    func reset(seed: UInt64?) throws
    /// Steps every running copy with its agents' actions (`[count, agents, actionWidth]`).
    func step(_ actions: UnsafePointer<Float>) throws
    func drainFinishedEpisodes(_ body: (_ return: Double, _ length: Int) -> Void)
}

extension VectorEnvironment: EnvironmentCopies {
    public var agents: Int { 1 }
    public var teamReturn: TeamReturn { .sum }
    public var globalStateWidth: Int { 0 }
    public var actionMaskWidth: Int { 0 }
    public var firstSingleAgentCopy: (any Environment)? { copies.first }
    // Zero-width rows (never read): any valid pointer serves.
    public func globalState(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data }
    public func finalGlobalState(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data }
    public func actionMask(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data }
    public func finalActionMask(_ i: Int) -> UnsafeMutablePointer<Float> { finalObservations.data }
    public func isRunning(_ i: Int) -> Bool { true }
    public func isActive(_ i: Int, agent k: Int) -> Bool { true }
}

extension MultiAgentVectorEnvironment: EnvironmentCopies {
    public var restoreStartsNewEpisodes: Bool { copies.first is PythonMultiAgentEnvironment }
    public var firstSingleAgentCopy: (any Environment)? { (copies.first as? SingleAgentAdapter)?.environment }
    public func isRunning(_ i: Int) -> Bool { running[i] }
    public func isActive(_ i: Int, agent k: Int) -> Bool { active[i * agents + k] }
}
