import NeuralNetworks
import Tensors

extension OffPolicyAgent: Checkpointable {
    /// Every network (targets included), the temperature, the three optimisers, the random
    /// generator, the update counters and the last statistics.
    var allNamedParameters: [NamedParameter] {
        namedParameters() + targetNamedParameters()
    }

    struct State: Codable {
        var rng: RandomGenerator; var criticUpdates: Int; var actorUpdates: Int; var statistics: UpdateStatistics
        var mixerStateScale: [Float]? = nil
        /// `clampTargets`: the ends of the bootstrap values' range.
        var targetRange: [Float]? = nil
    }

    /// The name of the first parameter tensor (targets included) holding a NaN or infinity, or nil
    /// when all are finite (names are built only when one is found).
    public func firstNonFiniteParameter() -> String? {
        // (Runs after every update: it walks a list made once, allocating nothing.)
        guard everyParameter.contains(where: { !$0.value.isFinite }) else { return nil }
        return allNamedParameters.first { !$0.parameter.value.isFinite }?.name
    }

    public func save(to archive: StateArchive, prefix: String) throws {
        saveParameters(allNamedParameters, to: archive, prefix: prefix + "parameters.")
        try actorOptimizer.save(to: archive, prefix: prefix + "actor_optimizer.")
        try criticOptimizer.save(to: archive, prefix: prefix + "critic_optimizer.")
        try temperatureOptimizer.save(to: archive, prefix: prefix + "temperature_optimizer.")
        archive.put(prefix + "state", value: State(rng: rng, criticUpdates: criticUpdates, actorUpdates: actorUpdates, statistics: statistics,
                                                   mixerStateScale: mixerStateScale, targetRange: targetRange.map { [$0.lowerBound, $0.upperBound] }))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        try restoreParameters(allNamedParameters, from: archive, prefix: prefix + "parameters.")
        try actorOptimizer.restore(from: archive, prefix: prefix + "actor_optimizer.")
        try criticOptimizer.restore(from: archive, prefix: prefix + "critic_optimizer.")
        try temperatureOptimizer.restore(from: archive, prefix: prefix + "temperature_optimizer.")
        rng = s.rng; criticUpdates = s.criticUpdates; actorUpdates = s.actorUpdates; statistics = s.statistics
        targetRange = s.targetRange.flatMap { $0.count == 2 && $0[0] <= $0[1] ? $0[0]...$0[1] : nil }
        if let scale = mixerStateScale {
            guard let saved = s.mixerStateScale, saved.count == scale.count else {
                throw StateArchiveError("checkpoint \(archive.path): it has no scale of the mixer's states of width \(scale.count), which this QMIX agent needs; resume it with the configuration it was written with")
            }
            mixerStateScale = saved
        }
    }
}

extension PPOAgent: Checkpointable {
    struct State: Codable {
        var rng: RandomGenerator; var observationStatistics: RunningMeanStd; var returnStatistics: RunningMeanStd
        /// A central critic's global-state statistics (absent in checkpoints of single-agent runs and earlier versions).
        var stateStatistics: RunningMeanStd?
    }

    /// Weights, optimiser, random generator and the normalisers' statistics (in full precision).
    public func save(to archive: StateArchive, prefix: String) throws {
        saveParameters(namedParameters(), to: archive, prefix: prefix + "parameters.")
        try optimizer.save(to: archive, prefix: prefix + "optimizer.")
        archive.put(prefix + "state", value: State(rng: rng, observationStatistics: observationStatistics, returnStatistics: returnStatistics,
                                                   stateStatistics: hasCentralCritic ? stateStatistics : nil))
    }

    public func restore(from archive: StateArchiveReader, prefix: String) throws {
        let s = try archive.value(prefix + "state", as: State.self)
        guard s.observationStatistics.mean.count == observationStatistics.mean.count else {
            throw StateArchiveError("checkpoint \(archive.path): observation statistics of width \(s.observationStatistics.mean.count), this run has \(observationStatistics.mean.count)")
        }
        try restoreParameters(namedParameters(), from: archive, prefix: prefix + "parameters.")
        try optimizer.restore(from: archive, prefix: prefix + "optimizer.")
        if hasCentralCritic {
            guard let saved = s.stateStatistics, saved.mean.count == globalStateWidth else {
                throw StateArchiveError("checkpoint \(archive.path): no global-state statistics of width \(globalStateWidth) for this run's central critic; resume it with the configuration it was saved with")
            }
            stateStatistics = saved
        }
        rng = s.rng; observationStatistics = s.observationStatistics; returnStatistics = s.returnStatistics
    }
}
