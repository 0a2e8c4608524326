import Tensors

extension EpisodeReplay: Checkpointable {
    struct State: Codable {
        var capacity: Int, count: Int, totalSteps: Int, episodeStarts: [Int], episodeID: Int, episodeOpen: Bool
        var terminated: [UInt8], truncated: [UInt8], firstSteps: [UInt8], episodeIDs: [Int]
    }

    /// Where ring `c` is kept in a checkpoint: under `prefix` itself for a one-copy replay (the layout
    /// of earlier versions), else under `prefix` + `ring<c>.`.
    func ringPrefix(_ prefix: String, _ c: Int) -> String { copies == 1 ? prefix : prefix + "ring\(c)." }

    /// Saves each ring's kept steps, oldest first, with their positions relative to the oldest
    /// (restored with the oldest at the ring's first slot: every access goes through the ring's
    /// modular arithmetic, so sampling after a restore draws the same windows).
    public func save(to archive: StateArchive, prefix: String) throws {
        let o = layout.observationFloats, a = layout.actionFloats
        for c in 0..<copies {
            let ring = rings[c], n = ring.count, prefix = ringPrefix(prefix, c)
            func at(_ k: Int) -> Int { position(ring.start, plus: k, in: c) }
            func gather(_ name: String, _ p: UnsafeMutablePointer<Float>, _ width: Int) {
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n * width))
                defer { buffer.deallocate() }
                for k in 0..<n { (buffer + k * width).update(from: p + at(k) * width, count: width) }
                archive.put(prefix + name, floats: buffer, count: n * width)
            }
            gather("observations", observations, o)
            gather("next_observations", nextObservations, o)
            gather("actions", actions, a)
            gather("rewards", rewards, layout.agents)
            gather("actor_states", actorStates, layout.actorStateFloats)
            gather("critic_states", criticStates, layout.criticStateWidth)
            // Columns of later versions are written only when used, so a single-agent checkpoint
            // keeps the earlier layout.
            if layout.globalStateWidth > 0 {
                gather("global_states", globalStates, layout.globalStateWidth)
                gather("next_global_states", nextGlobalStates, layout.globalStateWidth)
            }
            if layout.actionMaskWidth > 0 {
                gather("action_masks", actionMasks, layout.actionMaskFloats)
                gather("next_action_masks", nextActionMasks, layout.actionMaskFloats)
            }
            if layout.activityFloats > 0 {
                gather("agent_activity", agentActivity, layout.activityFloats)
                gather("agent_finished", agentFinishedFlags, layout.activityFloats)
            }
            func bytes(_ p: UnsafeMutablePointer<Bool>) -> [UInt8] { (0..<n).map { p[at($0)] ? 1 : 0 } }
            archive.put(prefix + "state", value: State(
                capacity: ringCapacity, count: n, totalSteps: totalSteps,
                episodeStarts: ring.episodeStarts.map { ($0 - ring.start + ringCapacity) % ringCapacity }, episodeID: episodeID,
                episodeOpen: ring.episodeOpen, terminated: bytes(terminatedFlags), truncated: bytes(truncatedFlags),
                firstSteps: bytes(firstStepFlags), episodeIDs: (0..<n).map { episodeIDs[at($0)] }))
        }
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let o = layout.observationFloats, a = layout.actionFloats, g = layout.globalStateWidth
        count = 0
        episodeCount = 0
        for c in 0..<copies {
            let prefix = ringPrefix(prefix, c), base = rings[c].base
            let s = try archive.value(prefix + "state", as: State.self)
            let n = s.count
            guard s.capacity == ringCapacity, n <= ringCapacity, s.terminated.count == n, s.truncated.count == n, s.firstSteps.count == n,
                  s.episodeIDs.count == n
            else { throw StateArchiveError("checkpoint \(archive.path): a replay of \(s.capacity) steps per copy, this run has \(ringCapacity)") }
            try archive.floats(prefix + "observations", into: observations + base * o, count: n * o)
            try archive.floats(prefix + "next_observations", into: nextObservations + base * o, count: n * o)
            try archive.floats(prefix + "actions", into: actions + base * a, count: n * a)
            try archive.floats(prefix + "rewards", into: rewards + base * layout.agents, count: n * layout.agents)
            try archive.floats(prefix + "actor_states", into: actorStates + base * layout.actorStateFloats, count: n * layout.actorStateFloats)
            try archive.floats(prefix + "critic_states", into: criticStates + base * layout.criticStateWidth, count: n * layout.criticStateWidth)
            if g > 0 {
                guard archive.contains(prefix + "global_states") else {
                    throw StateArchiveError("checkpoint \(archive.path): its replay has no global states, which this run stores; it was written by a run without them")
                }
                try archive.floats(prefix + "global_states", into: globalStates + base * g, count: n * g)
                try archive.floats(prefix + "next_global_states", into: nextGlobalStates + base * g, count: n * g)
            }
            let m = layout.actionMaskFloats
            if m > 0 {
                guard archive.contains(prefix + "action_masks") else {
                    throw StateArchiveError("checkpoint \(archive.path): its replay has no action masks, which this run stores; it was written by a version of rrl that did not use them: train again, or resume with that version")
                }
                try archive.floats(prefix + "action_masks", into: actionMasks + base * m, count: n * m)
                try archive.floats(prefix + "next_action_masks", into: nextActionMasks + base * m, count: n * m)
            }
            let f = layout.activityFloats
            if f > 0 {
                if archive.contains(prefix + "agent_activity") {
                    try archive.floats(prefix + "agent_activity", into: agentActivity + base * f, count: n * f)
                    try archive.floats(prefix + "agent_finished", into: agentFinishedFlags + base * f, count: n * f)
                } else {
                    // Written before agents could finish early: every agent was taken as active throughout.
                    (agentActivity + base * f).update(repeating: 1, count: n * f)
                    (agentFinishedFlags + base * f).update(repeating: 0, count: n * f)
                }
            }
            for k in 0..<ringCapacity {
                terminatedFlags[base + k] = k < n && s.terminated[k] != 0
                truncatedFlags[base + k] = k < n && s.truncated[k] != 0
                firstStepFlags[base + k] = k < n && s.firstSteps[k] != 0
                episodeIDs[base + k] = k < n ? s.episodeIDs[k] : -1
            }
            rings[c].start = base
            rings[c].count = n
            rings[c].episodeStarts.removeAll(keepingCapacity: true)
            rings[c].episodeStarts += s.episodeStarts.map { base + $0 }
            rings[c].episodeOpen = s.episodeOpen
            rings[c].currentEpisode = s.episodeIDs.last ?? 0
            count += n
            episodeCount += s.episodeStarts.count
            totalSteps = s.totalSteps
            episodeID = s.episodeID
        }
    }
}
