import Foundation

/// What every report holds in its head: `rrl report` replaces a file only when it finds this in it
/// (a report it wrote before), or when told to with `--overwrite`.
public let reportMark = "<meta name=\"generator\" content=\"RecurrentRL rrl report\">"

/// What a report written before the mark existed holds near its top (its note on the curves).
public let earlierReportMark = "curves show the mean over a configuration's runs"

/// What marks a report as rrl's own, today's or an earlier one's.
public let reportMarks = [reportMark, earlierReportMark]

/// What the first line of every SVG file `rrl plot` writes holds, for the same purpose.
public let plotMark = "<!-- RecurrentRL rrl plot -->"

/// A self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched) comparing runs:
/// what differs between their configurations, a table of final results (mean ± standard error over
/// seeds), and learning curves of the metrics the runs logged (one panel per environment when the
/// runs are on several, so that each task keeps its own scale).
public func htmlReport(runs: [RunRecord], title: String = "RecurrentRL report", generated: Date = Date()) -> String {
    let (groups, differences, specific) = groupRuns(runs)
    let columns = runs.flatMap(\.columns).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    let skip: Set<String> = ["step", "wall_seconds", "steps_per_second", "episodes", "updates", "eval_return_std"]
    let metrics = columns.filter { c in !skip.contains(c) && groups.contains { !$0.curve(c).isEmpty } }
    let headline = metrics.contains("eval_return_mean") ? "eval_return_mean" : metrics.first

    var html = """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8">\(reportMark)<title>\(escape(title))</title>
    <style>
    body { font-family: sans-serif; margin: 24px auto; max-width: 1340px; color: #222; padding: 0 16px; }
    h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
    table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
    th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
    th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
    .swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
    .plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots svg { border: 1px solid #eee; }
    .note { color: #666; font-size: 13px; } code { background: #f5f5f5; padding: 0 3px; }
    </style></head><body>
    <h1>\(escape(title))</h1>
    <p class="note">\(runs.count) run\(runs.count == 1 ? "" : "s") in \(groups.count) configuration\(groups.count == 1 ? "" : "s"); curves show the mean over a configuration's runs (seeds) with a band of ± one standard error. Generated \(escape(ISO8601DateFormatter().string(from: generated))).</p>

    """
    html += "<h2>Final results</h2>\n<table><tr><th>configuration</th><th>runs (seeds)</th><th>steps</th>"
    let finalMetrics = ["eval_return_mean", "train_return_mean", "probe_accuracy"].filter(metrics.contains)
    for m in finalMetrics { html += "<th>final \(escape(m)) (mean ± s.e.)</th><th>per run</th>" }
    html += "</tr>\n"
    for (i, group) in groups.enumerated() {
        let steps = group.finals("step").map { formatValue($0) }
        html += "<tr><td><span class=\"swatch\" style=\"background:\(palette[i % palette.count])\"></span>\(escape(group.label))</td>"
        html += "<td>\(group.runs.count) (\(escape(group.seeds.joined(separator: ", "))))</td><td class=\"num\">\(escape(Array(Set(steps)).sorted().joined(separator: ", ")))</td>"
        for m in finalMetrics {
            let values = group.finals(m)
            let (mean, se) = meanAndStandardError(values)
            html += "<td class=\"num\">\(values.isEmpty ? "–" : "\(formatValue(mean)) ± \(formatValue(se))")</td>"
            html += "<td class=\"num\">\(escape(values.map(formatValue).joined(separator: ", ")))</td>"
        }
        html += "</tr>\n"
    }
    html += "</table>\n"

    html += "<h2>What differs between the configurations</h2>\n"
    if groups.count < 2 {
        html += "<p class=\"note\">All runs share one configuration (they differ only in their seeds).</p>\n"
    } else {
        html += "<table><tr><th>option</th>"
        for i in groups.indices {
            html += "<th><span class=\"swatch\" style=\"background:\(palette[i % palette.count])\"></span>configuration \(i + 1)</th>"
        }
        html += "</tr>\n"
        for key in differences {
            html += "<tr><td><code>\(escape(key))</code></td>"
            for group in groups {
                let value = key == "algorithm" ? RunRecord.algorithm(group.runs[0].configuration) : displayValue(group.runs[0].configuration[key])
                html += "<td>\(escape(value))</td>"
            }
            html += "</tr>\n"
        }
        html += "</table>\n"
        if !specific.isEmpty {
            html += "<p class=\"note\">Besides, \(specific.count) option\(specific.count == 1 ? "" : "s") belong\(specific.count == 1 ? "s" : "") to some of these algorithms only (each run's <code>config.json</code> holds its own).</p>\n"
        }
    }

    html += "<h2>Learning curves</h2>\n"
    let environments = runs.map(\.environment).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    for environment in environments {
        // Each environment's groups, keeping their colours.
        let indices = environments.count == 1 ? Array(groups.indices) : groups.indices.filter { groups[$0].runs[0].environment == environment }
        let panel = indices.map { groups[$0] }
        let suffix = environments.count == 1 ? "" : " on \(environment)"
        if environments.count > 1 { html += "<h3>\(escape(environment))</h3>\n" }
        html += "<div class=\"plots\">\n"
        // The metrics this environment's runs logged.
        let logged = metrics.filter { m in panel.contains { !$0.curve(m).isEmpty } }
        if let headline, logged.contains(headline) {
            html += svgPlot(groups: panel, metric: headline, title: headline + suffix, width: 1320, height: 440, colors: indices)
        }
        for m in logged where m != headline { html += svgPlot(groups: panel, metric: m, title: m + suffix, width: 436, height: 300, colors: indices) }
        html += "</div>\n"
    }

    html += "<h2>Runs</h2>\n<table><tr><th>folder</th><th>configuration</th><th>seed</th><th>rows</th><th>last step</th></tr>\n"
    for run in runs {
        let g = groups.firstIndex { $0.runs.contains { $0.path == run.path } } ?? 0
        html += "<tr><td><code>\(escape(run.path))</code></td><td>\(g + 1)</td><td>\(escape(run.configuration["seed"] ?? "?"))</td>"
        html += "<td class=\"num\">\(run.rows.count)</td><td class=\"num\">\(formatValue(run.rows.last?["step"] ?? .nan))</td></tr>\n"
    }
    html += "</table>\n</body></html>\n"
    return html
}

/// A configuration value as a person reads it: strings without their JSON quotes.
func displayValue(_ json: String?) -> String {
    guard let json else { return "(unset)" }
    if json.count >= 2 && json.hasPrefix("\"") && json.hasSuffix("\"") { return String(json.dropFirst().dropLast()) }
    return json
}
