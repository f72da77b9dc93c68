//! See `weir_fuzz_checks::response_head_split` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz_checks::response_head_split(data));
