import Foundation
import Tensors

/// Cooperative navigation, as mpe2 1.1.1's `simple_spread_v3` (parallel API): `agents` agents and
/// as many landmarks in the plane; every agent is rewarded (1 - `localRatio`) times minus the sum
/// over landmarks of the distance to the nearest agent, plus `localRatio` times minus one per other
/// agent it overlaps; episodes are truncated after `maxEpisodeSteps` (25) steps.
///
/// Physics as the package's (in Double): an action sets a force of 5 along an axis (discrete: 0
/// none, 1 -x, 2 +x, 3 -y, 4 +y; continuous, in [0, 1]^5 as the package's Box: (a2 - a1, a4 - a3)
/// times 5); agents (radius 0.15) push each other with the soft contact force 100 · k ·
/// log(1 + exp(-(d - d_min) / k)) along the line between them (k = 0.001); then position += velocity
/// · 0.1, velocity · 0.75, velocity += force · 0.1.
///
/// Observation per agent (4 + 2 · landmarks + 4 · (agents - 1) floats): its velocity and position,
/// the landmarks' positions relative to it, the other agents' relative positions, and their
/// (always zero) communication. With `radius` (the partially observable variant, this library's
/// own), landmarks and other agents farther than `radius` read as (0, 0). The global state: every
/// agent's full observation, side by side (the package's `state()`).
public final class Spread: MultiAgentEnvironment {
    public let agents: Int, continuous: Bool, localRatio: Double, maxEpisodeSteps: Int
    /// Partial observability: the distance beyond which landmarks and agents are not seen (nil: all seen).
    public let radius: Double?
    var rng = RandomGenerator(seed: 0)
    public internal(set) var positions: [Double], velocities: [Double], landmarks: [Double]
    public internal(set) var step = 0
    let forces: UnsafeMutablePointer<Double>

    static let agentSize = 0.15, dt = 0.1, damping = 0.25, contactForce = 100.0, contactMargin = 1e-3, sensitivity = 5.0

    public init(agents: Int = 3, continuous: Bool = false, localRatio: Double = 0.5, maxEpisodeSteps: Int = 25, radius: Double? = nil) {
        precondition(agents >= 1 && (0...1).contains(localRatio), "spread needs at least one agent and a local ratio in [0, 1]")
        self.agents = agents
        self.continuous = continuous
        self.localRatio = localRatio
        self.maxEpisodeSteps = maxEpisodeSteps
        self.radius = radius
        positions = [Double](repeating: 0, count: 2 * agents)
        velocities = positions
        landmarks = positions
        forces = .allocate(capacity: 2 * agents)
    }

    deinit { forces.deallocate() }

