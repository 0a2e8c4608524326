import Foundation

/// Where an off-policy trainer puts the steps it collects: its own replay, or (an actor rank of
/// actor-learner training) a `StepRecorder` whose steps go to the learner's replay.
public protocol StepStore: AnyObject {
    /// Whether copy `c`'s episode has stored steps and has not ended.
    func isEpisodeOpen(copy c: Int) -> Bool
    /// Stores one step of copy `c` (the arguments of `EpisodeReplay.add`).
    func add(copy c: Int, observations observation: UnsafePointer<Float>, actions action: UnsafePointer<Float>,
             rewards reward: UnsafePointer<Float>, nextObservations nextObservation: UnsafePointer<Float>,
             terminated: Bool, truncated: Bool, actorStates actorState: UnsafePointer<Float>?,
             criticState: UnsafePointer<Float>?, globalState: UnsafePointer<Float>?,
             nextGlobalState: UnsafePointer<Float>?, actionMask: UnsafePointer<Float>?,
             nextActionMask: UnsafePointer<Float>?, active: UnsafePointer<Float>?,
             finished: UnsafePointer<Float>?)
}

extension EpisodeReplay: StepStore {}

/// Steps recorded in arrival order as flat records (`recordFloats` floats each: the copy, then every
/// column of the layout), to be sent elsewhere and added to a replay there in the same order:
/// what an actor rank sends its learner. The records are exactly what `EpisodeReplay.add` stores.
public final class StepRecorder: StepStore {
    public let layout: ReplayLayout
    /// The recorded steps, `steps x recordFloats`.
    public private(set) var records: [Float] = []
    var open: [Bool]

    public init(layout: ReplayLayout, copies: Int) {
        self.layout = layout
        open = Array(repeating: false, count: copies)
    }

    /// Floats of one step's record.
    public var recordFloats: Int { StepRecorder.recordFloats(layout) }

    /// Floats of one step's record for `layout`.
    public static func recordFloats(_ l: ReplayLayout) -> Int {
        1 + 2 * l.observationFloats + l.actionFloats + l.agents + 2 + l.actorStateFloats + l.criticStateWidth
            + 2 * l.globalStateWidth + 2 * l.actionMaskFloats + 2 * l.activityFloats
    }

    public var steps: Int { records.count / recordFloats }

    public func isEpisodeOpen(copy c: Int) -> Bool { open[c] }

    /// Forgets the records (after they were sent); the copies' episodes stay as they are.
    public func clear() { records.removeAll(keepingCapacity: true) }

    public func add(copy c: Int, observations observation: UnsafePointer<Float>, actions action: UnsafePointer<Float>,
                    rewards reward: UnsafePointer<Float>, nextObservations nextObservation: UnsafePointer<Float>,
                    terminated: Bool, truncated: Bool, actorStates actorState: UnsafePointer<Float>?,
                    criticState: UnsafePointer<Float>?, globalState: UnsafePointer<Float>?,
                    nextGlobalState: UnsafePointer<Float>?, actionMask: UnsafePointer<Float>?,
                    nextActionMask: UnsafePointer<Float>?, active: UnsafePointer<Float>?,
                    finished: UnsafePointer<Float>?) {
        let l = layout
        func put(_ p: UnsafePointer<Float>?, _ n: Int, default value: Float = 0) {
            guard n > 0 else { return }
            if let p { records.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) } else { records.append(contentsOf: repeatElement(value, count: n)) }
        }
        records.append(Float(c))
        put(observation, l.observationFloats)
        put(nextObservation, l.observationFloats)
        put(action, l.actionFloats)
        put(reward, l.agents)
        records.append(terminated ? 1 : 0)
        records.append(truncated ? 1 : 0)
        put(actorState, l.actorStateFloats)
        put(criticState, l.criticStateWidth)
        put(globalState, l.globalStateWidth)
        put(nextGlobalState, l.globalStateWidth)
        put(actionMask, l.actionMaskFloats)
        put(nextActionMask, l.actionMaskFloats)
        put(active, l.activityFloats, default: 1)
        put(finished, l.activityFloats)
        open[c] = !(terminated || truncated)
    }

    /// Adds `count` records (as `records` holds them) to `replay`, the steps of copy c to its copy
    /// `copyOffset + c`, in order.
    public static func add(_ records: UnsafePointer<Float>, count: Int, layout l: ReplayLayout, to replay: EpisodeReplay, copyOffset: Int) {
        let width = recordFloats(l)
        for k in 0..<count {
            var at = records + k * width
            func take(_ n: Int) -> UnsafePointer<Float>? {
                guard n > 0 else { return nil }
                defer { at += n }
                return at
            }
            let c = Int(at[0])
            at += 1
            let observation = take(l.observationFloats)!, next = take(l.observationFloats)!, action = take(l.actionFloats)!
            let reward = take(l.agents)!
            let terminated = at[0] != 0, truncated = at[1] != 0
            at += 2
            let actorState = take(l.actorStateFloats), criticState = take(l.criticStateWidth)
            let globalState = take(l.globalStateWidth), nextGlobalState = take(l.globalStateWidth)
            let mask = take(l.actionMaskFloats), nextMask = take(l.actionMaskFloats)
            let active = take(l.activityFloats), finished = take(l.activityFloats)
            replay.add(copy: copyOffset + c, observations: observation, actions: action, rewards: reward, nextObservations: next,
                       terminated: terminated, truncated: truncated, actorStates: actorState, criticState: criticState,
                       globalState: globalState, nextGlobalState: nextGlobalState, actionMask: mask, nextActionMask: nextMask,
                       active: active, finished: finished)
        }
    }
}
