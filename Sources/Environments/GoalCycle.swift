import Tensors

/// A gridworld after marlgrid's goal-cycle task. An agent moves in a `size` x `size` room (walls
/// around it) holding `goals` goal tiles that all look alike; they must be visited in a hidden cyclic
/// order, drawn anew each episode with the goal positions and the agent's start. Stepping onto the
/// right next goal earns +1 and moves the target to the following goal; stepping onto a wrong one
/// costs `penalty`. Episodes are truncated after `maxEpisodeSteps`. With `obstacles`, that many wall
/// tiles stand inside the room too, drawn each episode so that every goal stays reachable.
///
/// The agent sees a `view` x `view` window ahead of it, egocentric (rotated so that it faces up,
/// standing in the bottom row's middle), each cell one-hot as empty, wall or goal: 3 x view² floats.
/// Actions: 0 turn left, 1 turn right, 2 move forward. Which goal comes next can only be learned by
/// remembering which goals paid and which cost: a memoryless agent cannot do better on average than
/// visiting goals at random (1 in `goals` chance of the right one).
public final class GoalCycle: Environment {
    public let size: Int
    public let goalCount: Int
    public let view: Int
    public let penalty: Float
    public let maxEpisodeSteps: Int
    /// Wall tiles inside the room.
    public let obstacleCount: Int
    public var rng = RandomGenerator(seed: 0)
    /// Goal positions (x, y) in cycle order; `next` indexes the goal to reach next.
    public internal(set) var goals: [(x: Int, y: Int)] = []
    /// Wall tiles inside the room, as y * size + x.
    public internal(set) var obstacles: Set<Int> = []
    public internal(set) var next = 0
    public internal(set) var x = 0, y = 0
    /// 0 up (y - 1), 1 right, 2 down, 3 left.
    public internal(set) var direction = 0
    /// The cell offset of one step forward, by direction.
    public static let forward = [(x: 0, y: -1), (x: 1, y: 0), (x: 0, y: 1), (x: -1, y: 0)]
    var t = 0

    public init(size: Int = 5, goals: Int = 3, view: Int = 5, penalty: Float = 0.25, maxEpisodeSteps: Int = 200, obstacles: Int = 0) {
        precondition(size >= 3 && goals >= 2 && obstacles >= 0 && goals + obstacles < size * size - 1 && view >= 1 && view % 2 == 1,
                     "goal-cycle: size >= 3, 2 <= goals, goals + obstacles < size² - 1, odd view")
        self.size = size
        goalCount = goals
        obstacleCount = obstacles
        self.view = view
        self.penalty = penalty
        self.maxEpisodeSteps = maxEpisodeSteps
    }

    public var name: String { "goal-cycle" }
    public var observationSpace: Space {
        .box(low: [Float](repeating: 0, count: 3 * view * view), high: [Float](repeating: 1, count: 3 * view * view))
    }
    public var actionSpace: Space { .discrete(3) }

    /// 0 empty, 1 wall, 2 goal for the cell (x, y) (outside the room: wall).
    public func cell(_ cx: Int, _ cy: Int) -> Int {
        if cx < 0 || cy < 0 || cx >= size || cy >= size || obstacles.contains(cy * size + cx) { return 1 }
        return goals.contains { $0.x == cx && $0.y == cy } ? 2 : 0
    }

    func observe(_ observation: UnsafeMutablePointer<Float>) {
        let v = view, half = v / 2
        for i in 0..<(3 * v * v) { observation[i] = 0 }
        // Row r (0 = farthest ahead) and column c (0 = leftmost) of the egocentric window.
        for r in 0..<v {
            for c in 0..<v {
                let ahead = v - 1 - r, side = c - half
                var dx = 0, dy = 0
                switch direction {
                case 0: dx = side; dy = -ahead
                case 1: dx = ahead; dy = side
                case 2: dx = -side; dy = ahead
                default: dx = -ahead; dy = -side
                }
                observation[(r * v + c) * 3 + cell(x + dx, y + dy)] = 1
            }
        }
    }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        var cells = Array(0..<(size * size))
        repeat {
            for i in stride(from: cells.count - 1, to: 0, by: -1) { cells.swapAt(i, rng.integer(below: i + 1)) }
            goals = cells.prefix(goalCount).map { (x: $0 % size, y: $0 / size) }
            x = cells[goalCount] % size
            y = cells[goalCount] / size
            obstacles = Set(cells[(goalCount + 1)..<(goalCount + 1 + obstacleCount)])
        } while obstacleCount > 0 && !goalsReachable()
        direction = rng.integer(below: 4)
        next = 0
        t = 0
        observe(observation)
    }

    /// Whether every goal can be reached from the agent's cell around the obstacles.
    public func goalsReachable() -> Bool {
        var seen: Set<Int> = [y * size + x], frontier = [y * size + x]
        while let c = frontier.popLast() {
            for (dx, dy) in GoalCycle.forward {
                let nx = c % size + dx, ny = c / size + dy
                guard nx >= 0 && ny >= 0 && nx < size && ny < size, !obstacles.contains(ny * size + nx), seen.insert(ny * size + nx).inserted else { continue }
                frontier.append(ny * size + nx)
            }
        }
        return goals.allSatisfy { seen.contains($0.y * size + $0.x) }
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        var reward: Float = 0
        switch Int(action[0]) {
        case 0: direction = (direction + 3) % 4
        case 1: direction = (direction + 1) % 4
        default:
            let (dx, dy) = GoalCycle.forward[direction]
            let nx = x + dx, ny = y + dy
            if nx >= 0 && ny >= 0 && nx < size && ny < size && !obstacles.contains(ny * size + nx) {
                x = nx
                y = ny
                if let g = goals.firstIndex(where: { $0.x == nx && $0.y == ny }) {
                    if g == next {
                        reward = 1
                        next = (next + 1) % goalCount
                    } else {
                        reward = -penalty
                    }
                }
            }
        }
        t += 1
        observe(observation)
        return StepResult(reward: reward, terminated: false, truncated: t >= maxEpisodeSteps)
    }

    /// A text picture of the room: '#' walls, digits the goals in cycle order ('*' marks the next
    /// one), the agent as an arrow.
    public func render() -> String {
        var lines: [String] = [String(repeating: "#", count: size + 2)]
        for cy in 0..<size {
            var line = "#"
            for cx in 0..<size {
                if cx == x && cy == y {
                    line += ["^", ">", "v", "<"][direction]
                } else if let g = goals.firstIndex(where: { $0.x == cx && $0.y == cy }) {
                    line += g == next ? "*" : String(g)
                } else if obstacles.contains(cy * size + cx) {
                    line += "#"
                } else {
                    line += "."
                }
            }
            lines.append(line + "#")
        }
        lines.append(String(repeating: "#", count: size + 2))
        return lines.joined(separator: "\n")
    }
}

extension GoalCycle: TextRendering {
    public func describe(action: UnsafePointer<Float>) -> String {
        ["turn left", "turn right", "forward"][min(max(Int(action[0]), 0), 2)]
    }
}
