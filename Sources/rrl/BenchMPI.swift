import ArgumentParser
import Foundation
import RecurrentRL

/// What data-parallel training pays to talk: under `mpirun -np N`, the latency and bandwidth of a
/// message between two ranks (an episode's size), a broadcast of the weights, a sum of the gradients
/// over all ranks, against the compute of one PPO gradient step and one rollout; from them the
/// fraction of an update spent communicating. Rank 0 prints.
struct BenchMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi",
        abstract: "Under mpirun -np N (a build with the MPI trait): message latency and bandwidth, weight broadcast and gradient sum times, and the PPO step they add to.")
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Option(help: "Seconds spent measuring each case (the median of many repeats is kept).") var seconds: Double = 0.5
    @Option(help: "PPO updates to time (cartpole-position, rl-zoo's RecurrentPPO settings).") var updates: Int = 4

    func validate() throws {
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard updates >= 1 else { throw ValidationError("--updates must be at least 1") }
    }

    /// Median seconds of `body`, repeated for about `seconds` by every rank together (rank 0 decides when to stop).
    static func median(_ world: MPIWorld, seconds: Double, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        let start = MPIWorld.time
        while true {
            let t0 = MPIWorld.time
            body()
            times.append(MPIWorld.time - t0)
            // Every rank goes on while rank 0 says so (one more small broadcast, outside the timed part).
            let more = world.broadcast(Data([times.count < 5 || MPIWorld.time - start < seconds ? 1 : 0]), root: 0)
            if more.first == 0 { break }
        }
        times.sort()
        return times[times.count / 2]
    }

    func run() throws {
        guard MPIWorld.isCompiled else {
            throw ValidationError("rrl bench mpi needs a build with the MPI trait: apt-get install libopenmpi-dev openmpi-bin; swift build -c release --traits MPI; then mpirun -np 2 .build/release/rrl bench mpi")
        }
        let world: MPIWorld
        do { world = try MPIWorld.start() } catch let error as CommunicatorError { throw ValidationError(error.message) }
        defer { MPIWorld.finish() }
        guard world.size >= 2 else { throw ValidationError("run rrl bench mpi under mpirun with two or more ranks (mpirun -np 2 rrl bench mpi)") }
        let root = world.rank == 0
        var result: [String: Any] = ["benchmark": "bench mpi", "ranks": world.size]

        // Point to point, rank 1 to rank 0 and back (a ping-pong: half the round trip is one message).
        var messages: [[String: Double]] = []
        for bytes in [64, 4 << 10, 64 << 10, 1 << 20, 8 << 20] {
            let payload = Data(count: bytes)
            let roundTrip = BenchMPI.median(world, seconds: seconds) {
                if world.rank == 1 {
                    world.send(payload, to: 0, tag: 7)
                    _ = world.receive(from: 0, tag: 8)
                } else if root {
                    _ = world.receive(from: 1, tag: 7)
                    world.send(payload, to: 1, tag: 8)
                }
            }
            messages.append(["bytes": Double(bytes), "one_way_seconds": roundTrip / 2, "megabytes_per_second": Double(bytes) / (roundTrip / 2) / 1e6])
        }
        result["messages"] = messages

        // The default recurrent PPO agent (rl-zoo's settings on cartpole-position): its weights and gradients.
        var c = PPOTrainingConfiguration()
        c.environment = "cartpole-position"
        c.steps = 1 << 30
        c.evaluationInterval = c.steps
        let trainer = try PPOTrainer(configuration: c, ranks: world)
        let weights = trainer.agent.namedParameters().reduce(0) { $0 + $1.parameter.value.count }
        let weightBytes = Data(count: weights * 4)
        let broadcast = BenchMPI.median(world, seconds: seconds) { _ = world.broadcast(weightBytes, root: 0) }
        let gradients = UnsafeMutablePointer<Float>.allocate(capacity: weights)
        gradients.initialize(repeating: 1, count: weights)
        defer { gradients.deallocate() }
        let sum = BenchMPI.median(world, seconds: seconds) { world.sum(gradients, count: weights) }
        result["parameters"] = weights
        result["weight_broadcast_seconds"] = broadcast
        result["gradient_sum_seconds"] = sum

        // Data-parallel PPO: a rollout (collection) and an update (gradient steps, each with one sum).
        var collect = 0.0, update = 0.0, steps = 0
        for _ in 0..<updates {
            let t0 = MPIWorld.time
            try trainer.collect()
            let t1 = MPIWorld.time
            let statistics = trainer.agent.update(trainer.buffer, progressRemaining: 1, diagnostics: false)
            let t2 = MPIWorld.time
            collect += t1 - t0
            update += t2 - t1
            steps += statistics.gradientSteps
        }
        let perGradientStep = update / Double(steps)
        let communicating = sum / perGradientStep
        result["rollout_seconds"] = collect / Double(updates)
        result["update_seconds"] = update / Double(updates)
        result["gradient_step_seconds"] = perGradientStep
        result["gradient_sum_fraction_of_a_gradient_step"] = communicating
        let perRollout = Double(c.ppo.environments * c.ppo.rolloutSteps * world.size)
        result["environment_steps_per_second"] = perRollout / ((collect + update) / Double(updates))
        guard root else { return }
        if json { return try printJSON(result) }
        print("bench mpi: \(world.size) ranks (medians of repeats; wall seconds on MPI's clock)")
        for m in messages {
            print(String(format: "  message of %8.0f bytes: %8.2f µs one way, %8.1f MB/s", m["bytes"]!, m["one_way_seconds"]! * 1e6, m["megabytes_per_second"]!))
        }
        print(String(format: "  recurrent PPO (cartpole-position, %d copies x %d steps per rank): %d parameters", c.ppo.environments, c.ppo.rolloutSteps, weights))
        print(String(format: "  weight broadcast %.1f µs, gradient sum over %d ranks %.1f µs", broadcast * 1e6, world.size, sum * 1e6))
        print(String(format: "  rollout %.1f ms, update %.1f ms (%.2f ms per gradient step, of which the sum is %.1f%%): %.0f environment steps per second over all ranks",
                     collect / Double(updates) * 1e3, update / Double(updates) * 1e3, perGradientStep * 1e3, communicating * 100,
                     result["environment_steps_per_second"] as! Double))
    }
}
