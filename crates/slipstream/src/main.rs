//! The slipstream binary: parses the command line and hands over to [`slipstream::cli`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    slipstream::cli::main()
}
