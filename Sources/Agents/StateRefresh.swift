import NeuralNetworks
import Replay
import Tensors

extension OffPolicyAgent {
    /// Refreshed stored states: rewrites every stored actor and critic state in `replay` with the
    /// state the current networks have entering that step, running them over each kept episode
    /// from its first kept step (from zeros; an episode whose beginning was evicted starts at its
    /// oldest kept step). All episodes advance side by side, one step at a time, as in acting; no
    /// random numbers are used. After a refresh the stored states are the recomputed ones, so the
    /// staleness of stored starts is zero until the weights move again.
    public func refreshStoredStates(in replay: EpisodeReplay) {
        let layout = replay.layout
        guard layout.actorStateWidth > 0 || layout.criticStateWidth > 0 else { return }
        let starts = replay.episodeStarts
        let E = starts.count, N = agents, R = E * N
        let C = contextWidth, Cc = criticContextWidth, Sa = actor.stateWidth, Sc = criticStateWidth
        guard E > 0 else { return }
        refreshContext.resize(Shape(d0: 1, d1: R, d2: C))
        refreshCriticContext.resize(Shape(d0: 1, d1: R, d2: Cc))
        refreshActorState.resize(Shape(d0: R, d1: max(Sa, 1)))
        refreshCriticState.resize(Shape(d0: R, d1: max(Sc, 1)))
        refreshActorState.zero()
        refreshCriticState.zero()
        var current: [Int?] = starts, previous: [Int?] = Array(repeating: nil, count: E)
        while current.contains(where: { $0 != nil }) {
            for e in 0..<E {
                let row = e * N
                guard let i = current[e] else {
                    // A finished episode's rows are not read.
                    (refreshContext.data + row * C).update(repeating: 0, count: N * C)
                    (refreshCriticContext.data + row * Cc).update(repeating: 0, count: N * Cc)
                    continue
                }
                // The states entering step i, as stored at collection.
                if layout.actorStateWidth > 0 { replay.actorState(i).update(from: refreshActorState.data + row * Sa, count: N * Sa) }
                if layout.criticStateWidth > 0 { replay.criticState(i).update(from: refreshCriticState.data + row * Sc, count: N * Sc) }
                let p = previous[e]
                writeStepContexts(observations: replay.observation(i), previousObservations: p.map { UnsafePointer(replay.observation($0)) },
                                  globalState: replay.globalState(i), previousActions: p.map { UnsafePointer(replay.action($0)) }, previousRewards: p.map { UnsafePointer(replay.rewards($0)) },
                                  actor: refreshContext.data + row * C, critic: refreshCriticContext.data + row * Cc)
            }
            if actor.isRecurrent {
                _ = actor.encode(refreshContext, initialState: refreshActorState.matrix, resetMask: nil, keepActivations: false)
                refreshActorState.data.update(from: actor.finalState!, count: R * Sa)
            }
            if Sc > 0 { advanceCriticStates(context: sharesContext ? refreshContext : refreshCriticContext, state: refreshCriticState) }
            for e in 0..<E {
                previous[e] = current[e]
                current[e] = current[e].flatMap { replay.endsEpisode($0) ? nil : replay.successor($0) }
            }
        }
    }
}
