#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coder_agentsdk_fuzz::targets::api_error(data));
