import Tensors

extension EpisodeReplay: Checkpointable {
    struct State: Codable {
        var capacity: Int, count: Int, totalSteps: Int, episodeStarts: [Int], episodeID: Int, episodeOpen: Bool
        var terminated: [UInt8], truncated: [UInt8], firstSteps: [UInt8], episodeIDs: [Int]
    }

    /// Saves the kept steps, oldest first, with their positions relative to the oldest (restored
    /// with the oldest at ring index 0: every access goes through the ring's modular arithmetic, so
    /// sampling after a restore draws the same windows).
    public func save(to archive: StateArchive, prefix: String) throws {
        let n = count, o = layout.observationWidth, a = layout.actionWidth
        func gather(_ name: String, _ p: UnsafeMutablePointer<Float>, _ width: Int) {
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n * width))
            defer { buffer.deallocate() }
            for k in 0..<n { (buffer + k * width).update(from: p + index(k) * width, count: width) }
            archive.put(prefix + name, floats: buffer, count: n * width)
        }
        gather("observations", observations, o)
        gather("next_observations", nextObservations, o)
        gather("actions", actions, a)
        gather("rewards", rewards, 1)
        gather("actor_states", actorStates, layout.actorStateWidth)
        gather("critic_states", criticStates, layout.criticStateWidth)
        func bytes(_ p: UnsafeMutablePointer<Bool>) -> [UInt8] { (0..<n).map { p[index($0)] ? 1 : 0 } }
        archive.put(prefix + "state", value: State(
            capacity: capacity, count: n, totalSteps: totalSteps,
            episodeStarts: episodeStarts.map { ($0 - start + capacity) % capacity }, episodeID: episodeID, episodeOpen: episodeOpen,
            terminated: bytes(terminatedFlags), truncated: bytes(truncatedFlags), firstSteps: bytes(firstStepFlags),
            episodeIDs: (0..<n).map { episodeIDs[index($0)] }))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        let n = s.count, o = layout.observationWidth, a = layout.actionWidth
        guard s.capacity == capacity, n <= capacity, s.terminated.count == n, s.truncated.count == n, s.firstSteps.count == n,
              s.episodeIDs.count == n
        else { throw StateArchiveError("checkpoint \(archive.path): a replay of capacity \(s.capacity), this run has \(capacity)") }
        try archive.floats(prefix + "observations", into: observations, count: n * o)
        try archive.floats(prefix + "next_observations", into: nextObservations, count: n * o)
        try archive.floats(prefix + "actions", into: actions, count: n * a)
        try archive.floats(prefix + "rewards", into: rewards, count: n)
        try archive.floats(prefix + "actor_states", into: actorStates, count: n * layout.actorStateWidth)
        try archive.floats(prefix + "critic_states", into: criticStates, count: n * layout.criticStateWidth)
        for i in 0..<capacity {
            terminatedFlags[i] = i < n && s.terminated[i] != 0
            truncatedFlags[i] = i < n && s.truncated[i] != 0
            firstStepFlags[i] = i < n && s.firstSteps[i] != 0
            episodeIDs[i] = i < n ? s.episodeIDs[i] : -1
        }
        start = 0; count = n; totalSteps = s.totalSteps; episodeStarts.removeAll(keepingCapacity: true); episodeStarts += s.episodeStarts
        episodeID = s.episodeID; episodeOpen = s.episodeOpen
    }
}
