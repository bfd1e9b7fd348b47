//! Fuzz target `fit`: see [`vitals_fuzz::fit_file`] for what it checks.
//!
//! `vitals_ingest::fit` catches a panic of the third-party FIT reader (`fitparser` overflows
//! on some cut headers in builds with overflow checks) and refuses the rest of the file;
//! libFuzzer's abort-on-panic hook would end the run before that, so the hook is muted here.
//! A panic that escapes `decode` still aborts the run.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    vitals_fuzz::fit_file(data)
});
