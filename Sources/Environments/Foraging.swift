import Tensors

/// Level-based foraging, as `lbforaging` 2.0.0's `ForagingEnv` (the `Foraging-8x8-2p-2f-v3`
/// family): `players` agents with levels on a `size` x `size` field with `foods` foods. Actions: 0
/// none, 1 north, 2 south, 3 west, 4 east, 5 load; an invalid action (into the border or a food,
/// or loading with no food adjacent) becomes none. Players that move to the same cell all stay.
/// A food is loaded when the levels of the players loading next to it add up to at least its
/// level; each of them gets level · food / (sum of their levels · sum of all food levels spawned),
/// so a team that loads every food earns 1 in all. A failed load costs `penalty` each.
///
/// Observation per agent, as the package's vector observation: for each food slot (row, column,
/// level), then for each player, itself first (row, column, level), in coordinates of the agent's
/// view (`sight` cells around it, clipped at the field's edge); what it cannot see is (-1, -1, 0).
/// The global state: every food's (row, column, level) and every player's, in field coordinates.
/// Action masks: the valid actions.
///
/// Differences from the package, on purpose: the episode ends `terminated` when every food is
/// loaded and `truncated` at the step limit (the package reports both as done); loading players
/// are taken in player order (the package pops them from a set, whose order is arbitrary); and
/// the random spawn draws from this library's generator, with the package's rules (players
/// anywhere free; foods never on the border, no food in the 3 x 3 block around another or two
/// cells away in line; with `coop` every food's level is the sum of the players' levels).
public final class Foraging: MultiAgentEnvironment {
    public let size: Int, players: Int, foods: Int, sight: Int, coop: Bool, penalty: Float
    public let minPlayerLevel: Int, maxPlayerLevel: Int
    public let maxEpisodeSteps: Int
    var rng = RandomGenerator(seed: 0)
    /// Food level per cell (row-major), 0 where there is none.
    public internal(set) var field: [Int]
    public internal(set) var positions: [(row: Int, column: Int)]
    public internal(set) var levels: [Int]
    public internal(set) var step = 0
    /// Sum of the food levels spawned this episode (the reward's normaliser).
    public internal(set) var foodSpawned: Float = 0
    var valid: [[Bool]]
    /// Workspaces of `step` (kept, so that a step allocates nothing): each player's action, target
    /// cell and loading flag, and a loading group.
    var chosen: [Int], targets: [(row: Int, column: Int)], loading: [Bool], group: [Int]

    public init(size: Int = 8, players: Int = 2, foods: Int = 2, sight: Int? = nil, coop: Bool = false, penalty: Float = 0,
                minPlayerLevel: Int = 1, maxPlayerLevel: Int = 2, maxEpisodeSteps: Int = 50) {
        precondition(size >= 3 && players >= 1 && foods >= 1 && minPlayerLevel >= 1 && maxPlayerLevel >= minPlayerLevel,
                     "foraging needs a field of at least 3 x 3, a player, a food and levels from 1")
        self.size = size
        self.players = players
        self.foods = foods
        self.sight = sight ?? size
        self.coop = coop
        self.penalty = penalty
        self.minPlayerLevel = minPlayerLevel
        self.maxPlayerLevel = maxPlayerLevel
        self.maxEpisodeSteps = maxEpisodeSteps
        field = [Int](repeating: 0, count: size * size)
        positions = [(row: Int, column: Int)](repeating: (0, 0), count: players)
        levels = [Int](repeating: minPlayerLevel, count: players)
        valid = [[Bool]](repeating: [Bool](repeating: true, count: 6), count: players)
        chosen = [Int](repeating: 0, count: players)
        targets = positions
        loading = [Bool](repeating: false, count: players)
        group = [Int](repeating: 0, count: players)
    }

    public var name: String { "foraging" }
    public var agents: Int { players }
    public var actionSpace: Space { .discrete(6) }
    public var hasActionMasks: Bool { true }
    public var globalStateWidth: Int { 3 * (foods + players) }
    /// The highest food level: the sum of the three lowest maximal player levels (the package's bound).
    var maxFoodLevel: Int { maxPlayerLevel * min(players, 3) }
    public var observationSpace: Space {
        let low = [Float](repeating: -1, count: 3 * (foods + players)).enumerated().map { $0.offset % 3 == 2 ? Float(0) : $0.element }
        var high: [Float] = []
        for _ in 0..<foods { high += [Float(size - 1), Float(size - 1), Float(maxFoodLevel)] }
        for _ in 0..<players { high += [Float(size - 1), Float(size - 1), Float(maxPlayerLevel)] }
        return .box(low: low, high: high)
    }

    @inline(__always) func food(_ r: Int, _ c: Int) -> Int { field[r * size + c] }

    // MARK: Reset

