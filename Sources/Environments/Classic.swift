import Foundation
import Tensors

/// Gymnasium's Pendulum-v1, exactly: θ and θ̇ evolve with g = 10, m = l = 1, dt = 0.05, torque
/// clipped to [-2, 2], speed to [-8, 8]; reward -(θ² + 0.1 θ̇² + 0.001 u²) with θ normalised to
/// [-π, π); starts at θ ~ U(-π, π), θ̇ ~ U(-1, 1); truncated after 200 steps.
///
/// Partially observable variants show part of `[cos θ, sin θ, θ̇]`: `.position` shows
/// `[cos θ, sin θ]` (velocity must be inferred), `.velocity` shows `[θ̇]` only. With hidden
/// dynamics (`pendulum-random-mass`) the mass and gravity are drawn anew each episode from their
/// ranges and never shown: the agent must infer them from how the pendulum moves.
public final class Pendulum: Environment {
    /// What the observation shows: everything, positions only, or velocities only (the partially observable variants).
    public enum View: String, CaseIterable, Sendable { case full, position, velocity }

    public let view: View
    public let maxEpisodeSteps: Int
    /// Ranges the mass and gravity are drawn from at each reset (nil: Pendulum-v1's m = 1, g = 10).
    public let massRange: ClosedRange<Double>?, gravityRange: ClosedRange<Double>?
    /// The current episode's mass and gravity.
    public internal(set) var mass = Pendulum.m, gravity = Pendulum.g
    public internal(set) var theta = 0.0, thetaDot = 0.0
    public internal(set) var elapsedSteps = 0
    public var rng = RandomGenerator(seed: 0)

    public static let maxSpeed = 8.0, maxTorque = 2.0, dt = 0.05, g = 10.0, m = 1.0, l = 1.0

    public init(view: View = .full, maxEpisodeSteps: Int = 200, massRange: ClosedRange<Double>? = nil, gravityRange: ClosedRange<Double>? = nil) {
        self.view = view
        self.maxEpisodeSteps = maxEpisodeSteps
        self.massRange = massRange
        self.gravityRange = gravityRange
    }

    public var name: String {
        if massRange != nil || gravityRange != nil { return "pendulum-random-mass" }
        return view == .full ? "pendulum" : "pendulum-\(view.rawValue)"
    }

    public var observationSpace: Space {
        switch view {
        case .full: return .box(low: [-1, -1, -8], high: [1, 1, 8])
        case .position: return .box(low: [-1, -1], high: [1, 1])
        case .velocity: return .box(low: [-8], high: [8])
        }
    }

    public var actionSpace: Space { .box(low: [-2], high: [2]) }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        theta = Double.pi * (2 * rng.uniformDouble() - 1)
        thetaDot = 2 * rng.uniformDouble() - 1
        if let r = massRange { mass = r.lowerBound + (r.upperBound - r.lowerBound) * rng.uniformDouble() }
        if let r = gravityRange { gravity = r.lowerBound + (r.upperBound - r.lowerBound) * rng.uniformDouble() }
        elapsedSteps = 0
        observe(observation)
    }

    /// Sets the physical state directly (for tests against reference trajectories).
    public func setState(theta: Double, thetaDot: Double) {
        self.theta = theta
        self.thetaDot = thetaDot
        elapsedSteps = 0
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        let u = min(max(Double(action[0]), -Self.maxTorque), Self.maxTorque)
        let normalized = (theta + Double.pi).truncatingRemainder(dividingBy: 2 * Double.pi)
        let angle = (normalized < 0 ? normalized + 2 * Double.pi : normalized) - Double.pi
        let cost = angle * angle + 0.1 * thetaDot * thetaDot + 0.001 * u * u
        var newThetaDot = thetaDot + (3 * gravity / (2 * Self.l) * sin(theta) + 3.0 / (mass * Self.l * Self.l) * u) * Self.dt
        newThetaDot = min(max(newThetaDot, -Self.maxSpeed), Self.maxSpeed)
        theta += newThetaDot * Self.dt
        thetaDot = newThetaDot
        elapsedSteps += 1
        observe(observation)
        return StepResult(reward: Float(-cost), terminated: false, truncated: elapsedSteps >= maxEpisodeSteps)
    }

    private func observe(_ o: UnsafeMutablePointer<Float>) {
        switch view {
        case .full: o[0] = Float(cos(theta)); o[1] = Float(sin(theta)); o[2] = Float(thetaDot)
        case .position: o[0] = Float(cos(theta)); o[1] = Float(sin(theta))
        case .velocity: o[0] = Float(thetaDot)
        }
    }
}

