//! The config parser: any text goes through `Config::parse` (TOML, then the
//! rules' regexes) and, when it parses, through `validate`. Neither may
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut config) = Config::parse(text) {
        // validate reads password files; a fuzzer must not open paths of
        // its choosing (reading /dev/zero never ends).
        for user in &mut config.users {
            user.password_file = None;
        }
        let _ = config.validate();
    }
});
