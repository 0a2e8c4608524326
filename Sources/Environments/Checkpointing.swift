import Tensors

// Checkpointing of the built-in environments: each saves its episode state and random generator
// as one JSON value, and restores it exactly.

extension MemoryTask {
    struct State: Codable { var rng: RandomGenerator; var elapsedSteps: Int; var bits: [UInt8]; var position: Int; var count: Int }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, elapsedSteps: elapsedSteps, bits: bits, position: position, count: count))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.bits.count == horizon else { throw StateArchiveError("checkpoint \(archive.path): memory task with horizon \(s.bits.count), this run has \(horizon)") }
        rng = s.rng; elapsedSteps = s.elapsedSteps; bits = s.bits; position = s.position; count = s.count
    }
}

extension Pendulum {
    /// (The episode's mass and gravity: absent for Pendulum-v1's and in earlier checkpoints.)
    struct State: Codable { var rng: RandomGenerator; var elapsedSteps: Int; var theta: Double; var thetaDot: Double; var mass: Double?; var gravity: Double? }

    public func save(to archive: StateArchive, prefix: String) throws {
        let hidden = massRange != nil || gravityRange != nil
        archive.put(prefix + "state", value: State(rng: rng, elapsedSteps: elapsedSteps, theta: theta, thetaDot: thetaDot,
                                                   mass: hidden ? mass : nil, gravity: hidden ? gravity : nil))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        rng = s.rng; elapsedSteps = s.elapsedSteps; theta = s.theta; thetaDot = s.thetaDot
        mass = s.mass ?? Pendulum.m; gravity = s.gravity ?? Pendulum.g
    }
}

extension CartPole {
    struct State: Codable { var rng: RandomGenerator; var elapsedSteps: Int; var state: [Double] }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, elapsedSteps: elapsedSteps, state: [state.0, state.1, state.2, state.3]))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.state.count == 4 else { throw StateArchiveError("checkpoint \(archive.path): cart-pole state of \(s.state.count) values") }
        rng = s.rng; elapsedSteps = s.elapsedSteps; state = (s.state[0], s.state[1], s.state[2], s.state[3])
    }
}

extension RepeatPrevious {
    struct State: Codable { var rng: RandomGenerator; var cards: [Int]; var t: Int }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, cards: deck.cards, t: t))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.cards.count == deck.cards.count else { throw StateArchiveError("checkpoint \(archive.path): a deck of \(s.cards.count) cards, this run has \(deck.cards.count)") }
        rng = s.rng; deck.cards = s.cards; t = s.t
    }
}

extension CountRecall {
    struct State: Codable { var rng: RandomGenerator; var cards: [Int]; var counts: [Int]; var query: Int; var t: Int }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, cards: deck.cards, counts: counts, query: query, t: t))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.cards.count == deck.cards.count, s.counts.count == counts.count else {
            throw StateArchiveError("checkpoint \(archive.path): a deck of \(s.cards.count) cards, this run has \(deck.cards.count)")
        }
        rng = s.rng; deck.cards = s.cards; counts = s.counts; query = s.query; t = s.t
    }
}

extension GoalCycle {
    /// (The obstacles: absent without them and in earlier checkpoints.)
    struct State: Codable { var rng: RandomGenerator; var goals: [Int]; var next: Int; var x: Int; var y: Int; var direction: Int; var t: Int; var obstacles: [Int]? }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, goals: goals.flatMap { [$0.x, $0.y] }, next: next, x: x, y: y,
                                                   direction: direction, t: t, obstacles: obstacleCount > 0 ? obstacles.sorted() : nil))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.goals.count == 2 * goalCount else { throw StateArchiveError("checkpoint \(archive.path): \(s.goals.count / 2) goals, this run has \(goalCount)") }
        rng = s.rng
        goals = stride(from: 0, to: s.goals.count, by: 2).map { (x: s.goals[$0], y: s.goals[$0 + 1]) }
        guard (s.obstacles ?? []).count == obstacleCount else { throw StateArchiveError("checkpoint \(archive.path): \((s.obstacles ?? []).count) obstacles, this run has \(obstacleCount)") }
        next = s.next; x = s.x; y = s.y; direction = s.direction; t = s.t; obstacles = Set(s.obstacles ?? [])
    }
}

