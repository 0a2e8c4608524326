import Tensors

/// A cooperative memory task that needs memory by construction. Each of `agents` agents sees a
/// private cue, one of `cues` values shown one-hot, at the episode's first step only; then `delay`
/// blank steps; then a recall step (its observation has the recall flag set) on which every agent
/// must name its own cue. The episode then terminates. Actions before the recall step are ignored.
///
/// Rewards come at the recall step only. `team` (the default): every agent receives the fraction
/// of agents that named their cue, a common reward; `own`: each agent receives 1 when it named its
/// own cue. Either way the team's return is the mean over agents of their returns, the fraction right, in [0, 1]: a
/// team without memory can only guess, so its best expected return is 1 / `cues`, and a team that
/// remembers reaches 1.
///
/// Observation per agent: `cues` floats (the cue one-hot at the first step, zeros after) and the
/// recall flag. The global state, for centralised critics: every agent's cue one-hot and the
/// fraction of the episode elapsed. Episodes last `delay` + 2 steps.
public final class TeamRecall: MultiAgentEnvironment {
    public let agents: Int, cues: Int, delay: Int, teamReward: Bool
    var rng = RandomGenerator(seed: 0)
    /// Each agent's cue in this episode, and the step about to be taken.
    public internal(set) var cue: [Int]
    public internal(set) var t = 0

    public init(agents: Int = 2, cues: Int = 4, delay: Int = 5, teamReward: Bool = true) {
        precondition(agents >= 1 && cues >= 2 && delay >= 0, "team-recall needs at least one agent, two cues and a delay of zero or more")
        self.agents = agents
        self.cues = cues
        self.delay = delay
        self.teamReward = teamReward
        cue = [Int](repeating: 0, count: agents)
    }

    public var name: String { "team-recall" }
    public var observationSpace: Space { .box(low: [Float](repeating: 0, count: cues + 1), high: [Float](repeating: 1, count: cues + 1)) }
    public var actionSpace: Space { .discrete(cues) }
    public var globalStateWidth: Int { agents * cues + 1 }
    public var maxEpisodeSteps: Int { delay + 2 }
    public var teamReturn: TeamReturn { .mean }
    /// The recall step's index within the episode.
    var recallStep: Int { delay + 1 }

    func observe(_ observations: UnsafeMutablePointer<Float>) {
        let w = cues + 1
        observations.update(repeating: 0, count: agents * w)
        for i in 0..<agents {
            if t == 0 { observations[i * w + cue[i]] = 1 }
            if t == recallStep { observations[i * w + cues] = 1 }
        }
    }

    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        for i in 0..<agents { cue[i] = rng.integer(below: cues) }
        t = 0
        observe(observations)
    }

    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
                     active: UnsafeMutablePointer<Bool>) -> MultiAgentStepResult {
        for i in 0..<agents { rewards[i] = 0; active[i] = true }
        if t == recallStep {
            var right = 0
            for i in 0..<agents where Int(actions[i]) == cue[i] { right += 1 }
            for i in 0..<agents { rewards[i] = teamReward ? Float(right) / Float(agents) : (Int(actions[i]) == cue[i] ? 1 : 0) }
        }
        let ended = t == recallStep
        t += 1
        observe(observations)
        return MultiAgentStepResult(terminated: ended)
    }

    public func globalState(into state: UnsafeMutablePointer<Float>) {
        state.update(repeating: 0, count: globalStateWidth)
        for i in 0..<agents { state[i * cues + cue[i]] = 1 }
        state[agents * cues] = Float(t) / Float(recallStep)
    }
}
