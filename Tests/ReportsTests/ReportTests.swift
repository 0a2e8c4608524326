import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import Reports
import XCTest

final class ReportTests: XCTestCase {
    func run(_ path: String, seed: Int, refresh: Bool, returns: [Double]) -> RunRecord {
        let config = ["algorithm": "\"ppo\"", "environment": "\"goal-cycle\"", "seed": "\(seed)", "ppo.refreshStates": refresh ? "true" : "false",
                      "ppo.epochs": "8", "checkpointInterval": "25000"]
        let rows = returns.enumerated().map { i, r in ["step": Double(1000 * (i + 1)), "eval_return_mean": r, "policy_loss": 0.1 * Double(i), "wall_seconds": 3] }
        return RunRecord(path: path, configuration: config, columns: ["step", "eval_return_mean", "policy_loss", "wall_seconds"], rows: rows)
    }

    /// Runs that differ only in their seed form one group; its curve is the mean ± standard error at
    /// each step (checked by hand), and the group is labelled by what differs between groups.
    func testGroupsAndTheirMeanAndStandardError() {
        let runs = [run("a", seed: 0, refresh: false, returns: [1, 4, 8]), run("b", seed: 1, refresh: false, returns: [3, 6, 10]),
                    run("c", seed: 0, refresh: true, returns: [2, 2, 2])]
        let (groups, differences, _) = groupRuns(runs)
        XCTAssertEqual(differences, ["ppo.refreshStates"])
        XCTAssertEqual(groups.map(\.label), ["ppo.refreshStates=false", "ppo.refreshStates=true"])
        XCTAssertEqual(groups.map { $0.runs.count }, [2, 1])
        let curve = groups[0].curve("eval_return_mean")
        XCTAssertEqual(curve.map(\.x), [1000, 2000, 3000])
        XCTAssertEqual(curve.map(\.mean), [2, 5, 9])
        // Two values a and b: sample sd = |a - b| / √2, s.e. = sd / √2 = |a - b| / 2.
        XCTAssertEqual(curve.map(\.standardError), [1, 1, 1])
        XCTAssertEqual(groups[1].curve("eval_return_mean").map(\.standardError), [0, 0, 0])
        XCTAssertEqual(groups[0].finals("eval_return_mean"), [8, 10])
        let (m, se) = meanAndStandardError([2, 4, 9])
        XCTAssertEqual(m, 5)
        XCTAssertEqual(se, (13.0 / 3).squareRoot(), accuracy: 1e-12)  // sample variance 13, n = 3
    }

    /// Recipes that differ in many options are labelled by their folders (seed folders and suffixes
    /// aside, less what every group's path shares); the settings stay in the table of differences.
    func testGroupsThatDifferInManyOptionsAreNamedByTheirFolders() {
        func recipe(_ path: String, seed: Int, width: Int) -> RunRecord {
            var config = ["agent.algorithm": "\"sac\"", "environment": "\"pendulum\"", "seed": "\(seed)"]
            for option in ["hiddenSize", "batchSize", "criticHeads", "actorLearningRate", "criticLearningRate"] { config["agent." + option] = "\(width)" }
            return RunRecord(path: path, configuration: config, columns: ["step", "eval_return_mean"], rows: [["step": 1, "eval_return_mean": 0]])
        }
        let sweeps = [recipe("out/sweeps/mlp/seed0", seed: 0, width: 64), recipe("out/sweeps/mlp/seed1", seed: 1, width: 64),
                      recipe("out/sweeps/resel/seed0", seed: 0, width: 256)]
        let (groups, differences, _) = groupRuns(sweeps)
        XCTAssertEqual(groups.map(\.label), ["mlp", "resel"])
        XCTAssertEqual(differences.count, 5, "every differing setting is still listed")
        let named = groupRuns([recipe("runs/sac-pendulum-seed0", seed: 0, width: 64), recipe("runs/sac-pendulum-seed1", seed: 1, width: 64),
                               recipe("other/sac-pendulum-seed0", seed: 0, width: 32)]).groups
        XCTAssertEqual(named.map(\.label), ["runs/sac-pendulum", "other/sac-pendulum"], "runs named by their folders without the seed")
        // Folders that do not tell the groups apart leave the settings as the labels; so does a short label.
        let clash = groupRuns([recipe("a/seed0", seed: 0, width: 64), recipe("a/seed1", seed: 0, width: 32)]).groups
        XCTAssertTrue(clash[0].label.hasPrefix("agent.actorLearningRate=64"), clash[0].label)
        let short = groupRuns([recipe("x/seed0", seed: 0, width: 64), recipe("y/seed0", seed: 0, width: 32)], longLabel: 1000).groups
        XCTAssertTrue(short[0].label.hasPrefix("agent.actorLearningRate=64"), short[0].label)
    }

