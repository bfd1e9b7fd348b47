//! Runs a contract's shared checks (`log::conformance`, `remote::conformance`,
//! `ledger::conformance`), each on a fixture of its own, naming the check that failed.

/// A contract's checks by name, each taking a fixture `F`.
pub type Checks<'a, F> = &'a [(&'a str, fn(&F))];

/// Runs every `(name, check)` of `contract` on a fresh fixture; panics naming the first
/// that failed and why.
pub fn run<F: ?Sized>(contract: &str, checks: Checks<'_, F>, fresh: &dyn Fn() -> Box<F>) {
    for (name, check) in checks {
        let fixture = fresh();
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(fixture.as_ref()))) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{contract} conformance check {name} failed: {why}");
        }
    }
}