    public func reset(seed: UInt64?, observations: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        for i in 0..<field.count { field[i] = 0 }
        for i in 0..<players { positions[i] = (-1, -1) }
        // Players: levels in a random order of the players, each on a random free cell.
        for i in 0..<players {
            for _ in 0..<1000 {
                let r = rng.integer(below: size), c = rng.integer(below: size)
                if isEmpty(r, c) {
                    positions[i] = (r, c)
                    break
                }
            }
            levels[i] = minPlayerLevel + rng.integer(below: maxPlayerLevel - minPlayerLevel + 1)
        }
        // Foods: inside the border, apart from each other, on free cells.
        // The sum of the three lowest player levels (the package's sum(sorted(levels)[:3])), picked one
        // by one without sorting a copy (`loading` marks the picked).
        var top = 0
        for j in 0..<players { loading[j] = false }
        for _ in 0..<min(3, players) {
            var lowest = -1
            for j in 0..<players where !loading[j] && (lowest < 0 || levels[j] < levels[lowest]) { lowest = j }
            loading[lowest] = true
            top += levels[lowest]
        }
        for j in 0..<players { loading[j] = false }
        var placed = 0, attempts = 0
        while placed < foods && attempts < 1000 {
            attempts += 1
            let r = 1 + rng.integer(below: size - 2), c = 1 + rng.integer(below: size - 2)
            if hasFoodNear(r, c) || !isEmpty(r, c) { continue }
            field[r * size + c] = coop ? top : 1 + rng.integer(below: top)
            placed += 1
        }
        foodSpawned = Float(field.reduce(0, +))
        step = 0
        updateValidActions()
        observe(observations)
    }

    func isEmpty(_ r: Int, _ c: Int) -> Bool {
        food(r, c) == 0 && !positions.contains { $0.row == r && $0.column == c }
    }

    /// A food in the 3 x 3 block around (r, c), or two cells away in its row or column (the package's spacing rule).
    func hasFoodNear(_ r: Int, _ c: Int) -> Bool {
        for i in max(r - 1, 0)...min(r + 1, size - 1) { for j in max(c - 1, 0)...min(c + 1, size - 1) where food(i, j) > 0 { return true } }
        for i in max(r - 2, 0)...min(r + 2, size - 1) where food(i, c) > 0 { return true }
        for j in max(c - 2, 0)...min(c + 2, size - 1) where food(r, j) > 0 { return true }
        return false
    }

    /// Sets the state directly (for tests and scripted starts, as the package's tests do).
    public func setState(field: [Int], positions: [(row: Int, column: Int)], levels: [Int], step: Int) {
        precondition(field.count == size * size && positions.count == players && levels.count == players, "state of the wrong size")
        self.field = field
        self.positions = positions
        self.levels = levels
        self.step = step
        foodSpawned = Float(field.reduce(0, +))
        updateValidActions()
    }

    // MARK: Step

    func updateValidActions() {
        for i in 0..<players {
            let (r, c) = positions[i]
            valid[i][0] = true
            valid[i][1] = r > 0 && food(r - 1, c) == 0
            valid[i][2] = r < size - 1 && food(r + 1, c) == 0
            valid[i][3] = c > 0 && food(r, c - 1) == 0
            valid[i][4] = c < size - 1 && food(r, c + 1) == 0
            valid[i][5] = adjacentFood(r, c) > 0
        }
    }

    /// The package's sum over the four neighbours (clamped at the edge, so a cell can count itself).
    func adjacentFood(_ r: Int, _ c: Int) -> Int {
        food(max(r - 1, 0), c) + food(min(r + 1, size - 1), c) + food(r, max(c - 1, 0)) + food(r, min(c + 1, size - 1))
    }

    /// The food a loading player at (r, c) takes: north, south, west, east, in that order (with the
    /// package's conditions, row > 1 and column > 1 for north and west).
    func adjacentFoodLocation(_ r: Int, _ c: Int) -> (Int, Int)? {
        if r > 1 && food(r - 1, c) > 0 { return (r - 1, c) }
        if r < size - 1 && food(r + 1, c) > 0 { return (r + 1, c) }
        if c > 1 && food(r, c - 1) > 0 { return (r, c - 1) }
        if c < size - 1 && food(r, c + 1) > 0 { return (r, c + 1) }
        return nil
    }

