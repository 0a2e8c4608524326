import Tensors

extension EpisodeReplay: Checkpointable {
    struct State: Codable {
        var capacity: Int, start: Int, count: Int, totalSteps: Int, episodeStarts: [Int], episodeID: Int, episodeOpen: Bool
        var terminated: [UInt8], truncated: [UInt8], firstSteps: [UInt8], episodeIDs: [Int]
    }

    /// Saves the whole ring (contents and positions), so that sampling after a restore draws the
    /// same windows.
    public func save(to archive: StateArchive, prefix: String) throws {
        let n = capacity, o = layout.observationWidth, a = layout.actionWidth
        archive.put(prefix + "observations", floats: observations, count: n * o)
        archive.put(prefix + "next_observations", floats: nextObservations, count: n * o)
        archive.put(prefix + "actions", floats: actions, count: n * a)
        archive.put(prefix + "rewards", floats: rewards, count: n)
        archive.put(prefix + "actor_states", floats: actorStates, count: n * layout.actorStateWidth)
        archive.put(prefix + "critic_states", floats: criticStates, count: n * layout.criticStateWidth)
        func bytes(_ p: UnsafeMutablePointer<Bool>) -> [UInt8] { (0..<n).map { p[$0] ? 1 : 0 } }
        archive.put(prefix + "state", value: State(
            capacity: n, start: start, count: count, totalSteps: totalSteps, episodeStarts: episodeStarts, episodeID: episodeID,
            episodeOpen: episodeOpen, terminated: bytes(terminatedFlags), truncated: bytes(truncatedFlags),
            firstSteps: bytes(firstStepFlags), episodeIDs: Array(UnsafeBufferPointer(start: episodeIDs, count: n))))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        let n = capacity, o = layout.observationWidth, a = layout.actionWidth
        guard s.capacity == n, s.terminated.count == n, s.episodeIDs.count == n else {
            throw StateArchiveError("checkpoint \(archive.path): a replay of capacity \(s.capacity), this run has \(n)")
        }
        try archive.floats(prefix + "observations", into: observations, count: n * o)
        try archive.floats(prefix + "next_observations", into: nextObservations, count: n * o)
        try archive.floats(prefix + "actions", into: actions, count: n * a)
        try archive.floats(prefix + "rewards", into: rewards, count: n)
        try archive.floats(prefix + "actor_states", into: actorStates, count: n * layout.actorStateWidth)
        try archive.floats(prefix + "critic_states", into: criticStates, count: n * layout.criticStateWidth)
        for i in 0..<n {
            terminatedFlags[i] = s.terminated[i] != 0
            truncatedFlags[i] = s.truncated[i] != 0
            firstStepFlags[i] = s.firstSteps[i] != 0
            episodeIDs[i] = s.episodeIDs[i]
        }
        start = s.start; count = s.count; totalSteps = s.totalSteps; episodeStarts = s.episodeStarts
        episodeID = s.episodeID; episodeOpen = s.episodeOpen
    }
}