/// Gymnasium's CartPole-v1, exactly: Euler integration with τ = 0.02, force ±10, reward 1 per
/// step; terminated when |x| > 2.4 or |θ| > 12°; truncated after 500 steps; starts with every
/// state variable ~ U(-0.05, 0.05). Actions: 0 pushes left, 1 pushes right.
///
/// Partially observable variants: `.position` shows `[x, θ]`, `.velocity` shows `[ẋ, θ̇]`.
public final class CartPole: Environment {
    /// What the observation shows: everything, positions only, or velocities only (the partially observable variants).
    public enum View: String, CaseIterable, Sendable { case full, position, velocity }

    public let view: View
    public let maxEpisodeSteps: Int
    /// x, ẋ, θ, θ̇.
    public internal(set) var state: (Double, Double, Double, Double) = (0, 0, 0, 0)
    public internal(set) var elapsedSteps = 0
    public var rng = RandomGenerator(seed: 0)

    public static let gravity = 9.8, massCart = 1.0, massPole = 0.1, length = 0.5, forceMagnitude = 10.0, tau = 0.02
    public static let thetaThreshold = 12 * 2 * Double.pi / 360, xThreshold = 2.4

    public init(view: View = .full, maxEpisodeSteps: Int = 500) {
        self.view = view
        self.maxEpisodeSteps = maxEpisodeSteps
    }

    public var name: String { view == .full ? "cartpole" : "cartpole-\(view.rawValue)" }

    public var observationSpace: Space {
        let inf = Float.infinity
        let x = Float(Self.xThreshold * 2), th = Float(Self.thetaThreshold * 2)
        switch view {
        case .full: return .box(low: [-x, -inf, -th, -inf], high: [x, inf, th, inf])
        case .position: return .box(low: [-x, -th], high: [x, th])
        case .velocity: return .box(low: [-inf, -inf], high: [inf, inf])
        }
    }

    public var actionSpace: Space { .discrete(2) }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        func draw() -> Double { 0.1 * rng.uniformDouble() - 0.05 }
        state = (draw(), draw(), draw(), draw())
        elapsedSteps = 0
        observe(observation)
    }

    /// Sets the physical state directly (for tests against reference trajectories).
    public func setState(_ s: (Double, Double, Double, Double)) {
        state = s
        elapsedSteps = 0
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        var (x, xDot, theta, thetaDot) = state
        let force = action[0] >= 0.5 ? Self.forceMagnitude : -Self.forceMagnitude
        let totalMass = Self.massCart + Self.massPole, poleMassLength = Self.massPole * Self.length
        let cosTheta = cos(theta), sinTheta = sin(theta)
        let temp = (force + poleMassLength * thetaDot * thetaDot * sinTheta) / totalMass
        let thetaAcc = (Self.gravity * sinTheta - cosTheta * temp)
            / (Self.length * (4.0 / 3.0 - Self.massPole * cosTheta * cosTheta / totalMass))
        let xAcc = temp - poleMassLength * thetaAcc * cosTheta / totalMass
        x += Self.tau * xDot
        xDot += Self.tau * xAcc
        theta += Self.tau * thetaDot
        thetaDot += Self.tau * thetaAcc
        state = (x, xDot, theta, thetaDot)
        elapsedSteps += 1
        observe(observation)
        let terminated = x < -Self.xThreshold || x > Self.xThreshold || theta < -Self.thetaThreshold || theta > Self.thetaThreshold
        return StepResult(reward: 1, terminated: terminated, truncated: !terminated && elapsedSteps >= maxEpisodeSteps)
    }

    private func observe(_ o: UnsafeMutablePointer<Float>) {
        let (x, xDot, theta, thetaDot) = state
        switch view {
        case .full: o[0] = Float(x); o[1] = Float(xDot); o[2] = Float(theta); o[3] = Float(thetaDot)
        case .position: o[0] = Float(x); o[1] = Float(theta)
        case .velocity: o[0] = Float(xDot); o[1] = Float(thetaDot)
        }
    }
}