    public func step(actions: UnsafePointer<Float>, observations: UnsafeMutablePointer<Float>, rewards: UnsafeMutablePointer<Float>,
                     active: UnsafeMutablePointer<Bool>) -> MultiAgentStepResult {
        step += 1
        for i in 0..<players {
            let a = Int(actions[i])
            chosen[i] = (0..<6).contains(a) && valid[i][a] ? a : 0
            rewards[i] = 0
            active[i] = true
        }
        // Moves: a cell claimed by two or more players (staying counts as claiming one's own) keeps them all where they are.
        for i in 0..<players {
            let (r, c) = positions[i]
            targets[i] = positions[i]
            switch chosen[i] {
            case 1: targets[i] = (r - 1, c)
            case 2: targets[i] = (r + 1, c)
            case 3: targets[i] = (r, c - 1)
            case 4: targets[i] = (r, c + 1)
            default: break
            }
        }
        for i in 0..<players where !targets.indices.contains(where: { $0 != i && targets[$0] == targets[i] }) {
            positions[i] = targets[i]
        }
        // Loads, in player order: a loading player with the loading players next to the same food.
        for i in 0..<players { loading[i] = chosen[i] == 5 }
        for i in 0..<players where loading[i] {
            guard let (fr, fc) = adjacentFoodLocation(positions[i].row, positions[i].column) else { loading[i] = false; continue }
            let level = food(fr, fc)
            var members = 0
            for j in 0..<players where loading[j] {
                let (r, c) = positions[j]
                if (abs(r - fr) == 1 && c == fc) || (abs(c - fc) == 1 && r == fr) { group[members] = j; members += 1 }
            }
            if !group[0..<members].contains(i) { group[members] = i; members += 1 }
            var total = 0
            for g in 0..<members { loading[group[g]] = false; total += levels[group[g]] }
            if total < level {
                for g in 0..<members { rewards[group[g]] -= penalty }
                continue
            }
            for g in 0..<members { let j = group[g]; rewards[j] = Float(levels[j] * level) / (Float(total) * foodSpawned) }
            field[fr * size + fc] = 0
        }
        updateValidActions()
        observe(observations)
        let cleared = !field.contains { $0 > 0 }
        return MultiAgentStepResult(terminated: cleared, truncated: !cleared && step >= maxEpisodeSteps)
    }

    // MARK: Observations

    /// Where agent i's view starts (the package clips it at the field's edge).
    func viewOrigin(_ i: Int) -> (Int, Int) { (max(positions[i].row - sight, 0), max(positions[i].column - sight, 0)) }

    func observe(_ observations: UnsafeMutablePointer<Float>) {
        let w = 3 * (foods + players)
        for i in 0..<players {
            let o = observations + i * w
            for k in 0..<foods { o[3 * k] = -1; o[3 * k + 1] = -1; o[3 * k + 2] = 0 }
            for k in 0..<players { o[3 * (foods + k)] = -1; o[3 * (foods + k) + 1] = -1; o[3 * (foods + k) + 2] = 0 }
            let (r0, c0) = viewOrigin(i), (r, c) = positions[i]
            // Foods in the view, row by row (numpy's nonzero order).
            var k = 0
            for fr in r0...min(r + sight, size - 1) {
                for fc in c0...min(c + sight, size - 1) where food(fr, fc) > 0 && k < foods {
                    o[3 * k] = Float(fr - r0); o[3 * k + 1] = Float(fc - c0); o[3 * k + 2] = Float(food(fr, fc))
                    k += 1
                }
            }
            // Players, itself first: those whose view coordinates fall in [0, 2 sight].
            var slot = 0
            for n in 0..<players {
                let j = n == 0 ? i : n - 1 < i ? n - 1 : n  // itself, then the others in order
                let vr = positions[j].row - r0, vc = positions[j].column - c0
                guard min(vr, vc) >= 0, max(vr, vc) <= 2 * sight else { continue }
                let p = o + 3 * (foods + slot)
                p[0] = Float(vr); p[1] = Float(vc); p[2] = Float(levels[j])
                slot += 1
            }
        }
    }

    public func globalState(into state: UnsafeMutablePointer<Float>) {
        var k = 0
        for i in 0..<(foods * 3) { state[i] = i % 3 == 2 ? 0 : -1 }
        for fr in 0..<size { for fc in 0..<size where food(fr, fc) > 0 && k < foods {
            state[3 * k] = Float(fr); state[3 * k + 1] = Float(fc); state[3 * k + 2] = Float(food(fr, fc))
            k += 1
        } }
        for j in 0..<players {
            let p = state + 3 * (foods + j)
            p[0] = Float(positions[j].row); p[1] = Float(positions[j].column); p[2] = Float(levels[j])
        }
    }

    public func availableActions(into mask: UnsafeMutablePointer<Float>) {
        for i in 0..<players { for a in 0..<6 { mask[i * 6 + a] = valid[i][a] ? 1 : 0 } }
    }
}

extension Foraging: TextRendering {
    /// The field: `.` empty, a food's level as `*N`, a player as its letter and level (`A1`, `B2`, ...).
    public func render() -> String {
        var lines: [String] = []
        for r in 0..<size {
            var line = ""
            for c in 0..<size {
                if let j = positions.firstIndex(where: { $0.row == r && $0.column == c }) {
                    line += String(UnicodeScalar(UInt8(65 + j % 26))) + "\(levels[j])"
                } else if food(r, c) > 0 {
                    line += "*\(food(r, c))"
                } else {
                    line += " ."
                }
                line += " "
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    public func describe(action: UnsafePointer<Float>) -> String {
        ["none", "north", "south", "west", "east", "load"][min(max(Int(action[0]), 0), 5)]
    }
}
