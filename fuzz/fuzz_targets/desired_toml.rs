//! See `weir_fuzz_checks::desired_toml` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz_checks::desired_toml(data));