extension VectorEnvironment: Checkpointable {
    struct State: Codable {
        var terminated: [Bool], truncated: [Bool], episodeStarts: [Bool], episodeReturns: [Double], episodeLengths: [Int]
        var finishedReturns: [Double], finishedLengths: [Int], totalSteps: Int
        var resetSeed: UInt64?
    }

    /// Saves the copies and the step's rows and flags. Python copies are not saved (the bridge
    /// cannot reach their state): restoring them starts a new episode in every copy instead, see
    /// `restore(from:prefix:)`.
    public func save(to archive: StateArchive, prefix: String) throws {
        for (i, env) in copies.enumerated() { try env.save(to: archive, prefix: prefix + "copy\(i).") }
        archive.put(prefix + "observations", observations)
        archive.put(prefix + "final_observations", finalObservations)
        archive.put(prefix + "rewards", rewards)
        archive.put(prefix + "state", value: State(terminated: terminated, truncated: truncated, episodeStarts: episodeStarts,
                                                   episodeReturns: episodeReturns, episodeLengths: episodeLengths,
                                                   finishedReturns: finished.map(\.return), finishedLengths: finished.map(\.length),
                                                   totalSteps: totalSteps, resetSeed: resetSeed))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.terminated.count == count else {
            throw StateArchiveError("checkpoint \(archive.path): \(s.terminated.count) environment copies, this run has \(count)")
        }
        for (i, env) in copies.enumerated() { try env.restore(from: archive, prefix: prefix + "copy\(i).") }
        try archive.read(prefix + "observations", into: observations)
        try archive.read(prefix + "final_observations", into: finalObservations)
        try archive.read(prefix + "rewards", into: rewards)
        terminated = s.terminated; truncated = s.truncated; episodeStarts = s.episodeStarts
        episodeReturns = s.episodeReturns; episodeLengths = s.episodeLengths
        finished = zip(s.finishedReturns, s.finishedLengths).map { (return: $0, length: $1) }
        totalSteps = s.totalSteps
        if bridge != nil {
            // The episodes in progress are lost with the Python process: every copy starts a new one,
            // seeded from the run's seed and the step count (so resuming twice gives the same run).
            try reset(seed: resumedEpisodesSeed(s.resetSeed, totalSteps: totalSteps))
        }
        resetSeed = s.resetSeed
    }

    /// True when restoring from a checkpoint starts new episodes (Python copies, whose state the
    /// checkpoint cannot hold) instead of continuing the saved ones: the caller then resets what it
    /// keeps per copy (recurrent states, previous actions and rewards) as at an episode start.
    public var restoreStartsNewEpisodes: Bool { bridge != nil }
}

extension TeamRecall {
    struct State: Codable { var rng: RandomGenerator; var cue: [Int]; var t: Int }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, cue: cue, t: t))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.cue.count == agents else { throw StateArchiveError("checkpoint \(archive.path): team-recall with \(s.cue.count) agents, this run has \(agents)") }
        rng = s.rng; cue = s.cue; t = s.t
    }
}

extension MultiAgentVectorEnvironment {
    struct State: Codable {
        var active: [Bool], terminated: [Bool], truncated: [Bool], episodeStarts: [Bool], running: [Bool]
        var episodeReturns: [Double], episodeLengths: [Int], finishedReturns: [Double], finishedLengths: [Int], totalSteps: Int
        var resetSeed: UInt64?
    }

    /// Saves the copies and the step's rows and flags (every copy must be checkpointable).
    public func save(to archive: StateArchive, prefix: String) throws {
        for (i, env) in copies.enumerated() { try env.save(to: archive, prefix: prefix + "copy\(i).") }
        for (name, tensor) in [("observations", observations), ("final_observations", finalObservations), ("global_states", globalStates),
                               ("final_global_states", finalGlobalStates), ("rewards", rewards)] {
            archive.put(prefix + name, tensor)
        }
        archive.put(prefix + "state", value: State(active: active, terminated: terminated, truncated: truncated, episodeStarts: episodeStarts,
                                                   running: running, episodeReturns: episodeReturns, episodeLengths: episodeLengths,
                                                   finishedReturns: finished.map(\.return), finishedLengths: finished.map(\.length),
                                                   totalSteps: totalSteps, resetSeed: resetSeed))
    }

