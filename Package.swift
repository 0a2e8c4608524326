// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "RecurrentRL",
    products: [
        .library(name: "RecurrentRL", targets: ["RecurrentRL"]),
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "NeuralNetworks", targets: ["NeuralNetworks"]),
        .library(name: "Environments", targets: ["Environments"]),
        .library(name: "Replay", targets: ["Replay"]),
        .library(name: "Agents", targets: ["Agents"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Reports", targets: ["Reports"]),
        // Training across processes and hosts: sums, broadcasts and messages between ranks (MPI with the MPI trait).
        .library(name: "Collectives", targets: ["Collectives"]),
        // Acting only: load a weights file and run its policy (no training code).
        .library(name: "Inference", targets: ["Inference"]),
        // Policies for other runtimes: ONNX, a PyTorch module, a C header.
        .library(name: "PolicyExport", targets: ["PolicyExport"]),
        .executable(name: "rrl", targets: ["rrl"]),
    ],
    traits: [
        .trait(
            name: "OpenBLAS",
            description: "Route large matrix products through the system OpenBLAS (apt-get install libopenblas-dev)."
        ),
        .trait(
            name: "MPI",
            description: "Train across processes and hosts under mpirun (apt-get install libopenmpi-dev openmpi-bin)."
        ),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation`: the DocC catalogs (no effect on a plain build).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // Hand-written compute kernels: packed matrix multiply with an AVX2/FMA micro-kernel
        // chosen at run time, a portable fallback, and vectorised exp/tanh/sigmoid.
        .target(
            name: "CKernels",
            cSettings: [
                .define("RRL_USE_OPENBLAS", .when(traits: ["OpenBLAS"])),
            ],
            linkerSettings: [
                .linkedLibrary("openblas", .when(traits: ["OpenBLAS"])),
            ]
        ),
        .target(name: "Tensors", dependencies: ["CKernels"]),
        // The system's MPI, found by pkg-config; only the MPI trait depends on it.
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // A C shim that names MPI's handles (C macros Swift cannot import); without the trait it says MPI is absent.
        .target(
            name: "CMPI",
            dependencies: [.target(name: "COpenMPI", condition: .when(traits: ["MPI"]))],
            cSettings: [.define("RRL_USE_MPI", .when(traits: ["MPI"]))]
        ),
        .target(name: "Collectives", dependencies: ["CMPI"]),
        .target(name: "NeuralNetworks", dependencies: ["Tensors", "CKernels"]),
        .target(name: "Environments", dependencies: ["Tensors"]),
        .target(name: "Replay", dependencies: ["Tensors"]),
        .target(name: "Inference", dependencies: ["Tensors", "NeuralNetworks"]),
        .target(name: "PolicyExport", dependencies: ["Inference", "NeuralNetworks", "Tensors"]),
        .target(name: "Agents", dependencies: ["Tensors", "NeuralNetworks", "Environments", "Replay", "Inference", "Collectives"]),
        .target(name: "Training", dependencies: ["Tensors", "NeuralNetworks", "Environments", "Replay", "Agents", "Inference", "Collectives"]),
        // SVG learning curves and HTML reports from run folders (Foundation only).
        .target(name: "Reports"),
        .target(name: "RecurrentRL", dependencies: ["Tensors", "NeuralNetworks", "Environments", "Replay", "Agents", "Training", "Reports", "Inference", "Collectives"]),
        .executableTarget(
            name: "rrl",
            dependencies: [
                "RecurrentRL",
                "PolicyExport",
                "CKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A user's own partially observable environment, registered by name and learned by recurrent SAC.
        .executableTarget(name: "LightSwitchExample", dependencies: ["RecurrentRL"], path: "Examples/LightSwitch"),
        // Test support: counts heap allocations so tests can prove a training step allocates nothing.
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        // Test support: finite-difference gradient checks shared by the test targets.
        .target(name: "TestSupport", dependencies: ["Tensors", "Environments"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CKernels"]),
        .testTarget(name: "EnvironmentsTests", dependencies: ["Environments", "Tensors"], resources: [.copy("Fixtures")]),
        .testTarget(name: "AgentsTests", dependencies: ["Agents", "Replay", "Environments", "NeuralNetworks", "Tensors", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Replay", "Agents", "Training", "Collectives", "Environments", "NeuralNetworks", "Tensors", "TestSupport", "AllocationCounter"]),
        .testTarget(name: "ReplayTests", dependencies: ["Replay", "Tensors"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "PolicyExport", "Agents", "Environments", "NeuralNetworks", "Tensors", "AllocationCounter"]),
        .testTarget(name: "ReportsTests", dependencies: ["Reports"]),
        // The fault-injection suite: runs the rrl binary on bad inputs, damaged files, kill -9 and a full disk.
        .testTarget(name: "CLITests", exclude: ["Corpus"]),
        .testTarget(
            name: "NeuralNetworksTests",
            dependencies: ["NeuralNetworks", "Tensors", "AllocationCounter", "TestSupport"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