    public var name: String { "spread" }
    var observationWidth: Int { 4 + 2 * agents + 4 * (agents - 1) }
    public var observationSpace: Space {
        .box(low: [Float](repeating: -.infinity, count: observationWidth), high: [Float](repeating: .infinity, count: observationWidth))
    }
    public var actionSpace: Space { continuous ? .box(low: [Float](repeating: 0, count: 5), high: [Float](repeating: 1, count: 5)) : .discrete(5) }
    public var globalStateWidth: Int { agents * observationWidth }

    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        for i in 0..<(2 * agents) { positions[i] = Double(rng.uniform(-1, 1)) }
        for i in 0..<(2 * agents) { velocities[i] = 0 }
        for i in 0..<(2 * agents) { landmarks[i] = Double(rng.uniform(-1, 1)) }
        step = 0
        observe(observations)
    }

    /// Sets the state directly (for tests and scripted starts).
    public func setState(positions: [Double], velocities: [Double], landmarks: [Double], step: Int = 0) {
        precondition(positions.count == 2 * agents && velocities.count == 2 * agents && landmarks.count == 2 * agents, "state of the wrong size")
        self.positions = positions
        self.velocities = velocities
        self.landmarks = landmarks
        self.step = step
    }

    func distance(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>) -> Double {
        let dx = a[0] - b[0], dy = a[1] - b[1]
        return (dx * dx + dy * dy).squareRoot()
    }

    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
                     active: UnsafeMutablePointer<Bool>) -> MultiAgentStepResult {
        let N = agents
        // Action forces.
        for i in 0..<N {
            var u = (0.0, 0.0)
            if continuous {
                let a = actions + 5 * i
                u = (Double(a[2] - a[1]), Double(a[4] - a[3]))  // float32 differences, as the package computes them
            } else {
                switch Int(actions[i]) {
                case 1: u.0 = -1
                case 2: u.0 = 1
                case 3: u.1 = -1
                case 4: u.1 = 1
                default: break
                }
            }
            forces[2 * i] = u.0 * Spread.sensitivity
            forces[2 * i + 1] = u.1 * Spread.sensitivity
        }
        // Contact forces between agents (landmarks do not collide).
        positions.withUnsafeBufferPointer { p in
            for a in 0..<N {
                for b in (a + 1)..<max(N, a + 1) {
                    let dx = p[2 * a] - p[2 * b], dy = p[2 * a + 1] - p[2 * b + 1]
                    let d = (dx * dx + dy * dy).squareRoot()
                    let k = Spread.contactMargin
                    let penetration = logAddExp(0, -(d - 2 * Spread.agentSize) / k) * k
                    let fx = Spread.contactForce * dx / d * penetration, fy = Spread.contactForce * dy / d * penetration
                    forces[2 * a] = fx + forces[2 * a]
                    forces[2 * a + 1] = fy + forces[2 * a + 1]
                    forces[2 * b] = -fx + forces[2 * b]
                    forces[2 * b + 1] = -fy + forces[2 * b + 1]
                }
            }
        }
        // Integration.
        for j in 0..<(2 * N) {
            positions[j] += velocities[j] * Spread.dt
            velocities[j] = velocities[j] * (1 - Spread.damping)
            velocities[j] += (forces[j] / 1.0) * Spread.dt
        }
        step += 1
        // Rewards: the global one (minus the sum over landmarks of the nearest agent's distance) and each agent's collisions.
        var global = 0.0
        positions.withUnsafeBufferPointer { p in
            landmarks.withUnsafeBufferPointer { l in
                for m in 0..<N {
                    var nearest = Double.infinity
                    for a in 0..<N { nearest = min(nearest, distance(p.baseAddress! + 2 * a, l.baseAddress! + 2 * m)) }
                    global -= nearest
                }
                for a in 0..<N {
                    var own = 0.0
                    for b in 0..<N where b != a && distance(p.baseAddress! + 2 * a, p.baseAddress! + 2 * b) < 2 * Spread.agentSize { own -= 1 }
                    rewards[a] = Float(global * (1 - localRatio) + own * localRatio)
                    active[a] = true
                }
            }
        }
        observe(observations)
        return MultiAgentStepResult(terminated: false, truncated: step >= maxEpisodeSteps)
    }

    /// log(exp(x) + exp(y)), as numpy's logaddexp.
    @inline(__always) func logAddExp(_ x: Double, _ y: Double) -> Double {
        let m = max(x, y)
        return m + log1p(exp(-abs(x - y)))
    }

    func observe(_ observations: UnsafeMutablePointer<Float>) { observe(observations, sight: radius) }

    /// Every agent's observation, seeing landmarks and agents up to `sight` (nil: all).
    func observe(_ observations: UnsafeMutablePointer<Float>, sight: Double?) {
        let N = agents, w = observationWidth
        for i in 0..<N {
            let o = observations + i * w
            let px = positions[2 * i], py = positions[2 * i + 1]
            func relative(_ x: Double, _ y: Double, into p: UnsafeMutablePointer<Float>) {
                let dx = x - px, dy = y - py
                if let sight, (dx * dx + dy * dy).squareRoot() > sight {
                    p[0] = 0; p[1] = 0
                } else {
                    p[0] = Float(dx); p[1] = Float(dy)
                }
            }
            o[0] = Float(velocities[2 * i]); o[1] = Float(velocities[2 * i + 1]); o[2] = Float(px); o[3] = Float(py)
            for m in 0..<N { relative(landmarks[2 * m], landmarks[2 * m + 1], into: o + 4 + 2 * m) }
            var slot = 0
            for j in 0..<N where j != i {
                relative(positions[2 * j], positions[2 * j + 1], into: o + 4 + 2 * N + 2 * slot)
                slot += 1
            }
            for k in 0..<(2 * (N - 1)) { o[4 + 2 * N + 2 * (N - 1) + k] = 0 }
        }
    }

    public func globalState(into state: UnsafeMutablePointer<Float>) {
        // Every agent's observation with full sight, as the package's state().
        observe(state, sight: nil)
    }
}
