//! Lower CPU priority for a node's bulk work (publishing batches, the fjall store's flushes
//! and compactions), so that lookups run first while an import keeps the cores busy.

/// How much the niceness of bulk work is raised above the node's own (at most to 19).
pub(crate) const BULK_NICENESS: i32 = 10;

/// Raises this thread's niceness by [`BULK_NICENESS`] (Linux; elsewhere nothing). Threads it
/// starts from then on inherit it. Best effort: raising one's own niceness is always
/// allowed, and a failure leaves the priority as it was.
#[cfg(target_os = "linux")]
pub(crate) fn lower() {
    use rustix::{process, thread};
    let me = Some(thread::gettid());
    if let Ok(now) = process::getpriority_process(me) {
        let _ = process::setpriority_process(me, (now + BULK_NICENESS).min(19));
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower() {}

/// Runs `f` on a thread of its own at the lower priority and returns what it returns.
pub(crate) fn run_lowered<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    std::thread::Builder::new()
        .name("huren-bulk".into())
        .spawn(move || {
            lower();
            f()
        })?
        .join()
        .map_err(|_| std::io::Error::other("a lowered-priority thread panicked"))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// A thread started at the lower priority runs at a niceness above its parent's (or at 19).
    #[test]
    fn work_run_lowered_runs_at_a_higher_niceness() {
        use rustix::{process, thread};
        let parent = process::getpriority_process(Some(thread::gettid())).unwrap();
        let child = super::run_lowered(|| process::getpriority_process(Some(thread::gettid())).unwrap()).unwrap();
        assert_eq!(child, (parent + super::BULK_NICENESS).min(19));
    }
}
