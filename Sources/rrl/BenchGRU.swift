import ArgumentParser

struct BenchGRU: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gru", abstract: "Time per GRU forward + BPTT.")
    @OptionGroup var options: BenchOptions
    func run() throws { throw NotYetAvailable(command: "bench gru") }
}
