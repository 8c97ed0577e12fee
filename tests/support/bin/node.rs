//! The slipstream command line, built into the end-to-end test package so that its tests can
//! start slipstream as separate processes (Cargo hands integration tests the path of their own
//! package's binaries only). It is `slipstream`'s `main` without the allocator setup.

fn main() -> std::process::ExitCode {
    slipstream::cli::main()
}
