import Tensors
import Replay

/// What several agents' critics see (MASAC): the central input (the global state or every agent's
/// observation) with the agent's id, and the joint action in the head's extra input. With one agent
/// and nothing central the critics read the actor's own context and take the action alone.
extension OffPolicyAgent {
    /// Writes agent `agent`'s critic input for one step: the agent's own observation (agent-specific
    /// critics), the global state (or every agent's observation), the agent's id one-hot (several agents), every agent's previous action (one-hot
    /// when discrete; zeros when nil, at an episode's first step) and the agent's previous reward,
    /// as the context options say.
    func writeCriticContext(observations: UnsafePointer<Float>, globalState: UnsafePointer<Float>?, previousActions: UnsafePointer<Float>?,
                                   previousReward: Float, agent: Int, into out: UnsafeMutablePointer<Float>) {
        let N = agents, ctx = configuration.context
        var p = out
        if agentSpecificCritics {
            p.update(from: observations + agent * observationWidth, count: observationWidth)
            p += observationWidth
        }
        if globalStateWidth > 0, let globalState {
            p.update(from: globalState, count: globalStateWidth)
            p += globalStateWidth
        } else {
            p.update(from: observations, count: N * observationWidth)
            p += N * observationWidth
        }
        if N > 1 {
            p.update(repeating: 0, count: N)
            p[agent] = 1
            p += N
        }
        if ctx.lastAction {
            let w = discreteActions ?? actionWidth
            p.update(repeating: 0, count: N * w)
            if let previousActions {
                for j in 0..<N {
                    if discreteActions != nil { p[j * w + Int(previousActions[j])] = 1 } else {
                        (p + j * w).update(from: previousActions + j * actionWidth, count: actionWidth)
                    }
                }
            }
            p += N * w
        }
        if ctx.lastReward { p[0] = previousReward }
    }

    /// Writes one step's encoder inputs for every agent, the one place that does it (replayed
    /// windows, acting, refreshing and measuring staleness all come here): the actor's, `agents` rows
    /// of `contextWidth` floats at `actor`, and the critics', rows of `criticContextWidth` at `critic`
    /// (nil: not wanted, or the critics share the actor's). `observations`, `previousObservations`,
    /// `previousActions` and `previousRewards` hold every agent's, side by side; nil previous
    /// observations and actions mean the episode's first step, nil previous rewards zeros.
    @inline(__always)
    public func writeStepContexts(observations: UnsafePointer<Float>, previousObservations: UnsafePointer<Float>? = nil, globalState: UnsafePointer<Float>?,
                                  previousActions: UnsafePointer<Float>?, previousRewards: UnsafePointer<Float>?, actor: UnsafeMutablePointer<Float>?,
                                  critic: UnsafeMutablePointer<Float>?) {
        let N = agents, o = observationWidth, a = actionWidth, ctx = configuration.context
        for k in 0..<N {
            let reward = previousRewards?[k] ?? 0
            if let actor {
                ctx.write(observation: observations + k * o, observationWidth: o, lastObservation: previousObservations.map { $0 + k * o },
                          lastAction: previousActions.map { $0 + k * a }, actionWidth: a,
                          oneHotOver: discreteActions, lastReward: reward, agent: k, agents: N, into: actor + k * contextWidth)
            }
            if let critic, !sharesContext {
                writeCriticContext(observations: observations, globalState: globalState, previousActions: previousActions,
                                   previousReward: reward, agent: k, into: critic + k * criticContextWidth)
            }
        }
    }

    /// The critics' input over the batch (the actor's context when they share it) and the reset mask of its rows.
    var criticInput: Tensor { sharesContext ? context : criticContext }
    func rowResetMask(_ batch: SequenceBatch) -> Tensor { agents == 1 ? batch.resetMask : agentResetMask }

    /// The critics' head extra for `rows` agent-inner rows from every agent's actions `actions` (rows ×
    /// actionWidth, in order) with each row's own action taken from `own` (default: `actions`):
    /// continuous [own, others...], discrete the others one-hot. An agent inactive at the step
    /// (`active`, the batch's activity for the same rows, 0) has no action: zeros in its place. With
    /// one agent (`active` nil) no copy is made.
    func criticExtra(_ actions: UnsafePointer<Float>, own: UnsafePointer<Float>? = nil, active: UnsafePointer<Float>?,
                     rows: Int, into out: Tensor) -> UnsafePointer<Float>? {
        let N = agents, a = actionWidth
        guard N > 1, !independentCritics, let active else { return discreteActions == nil ? (own ?? actions) : nil }
        if let n = discreteActions {
            let w = (N - 1) * n
            out.resize(Shape(d0: rows, d1: w))
            out.zero()
            for r in 0..<rows {
                let k = r % N, group = r - k
                var slot = 0
                for j in 0..<N where j != k {
                    if active[group + j] != 0 { out.data[r * w + slot * n + Int(actions[group + j])] = 1 }
                    slot += 1
                }
            }
        } else {
            let w = N * a
            out.resize(Shape(d0: rows, d1: w))
            for r in 0..<rows {
                let k = r % N, group = r - k, dst = out.data + r * w
                copyFloats(dst, from: (own ?? actions) + r * a, count: a)
                var slot = 1
                for j in 0..<N where j != k {
                    if active[group + j] != 0 {
                        (dst + slot * a).update(from: actions + (group + j) * a, count: a)
                    } else {
                        (dst + slot * a).update(repeating: 0, count: a)
                    }
                    slot += 1
                }
            }
        }
        return UnsafePointer(out.data)
    }
}
