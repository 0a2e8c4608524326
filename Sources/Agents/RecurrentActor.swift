import Foundation
import NeuralNetworks
import Tensors

/// An agent's acting side, as evaluation and probes need it: build a step's encoder input, then act
/// on a batch of episodes run side by side, carrying each one's recurrent state.
public protocol RecurrentActor: AnyObject {
    /// Floats of one step's encoder input.
    var contextWidth: Int { get }
    /// Floats of the actor's recurrent state per episode (0 for an MLP).
    var actorStateWidth: Int { get }
    /// Floats of a stored action (1 for a discrete action index).
    var actionWidth: Int { get }
    /// Prepares a raw observation in place (observation normalisation; nothing for most agents).
    func prepare(observation: UnsafeMutablePointer<Float>)
    /// The reward as the agent's context sees it (normalised or not).
    func prepare(reward: Float) -> Float
    /// Writes one step's encoder input for agent `agent` (0 for single-agent actors) from a prepared
    /// observation and the previous (prepared) observation, action and reward (nil: the episode's first step).
    func writeContext(observation: UnsafePointer<Float>, lastObservation: UnsafePointer<Float>?, lastAction: UnsafePointer<Float>?,
                      lastReward: Float, agent: Int, into out: UnsafeMutablePointer<Float>)
    /// Agents acting per episode step (rows of `act` are agent-inner).
    var agents: Int { get }
    /// Actions for `context.shape[1]` episodes (`context` is `[1, episodes, contextWidth]`), advancing
    /// `state`; `actionMasks` (`[episodes, n]`, discrete actions) rules out the actions marked 0.
    func act(context: Tensor, state: Tensor, deterministic: Bool, actionMasks: UnsafePointer<Float>?, actions: UnsafeMutablePointer<Float>)
}

extension RecurrentActor {
    /// Actions with every action available.
    public func act(context: Tensor, state: Tensor, deterministic: Bool, actions: UnsafeMutablePointer<Float>) {
        act(context: context, state: state, deterministic: deterministic, actionMasks: nil, actions: actions)
    }

    /// A single-agent step's encoder input (for a context without the previous observation).
    public func writeContext(observation: UnsafePointer<Float>, lastAction: UnsafePointer<Float>?, lastReward: Float,
                             into out: UnsafeMutablePointer<Float>) {
        writeContext(observation: observation, lastObservation: nil, lastAction: lastAction, lastReward: lastReward, agent: 0, into: out)
    }

    /// Agent `agent`'s step encoder input (for a context without the previous observation).
    public func writeContext(observation: UnsafePointer<Float>, lastAction: UnsafePointer<Float>?, lastReward: Float, agent: Int,
                             into out: UnsafeMutablePointer<Float>) {
        writeContext(observation: observation, lastObservation: nil, lastAction: lastAction, lastReward: lastReward, agent: agent, into: out)
    }
}
