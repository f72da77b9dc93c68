//! See `weir_fuzz_checks::request_head` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz_checks::request_head(data));
