import Agents
import Foundation
@testable import Training
import XCTest

final class ConfigurationFileTests: XCTestCase {
    func parse(_ text: String, algorithm: String? = nil) throws -> RunConfiguration {
        try ConfigurationFile.parse(Data(text.utf8), source: "test.json", algorithm: algorithm)
    }

    func assertMessage(_ text: String, algorithm: String? = nil, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text, algorithm: algorithm), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("config file test.json: "), message, file: file, line: line)
            for part in parts { XCTAssertTrue(message.contains(part), "expected '\(part)' in: \(message)", file: file, line: line) }
        }
    }

    /// A run folder's config.json reads back as the same configuration (every option), for both kinds.
    func testARunsOwnConfigurationReadsBackUnchanged() throws {
        // SAC: its target entropy is set, and an option of another algorithm would be refused.
        var s = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "pendulum-velocity")
        s.agent.encoderLearningRate = 3e-5
        s.agent.targetEntropy = -0.5
        s.agent.network = .gru
        s.agent.sampler.sequenceLength = 12
        s.agent.sampler.initialState = .storedBurnIn
        s.agent.sampler.burnIn = 4
        s.checkpointInterval = 5000
        s.environmentOptions = ["steps": "150"]
        var p = PPOTrainingConfiguration.defaults(environment: "goal-cycle")
        p.ppo.network = .gru
        p.ppo.refreshStates = true
        p.ppo.context.lastReward = true
        let encoder = JSONEncoder()
        XCTAssertEqual(try ConfigurationFile.parse(encoder.encode(s), source: "s"), .offPolicy(s))
        XCTAssertEqual(try ConfigurationFile.parse(encoder.encode(p), source: "p"), .ppo(p))
        // Every key a configuration can write is in the schema the checks use.
        // (A free-form map such as environmentOptions is one key: its entries are values, not options.)
        func keys(_ value: Any, _ path: String = "") -> Set<String> {
            if let object = value as? [String: Any], path != "environmentOptions." {
                return Set(object.flatMap { k, v in [path + k] + keys(v, path + k + ".") })
            }
            return []
        }
        func schemaKeys(_ node: [String: ConfigurationFile.Kind], _ path: String = "") -> Set<String> {
            Set(node.flatMap { k, v -> [String] in
                if case .object(let inner) = v { return [path + k] + schemaKeys(inner, path + k + ".") }
                return [path + k]
            })
        }
        let written = keys(try JSONSerialization.jsonObject(with: encoder.encode(s)))
        XCTAssertTrue(written.contains("agent.encoderLearningRate"))
        XCTAssertTrue(written.isSubset(of: schemaKeys(ConfigurationFile.offPolicySchema)), "\(written.subtracting(schemaKeys(ConfigurationFile.offPolicySchema)))")
        let writtenPPO = keys(try JSONSerialization.jsonObject(with: encoder.encode(p)))
        XCTAssertEqual(writtenPPO.union(["checkpointInterval", "environmentModules", "environmentOptions", "ppo.encoderLearningRate"]), schemaKeys(ConfigurationFile.ppoSchema), "unset optional keys aside")
    }

    /// A partial file takes the algorithm's and environment's defaults for what it leaves out.
    func testAPartialFileTakesTheDefaults() throws {
        let c = try parse(#"{"algorithm": "ppo", "environment": "goal-cycle", "steps": 1000, "ppo": {"network": "gru", "epochs": 3}}"#)
        var expected = PPOTrainingConfiguration.defaults(environment: "goal-cycle")
        expected.steps = 1000
        expected.ppo.network = .gru
        expected.ppo.epochs = 3
        XCTAssertEqual(c, .ppo(expected))
        let d = try parse(#"{"environment": "pendulum", "agent": {"batchSize": 64}}"#, algorithm: "td3")
        var off = OffPolicyConfiguration.defaults(algorithm: .td3, environment: "pendulum")
        off.agent.batchSize = 64
        XCTAssertEqual(d, .offPolicy(off))
    }

    /// Each kind of mistake gets a message that names the key and says what to do.
    func testEachMistakeIsNamed() {
        assertMessage(#"{"stesp": 10}"#, contains: ["unknown key 'stesp'", "did you mean 'steps'?"])
        assertMessage(#"{"algorithm": "ppo", "ppo": {"epoch": 3}}"#, contains: ["unknown key 'ppo.epoch'", "did you mean 'ppo.epochs'?"])
        assertMessage(#"{"agent": {"sampler": {"burnin": 3}}}"#, contains: ["did you mean 'agent.sampler.burnIn'?"])
        assertMessage(#"{"zzzzzzzzzzzz": 1}"#, contains: ["unknown key 'zzzzzzzzzzzz'", "valid keys are", "steps"])
        assertMessage(#"{"steps": "many"}"#, contains: ["'steps' must be a whole number (got \"many\")"])
        assertMessage(#"{"algorithm": "ppo", "ppo": {"epochs": 2.5}}"#, contains: ["'ppo.epochs' must be a whole number (got 2.5)"])
        assertMessage(#"{"agent": {"gamma": "high"}}"#, contains: ["'agent.gamma' must be a number"])
        assertMessage(#"{"agent": {"learnTemperature": 1}}"#, contains: ["'agent.learnTemperature' must be true or false (got 1)"])
        assertMessage(#"{"agent": {"encoderLearningRate": "slow"}}"#, contains: ["'agent.encoderLearningRate' must be a number"])
        assertMessage(#"{"agent": {"network": "rnn"}}"#, contains: ["'agent.network' must be one of mlp, gru, lstm (got \"rnn\")"])
        assertMessage(#"{"agent": {"headHiddenSizes": 64}}"#, contains: ["'agent.headHiddenSizes' must be a list of numbers (got 64)"])
        assertMessage(#"{"agent": 3}"#, contains: ["'agent' must be an object of options"])
        assertMessage(#"{"algorithm": "ppo", "ppo": {"epochs": 0}}"#, contains: ["epochs must be at least 1 (got 0)"])
        assertMessage(#"{"agent": {"gamma": 1.5}}"#, contains: ["gamma must be in [0, 1] (got 1.5)"])
        assertMessage(#"{"algorithm": "sac", "ppo": {"epochs": 3}}"#, contains: ["'ppo' applies only to ppo", "set \"algorithm\" to ppo"])
        assertMessage(#"{"algorithm": "ppo", "warmupSteps": 5}"#, contains: ["'warmupSteps' applies only to sac, td3, masac, vdn or qmix"])
        assertMessage(#"{"algorithm": "ppo", "agent": {"tau": 0.1}}"#, contains: ["'agent' applies only to sac, td3, masac, vdn or qmix"])
        assertMessage(#"{"algorithm": "a2c"}"#, contains: ["'algorithm' must be one of sac, td3, masac, vdn, qmix, ppo, ippo, mappo (got \"a2c\")"])
        assertMessage(#"{"algorithm": "ppo"}"#, algorithm: "sac", contains: ["the file is for ppo but the command line asks for sac"])
        assertMessage(#"{"environment": "pendulum-v1"}"#, contains: ["unknown environment", "pendulum"])
        assertMessage(#"{"steps": 10"#, contains: ["not valid JSON"])
        assertMessage(#"[1, 2]"#, contains: ["the top level must be a JSON object"])
        assertMessage(#"{"checkpointInterval": -5}"#, contains: ["checkpoint interval must be 0"])
    }
}
