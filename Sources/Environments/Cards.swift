import Tensors

/// A shuffled deck: `decks` x 52 cards, each with a suit (0..<4) and a rank (0..<13).
struct Deck {
    var cards: [Int] = []
    init(decks: Int) { cards = Array(0..<(52 * decks)) }
    /// A uniformly random order, from the sorted deck (so that a seed fixes the order).
    mutating func shuffle(_ rng: inout RandomGenerator) {
        for i in cards.indices { cards[i] = i }
        for i in stride(from: cards.count - 1, to: 0, by: -1) { cards.swapAt(i, rng.integer(below: i + 1)) }
    }
    static func suit(_ card: Int) -> Int { (card % 52) / 13 }
    static func rank(_ card: Int) -> Int { card % 13 }
}

/// POPGym-style RepeatPrevious: cards are dealt one per step, each shown as its suit (one-hot of 4);
/// from step k on, the agent must name the suit of the card dealt k steps earlier. A right answer
/// earns 1/(N - k), a wrong one -1/(N - k), for N cards, so returns lie in [-1, 1]; the first k
/// steps earn 0. An agent without memory can only guess (1 in 4): about -0.5 per episode.
public final class RepeatPrevious: Environment {
    public let lag: Int
    public let decks: Int
    public var rng = RandomGenerator(seed: 0)
    var deck: Deck
    var t = 0

    public init(lag: Int = 4, decks: Int = 1) {
        precondition(lag >= 1 && decks >= 1, "repeat-previous: lag and decks must be at least 1")
        self.lag = lag
        self.decks = decks
        deck = Deck(decks: decks)
    }

    public var name: String { "repeat-previous" }
    public var observationSpace: Space { .box(low: [Float](repeating: 0, count: 4), high: [Float](repeating: 1, count: 4)) }
    public var actionSpace: Space { .discrete(4) }
    public var maxEpisodeSteps: Int { deck.cards.count }

    func show(_ observation: UnsafeMutablePointer<Float>) {
        for j in 0..<4 { observation[j] = 0 }
        observation[Deck.suit(deck.cards[min(t, deck.cards.count - 1)])] = 1
    }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        deck.shuffle(&rng)
        t = 0
        show(observation)
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        let n = deck.cards.count
        var reward: Float = 0
        if t >= lag {
            let right = Int(action[0]) == Deck.suit(deck.cards[t - lag])
            reward = (right ? 1 : -1) / Float(n - lag)
        }
        t += 1
        show(observation)
        return StepResult(reward: reward, terminated: false, truncated: t >= n)
    }
}

/// POPGym-style CountRecall: each step deals a card and asks about a query rank drawn among the
/// ranks dealt so far; the observation shows both (two one-hots of 13). The agent must answer how
/// many cards of the query rank have been dealt, the current one included (action = count - 1,
/// counts 1...4 x decks). A right answer earns 1/N, a wrong one -1/N, for N cards.
public final class CountRecall: Environment {
    public let decks: Int
    public var rng = RandomGenerator(seed: 0)
    var deck: Deck
    var counts = [Int](repeating: 0, count: 13)
    var query = 0
    var t = 0

    public init(decks: Int = 1) {
        precondition(decks >= 1, "count-recall: decks must be at least 1")
        self.decks = decks
        deck = Deck(decks: decks)
    }

    public var name: String { "count-recall" }
    public var observationSpace: Space { .box(low: [Float](repeating: 0, count: 26), high: [Float](repeating: 1, count: 26)) }
    public var actionSpace: Space { .discrete(4 * decks) }
    public var maxEpisodeSteps: Int { deck.cards.count }
    /// How many cards of the query rank have been dealt (the answer to give now).
    public var answer: Int { counts[query] }

    /// Deals card t and draws a query among the ranks dealt so far.
    func deal(_ observation: UnsafeMutablePointer<Float>) {
        let rank = Deck.rank(deck.cards[t])
        counts[rank] += 1
        // A uniformly random dealt card's rank (ranks weighted by how often they were dealt).
        query = Deck.rank(deck.cards[rng.integer(below: t + 1)])
        for j in 0..<26 { observation[j] = 0 }
        observation[rank] = 1
        observation[13 + query] = 1
    }

    public func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        if let seed { rng = RandomGenerator(seed: seed) }
        deck.shuffle(&rng)
        for j in 0..<13 { counts[j] = 0 }
        t = 0
        deal(observation)
    }

    public func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        let n = deck.cards.count
        let reward: Float = (Int(action[0]) + 1 == counts[query] ? 1 : -1) / Float(n)
        t += 1
        if t < n {
            deal(observation)
        }
        return StepResult(reward: reward, terminated: false, truncated: t >= n)
    }
}