    /// The SVG is well-formed XML with one line and one band per group of several runs; the report
    /// has the final-results table with mean ± s.e., the differing option, and a plot per metric.
    func testPlotAndReportContents() throws {
        let runs = [run("a", seed: 0, refresh: false, returns: [1, 4, 8]), run("b", seed: 1, refresh: false, returns: [3, 6, 10]),
                    run("c", seed: 0, refresh: true, returns: [2, 2, 2])]
        let svg = svgPlot(groups: groupRuns(runs).groups, metric: "eval_return_mean")
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2)
        XCTAssertEqual(svg.components(separatedBy: "<polygon").count - 1, 1, "a band only where a group has several runs")
        XCTAssertTrue(svg.contains("ppo.refreshStates=false (2 runs)"))

        let html = htmlReport(runs: runs, title: "refresh <on/off>")
        XCTAssertTrue(html.contains("<title>refresh &lt;on/off&gt;</title>"))
        XCTAssertTrue(html.contains("<td class=\"num\">9 ± 1</td>"), "final eval_return_mean of the first group")
        XCTAssertTrue(html.contains("<code>ppo.refreshStates</code>"))
        XCTAssertFalse(html.contains("<code>seed</code>"), "the seed is not a difference between configurations")
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 2, "eval_return_mean and policy_loss; wall_seconds is left out")
        XCTAssertFalse(html.contains("<script"), "self-contained and static")
    }

    /// Runs of several algorithms on several environments: each group is labelled by its algorithm
    /// (and what differs between groups of that algorithm), the differences table lists the options
    /// every algorithm has and counts the others, the legend sits below the plot, and each
    /// environment gets its own panels with only the metrics its runs logged.
    func testMixedAlgorithmsAndEnvironments() throws {
        func offPolicy(_ path: String, algorithm: String, environment: String, actorRate: String) -> RunRecord {
            let config = ["agent.algorithm": "\"\(algorithm)\"", "environment": "\"\(environment)\"", "seed": "0", "steps": "100",
                          "agent.actorLearningRate": actorRate, "agent.tau": "0.005"]
            let rows: [[String: Double]] = [["step": 50, "eval_return_mean": 1, "critic_loss": 2], ["step": 100, "eval_return_mean": 2, "critic_loss": 1]]
            return RunRecord(path: path, configuration: config, columns: ["step", "eval_return_mean", "critic_loss"], rows: rows)
        }
        let runs = [run("a", seed: 0, refresh: false, returns: [1, 4, 8]), run("b", seed: 0, refresh: true, returns: [3, 6, 10]),
                    offPolicy("c", algorithm: "sac", environment: "pendulum", actorRate: "0.001"),
                    offPolicy("d", algorithm: "sac", environment: "pendulum", actorRate: "0.0003")]
        let (groups, differences, specific) = groupRuns(runs)
        XCTAssertEqual(groups.map(\.label), ["ppo, ppo.refreshStates=false", "ppo, ppo.refreshStates=true",
                                             "sac, agent.actorLearningRate=0.001", "sac, agent.actorLearningRate=0.0003"])
        XCTAssertEqual(differences, ["algorithm", "environment"])
        XCTAssertEqual(Set(specific), ["agent.actorLearningRate", "agent.tau", "ppo.epochs", "ppo.refreshStates", "steps"])
        let svg = svgPlot(groups: groups, metric: "eval_return_mean", height: 300)
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse())
        XCTAssertTrue(svg.contains("height=\"\(300 + 4 * 16 + 8)\""), "the legend's rows below the plot")
        let html = htmlReport(runs: runs)
        XCTAssertTrue(html.contains("<h3>goal-cycle</h3>") && html.contains("<h3>pendulum</h3>"))
        XCTAssertTrue(html.contains("eval_return_mean on pendulum") && html.contains("critic_loss on pendulum"))
        XCTAssertFalse(html.contains("critic_loss on goal-cycle"), "a panel shows only what its runs logged")
        XCTAssertTrue(html.contains("5 options belong to some of these algorithms only"))
    }
}
