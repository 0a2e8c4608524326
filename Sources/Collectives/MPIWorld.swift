import CMPI
import Foundation

/// MPI's world communicator, through the C shim (`CMPI`). Available when rrl is built with the MPI
/// package trait (`swift build -c release --traits MPI`); without it `MPIWorld.isCompiled` is false
/// and `start()` explains how to build with MPI.
public final class MPIWorld: Communicator {
    public let rank: Int
    public let size: Int

    /// True when this build links MPI.
    public static var isCompiled: Bool { rrl_mpi_compiled() != 0 }

    /// The world size mpirun (Open MPI, MPICH, or a PMI launcher) gave this process, read from its
    /// environment; nil when the process was not started by an MPI launcher.
    public static var launchedSize: Int? {
        let environment = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"] {
            if let text = environment[key], let n = Int(text) { return n }
        }
        return environment["PMIX_RANK"] != nil ? 1 : nil
    }

    nonisolated(unsafe) static var shared: MPIWorld?
    /// Where an empty message points (MPI wants a valid address even for 0 bytes).
    nonisolated(unsafe) static let empty = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)

    init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    /// Initialises MPI once per process and returns the world.
    public static func start() throws -> MPIWorld {
        if let shared { return shared }
        guard isCompiled else {
            throw CommunicatorError("this rrl was built without MPI; build it with the MPI trait (apt-get install libopenmpi-dev openmpi-bin, then swift build -c release --traits MPI) and run .build/release/rrl under mpirun")
        }
        var r: Int32 = 0, s: Int32 = 1
        let rc = rrl_mpi_init(&r, &s)
        guard rc == 0 else { throw CommunicatorError("MPI_Init failed (MPI error \(rc))") }
        let world = MPIWorld(rank: Int(r), size: Int(s))
        shared = world
        return world
    }

    /// MPI_Finalize (every rank must call it before exiting normally).
    public static func finish() {
        guard shared != nil else { return }
        _ = rrl_mpi_finalize()
        shared = nil
    }

    /// Seconds on MPI's clock.
    public static var time: Double { rrl_mpi_time() }

    @inline(__always) func check(_ rc: Int32, _ what: String) {
        // MPI's default error handler aborts the job first; this guards an implementation that returns.
        if rc != 0 {
            FileHandle.standardError.write(Data("error: rank \(rank): \(what) failed (MPI error \(rc))\n".utf8))
            abort(code: 1)
        }
    }

    public func sum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard size > 1 else { return }
        check(rrl_mpi_sum_float(values, Int64(count)), "the sum of \(count) floats")
    }

    public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard size > 1 else { return }
        check(rrl_mpi_sum_double(values, Int64(count)), "the sum of \(count) doubles")
    }

    public func broadcast(_ data: Data, root: Int) -> Data {
        guard size > 1 else { return data }
        var length = Int64(rank == root ? data.count : 0)
        check(rrl_mpi_broadcast(&length, 8, Int32(root)), "the broadcast of a length")
        var out = rank == root ? data : Data(count: Int(length))
        guard length > 0 else { return out }
        out.withUnsafeMutableBytes { check(rrl_mpi_broadcast($0.baseAddress!, length, Int32(root)), "the broadcast of \(length) bytes") }
        return out
    }

    public func send(_ data: Data, to destination: Int, tag: Int) {
        data.withUnsafeBytes { raw in
            let pointer = raw.baseAddress ?? UnsafeRawPointer(MPIWorld.empty)
            check(rrl_mpi_send(pointer, Int64(data.count), Int32(destination), Int32(tag)), "sending \(data.count) bytes to rank \(destination)")
        }
    }

    public func send(_ data: Data, to destination: Int, tag: Int, timeout: Double) -> Bool {
        data.withUnsafeBytes { raw in
            let rc = rrl_mpi_send_timed(raw.baseAddress ?? UnsafeRawPointer(MPIWorld.empty), Int64(data.count), Int32(destination), Int32(tag), timeout)
            if rc == -1 { return false }
            check(rc, "sending \(data.count) bytes to rank \(destination)")
            return true
        }
    }

    public func receive(from source: Int, tag: Int) -> Data {
        var count: Int64 = 0
        check(rrl_mpi_probe(Int32(source), Int32(tag), &count), "waiting for a message from rank \(source)")
        var out = Data(count: Int(count))
        if count == 0 {
            check(rrl_mpi_receive(MPIWorld.empty, 0, Int32(source), Int32(tag)), "receiving from rank \(source)")
            return out
        }
        out.withUnsafeMutableBytes { check(rrl_mpi_receive($0.baseAddress!, count, Int32(source), Int32(tag)), "receiving \(count) bytes from rank \(source)") }
        return out
    }

    public func isPending(from source: Int, tag: Int) -> Bool {
        var pending: Int32 = 0
        check(rrl_mpi_iprobe(Int32(source), Int32(tag), &pending), "looking for a message from rank \(source)")
        return pending != 0
    }

    public func abort(code: Int32) -> Never {
        rrl_mpi_abort(code)
        exit(code)
    }
}

/// MPI is missing or failed.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
