//! The slipstream binary: parses the command line and hands over to [`slipstream::cli`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc reads its options from the environment when it starts, before `main`. By default
/// it commits whole arenas up front, which costs about 5.6 MiB of resident memory idle and
/// 27 MiB under load for no measured speed (docs/benchmarks.md); a sidecar next to every pod
/// cannot afford that. Unless the operator chose a value, run again with it off.
fn lazy_allocator_commit() {
    const OPTION: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    #[cfg(unix)]
    if std::env::var_os(OPTION).is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        use std::os::unix::process::CommandExt as _;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(OPTION, "0")
            .exec();
        // Only reached when exec failed: carry on with the defaults.
        eprintln!("slipstream: cannot re-exec with {OPTION}=0 ({err}); continuing");
    }
}

fn main() -> std::process::ExitCode {
    lazy_allocator_commit();
    slipstream::cli::main()
}
