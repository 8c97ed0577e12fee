//! The slipstream binary: parses the command line and hands over to [`slipstream::cli`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc reads its options from the environment when it starts, before `main`. Two of its
/// defaults do not suit slipstream; unless the operator chose a value, run again with ours
/// (docs/benchmarks.md has the measurements):
///
/// - `MIMALLOC_ARENA_EAGER_COMMIT=0`: by default it commits whole arenas up front, which
///   costs resident memory idle and more under load for no measured speed; a sidecar next to
///   every pod cannot afford that. See docs/benchmarks.md, "Experiment log", "2026-11-24:
///   mimalloc's eager arena commit off".
/// - `MIMALLOC_PURGE_DELAY=10000` (ms): by default freed pages go back to the system after
///   10 ms. Each step frees the previous snapshot's copies and allocates new ones, so at
///   100,000 series every step gave back and faulted in again tens of MiB; ten seconds
///   outlasts the tick (5 s by default), so the pages are reused. The memory limit still gets
///   them back at once when it needs to (`slipstream_app::allocator`). See
///   docs/benchmarks.md, "Experiment log", "2026-11-24: end to end with the lookahead; the
///   tail at the ticks; mimalloc's purge delay".
const ALLOCATOR_DEFAULTS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "10000"),
];

fn allocator_defaults() {
    #[cfg(unix)]
    {
        let unset: Vec<_> = ALLOCATOR_DEFAULTS
            .iter()
            .filter(|(k, _)| std::env::var_os(k).is_none())
            .collect();
        if unset.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        use std::os::unix::process::CommandExt as _;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .envs(unset.iter().map(|(k, v)| (k, v)))
            .exec();
        // Only reached when exec failed: carry on with the defaults.
        eprintln!("slipstream: cannot re-exec with the allocator's options ({err}); continuing");
    }
}

fn main() -> std::process::ExitCode {
    allocator_defaults();
    slipstream::cli::main()
}