    /// Restores the copies and the step's rows and flags; Python copies, whose state the checkpoint
    /// cannot hold, start new episodes instead, as `VectorEnvironment`'s do.
    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.terminated.count == count, s.active.count == count * agents else {
            throw StateArchiveError("checkpoint \(archive.path): \(s.terminated.count) environment copies of \(s.active.count / max(s.terminated.count, 1)) agents, this run has \(count) of \(agents)")
        }
        for (i, env) in copies.enumerated() { try env.restore(from: archive, prefix: prefix + "copy\(i).") }
        for (name, tensor) in [("observations", observations), ("final_observations", finalObservations), ("global_states", globalStates),
                               ("final_global_states", finalGlobalStates), ("rewards", rewards)] {
            try archive.read(prefix + name, into: tensor)
        }
        // The masks follow from the restored copies (the final ones are read only in the step that ends an episode).
        if actionMaskWidth > 0 { for i in 0..<count { copies[i].availableActions(into: actionMask(i)) } }
        active = s.active; terminated = s.terminated; truncated = s.truncated; episodeStarts = s.episodeStarts; running = s.running
        episodeReturns = s.episodeReturns; episodeLengths = s.episodeLengths
        finished = zip(s.finishedReturns, s.finishedLengths).map { (return: $0, length: $1) }
        totalSteps = s.totalSteps
        if restoreStartsNewEpisodes {
            try reset(seed: resumedEpisodesSeed(s.resetSeed, totalSteps: totalSteps))
        }
        resetSeed = s.resetSeed
    }
}

extension Foraging {
    struct State: Codable { var rng: RandomGenerator; var field: [Int]; var rows: [Int]; var columns: [Int]; var levels: [Int]; var step: Int; var foodSpawned: Float }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, field: field, rows: positions.map(\.row), columns: positions.map(\.column),
                                                   levels: levels, step: step, foodSpawned: foodSpawned))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.field.count == size * size, s.levels.count == players, s.rows.count == players, s.columns.count == players else {
            throw StateArchiveError("checkpoint \(archive.path): a foraging field or team of other sizes than this run's (\(size) x \(size), \(players) players)")
        }
        rng = s.rng
        setState(field: s.field, positions: zip(s.rows, s.columns).map { (row: $0, column: $1) }, levels: s.levels, step: s.step)
        foodSpawned = s.foodSpawned
    }
}

extension Spread {
    struct State: Codable { var rng: RandomGenerator; var positions: [Double]; var velocities: [Double]; var landmarks: [Double]; var step: Int }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, positions: positions, velocities: velocities, landmarks: landmarks, step: step))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.positions.count == 2 * agents, s.velocities.count == 2 * agents, s.landmarks.count == 2 * agents else {
            throw StateArchiveError("checkpoint \(archive.path): spread with \(s.positions.count / 2) agents, this run has \(agents)")
        }
        rng = s.rng
        setState(positions: s.positions, velocities: s.velocities, landmarks: s.landmarks, step: s.step)
    }
}

/// The seed of the new episodes that Python copies start when a run resumes: from the run's seed and
/// the step count, so that resuming twice gives the same run.
func resumedEpisodesSeed(_ resetSeed: UInt64?, totalSteps: Int) -> UInt64 {
    var seeds = RandomGenerator(seed: (resetSeed ?? 0) &+ 0x2545_F491_4F6C_DD1D &* UInt64(totalSteps + 1))
    return seeds.next()
}

extension TMaze {
    struct State: Codable { var rng: RandomGenerator; var elapsedSteps: Int; var position: Int; var goalUp: Bool }

    public func save(to archive: StateArchive, prefix: String) throws {
        archive.put(prefix + "state", value: State(rng: rng, elapsedSteps: elapsedSteps, position: position, goalUp: goalUp))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard (0...length).contains(s.position) else { throw StateArchiveError("checkpoint \(archive.path): a T-maze position \(s.position) beyond this corridor of \(length)") }
        rng = s.rng; elapsedSteps = s.elapsedSteps; position = s.position; goalUp = s.goalUp
    }
}
