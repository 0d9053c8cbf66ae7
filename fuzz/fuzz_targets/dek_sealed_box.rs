#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyport::fuzzing::dek_sealed_box(data));
