import Foundation

/// Escapes text for XML and HTML.
func escape(_ text: String) -> String {
    var out = ""
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}

/// A number for an axis tick or a table: short, without trailing zeros.
public func formatValue(_ v: Double) -> String {
    guard v.isFinite else { return "–" }
    if v != 0 && (abs(v) >= 1e6 || abs(v) < 1e-3) { return String(format: "%.2e", v) }
    if abs(v) >= 1000 && v == v.rounded() {
        return v >= 1e4 ? String(format: "%.0fk", v / 1000) : String(format: "%.0f", v)
    }
    var s = String(format: "%.3f", v)
    while s.contains(".") && (s.hasSuffix("0") || s.hasSuffix(".")) { s.removeLast() }
    return s == "-0" ? "0" : s
}

/// About `count` round tick values covering [low, high].
func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
    guard high > low else { return [low] }
    let raw = (high - low) / Double(count)
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var out: [Double] = []
    var t = (low / step).rounded(.up) * step
    while t <= high + step * 1e-9 {
        out.append(abs(t) < step * 1e-9 ? 0 : t)
        t += step
    }
    return out
}

/// The colours of the curves (colour-blind-safe, Okabe-Ito).
let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

/// One metric of several groups as an SVG line chart: the mean over a group's runs, with a band of
/// ± one standard error where it has more than one run; the y range fits what is drawn, and the
/// legend sits below the plot (never over a curve). `colors` gives each group's palette index
/// (default: its position), so that a group keeps its colour across panels.
public func svgPlot(groups: [RunGroup], metric: String, x: String = "step", title: String? = nil,
                    width: Double = 640, height: Double = 360, colors: [Int]? = nil) -> String {
    let curves = groups.map { $0.curve(metric, x: x) }
    let points = curves.flatMap { $0 }
    let color = { (i: Int) in palette[(colors?[i] ?? i) % palette.count] }
    let left = 64.0, right = 16.0, top = 32.0, bottom = 44.0
    let plotWidth = width - left - right, plotHeight = height - top - bottom
    let legendHeight = Double(groups.count) * 16 + 8, totalHeight = height + legendHeight
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(totalHeight))\" viewBox=\"0 0 \(Int(width)) \(Int(totalHeight))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    svg += "<text x=\"\(Int(width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">\(escape(title ?? metric))</text>\n"
    guard !points.isEmpty else {
        svg += "<text x=\"\(Int(width / 2))\" y=\"\(Int(height / 2))\" text-anchor=\"middle\" fill=\"#666\">no values of \(escape(metric))</text>\n</svg>\n"
        return svg
    }
    var xLow = points.map(\.x).min()!, xHigh = points.map(\.x).max()!
    var yLow = points.map { $0.mean - $0.standardError }.min()!, yHigh = points.map { $0.mean + $0.standardError }.max()!
    if xHigh == xLow { xLow -= 1; xHigh += 1 }
    if yHigh == yLow { yLow -= 1; yHigh += 1 }
    let pad = (yHigh - yLow) * 0.05
    yLow -= pad; yHigh += pad
    func px(_ v: Double) -> Double { left + (v - xLow) / (xHigh - xLow) * plotWidth }
    func py(_ v: Double) -> Double { top + (1 - (v - yLow) / (yHigh - yLow)) * plotHeight }
    func f(_ v: Double) -> String { String(format: "%.1f", v) }

    // Grid and axes.
    for t in ticks(yLow, yHigh) {
        svg += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotWidth))\" y1=\"\(f(py(t)))\" y2=\"\(f(py(t)))\" stroke=\"#e5e5e5\"/>\n"
        svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\" fill=\"#444\">\(formatValue(t))</text>\n"
    }
    for t in ticks(xLow, xHigh) {
        svg += "<line x1=\"\(f(px(t)))\" x2=\"\(f(px(t)))\" y1=\"\(f(top))\" y2=\"\(f(top + plotHeight))\" stroke=\"#f0f0f0\"/>\n"
        svg += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\" fill=\"#444\">\(formatValue(t))</text>\n"
    }
    svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#999\"/>\n"
    svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">\(escape(x))</text>\n"

    // Bands, then lines (so no band hides a line).
    for (i, curve) in curves.enumerated() where curve.contains(where: { $0.count > 1 }) {
        let upper = curve.map { "\(f(px($0.x))),\(f(py($0.mean + $0.standardError)))" }
        let lower = curve.reversed().map { "\(f(px($0.x))),\(f(py($0.mean - $0.standardError)))" }
        svg += "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(color(i))\" fill-opacity=\"0.18\" stroke=\"none\"/>\n"
    }
    for (i, curve) in curves.enumerated() where !curve.isEmpty {
        let color = color(i)
        if curve.count == 1 {
            svg += "<circle cx=\"\(f(px(curve[0].x)))\" cy=\"\(f(py(curve[0].mean)))\" r=\"3\" fill=\"\(color)\"/>\n"
        } else {
            svg += "<polyline points=\"\(curve.map { "\(f(px($0.x))),\(f(py($0.mean)))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
        }
    }
    // Legend, below the plot and its axis label.
    for (i, group) in groups.enumerated() {
        let y = height + 10 + Double(i) * 16
        let n = group.runs.count
        svg += "<line x1=\"\(f(left))\" x2=\"\(f(left + 18))\" y1=\"\(f(y - 4))\" y2=\"\(f(y - 4))\" stroke=\"\(color(i))\" stroke-width=\"3\"/>\n"
        svg += "<text x=\"\(f(left + 22))\" y=\"\(f(y))\">\(escape(group.label)) (\(n) run\(n == 1 ? "" : "s"))</text>\n"
    }
    svg += "</svg>\n"
    return svg
}
