import Tensors

extension Adam: Checkpointable {
    /// Saves the moments, the step counter and the groups' learning rates.
    public func save(to archive: StateArchive, prefix: String) throws {
        for (i, m) in firstMoments.enumerated() { archive.put(prefix + "m\(i)", m) }
        for (i, v) in secondMoments.enumerated() { archive.put(prefix + "v\(i)", v) }
        archive.put(prefix + "step_count", value: stepCount)
        archive.put(prefix + "learning_rates", value: groups.map(\.learningRate))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let rates = try archive.value(prefix + "learning_rates", as: [Float].self)
        guard rates.count == groups.count else {
            throw StateArchiveError("checkpoint \(archive.path): optimiser '\(prefix)' has \(rates.count) parameter groups, this run has \(groups.count)")
        }
        for (i, m) in firstMoments.enumerated() { try archive.read(prefix + "m\(i)", into: m) }
        for (i, v) in secondMoments.enumerated() { try archive.read(prefix + "v\(i)", into: v) }
        restore(stepCount: try archive.value(prefix + "step_count", as: Int.self))
        for (i, r) in rates.enumerated() { setLearningRate(r, group: i) }
    }
}

/// Saves parameter values under their names (after `prefix`).
public func saveParameters(_ parameters: [NamedParameter], to archive: StateArchive, prefix: String) {
    for (name, p) in parameters { archive.put(prefix + name, p.value) }
}

/// Restores parameter values saved by `saveParameters`; every name and shape must match.
public func restoreParameters(_ parameters: [NamedParameter], from archive: StateArchiveReader, prefix: String) throws {
    for (name, p) in parameters { try archive.read(prefix + name, into: p.value) }
}
