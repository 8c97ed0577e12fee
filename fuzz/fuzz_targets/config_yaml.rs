//! Fuzzes the configuration parser: any text must give a config or errors, never a panic, and
//! an accepted config must print and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipstream_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_yaml(text) {
        let again = Config::from_yaml(&cfg.to_yaml()).expect("a printed config parses");
        assert_eq!(again, cfg);
    }
});
