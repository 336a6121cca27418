#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeboat::fuzzing::pack_header(data));
