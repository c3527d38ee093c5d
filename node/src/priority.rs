//! Lower CPU priority for a node's bulk work (publishing batches, the fjall store's flushes
//! and compactions), so that lookups run first while an import keeps the cores busy, and a
//! bound on how many bulk threads run at once.

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

/// Bulk threads of this process running at once: a batch beyond them waits for its turn
/// (nothing is refused). One write commits at a time anyway; a few more let the next
/// batches decode and read ahead meanwhile.
pub(crate) const BULK_THREADS: usize = 4;

static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BULK_THREADS);

/// Starts `f` on a thread of its own at the lower priority.
fn spawn_lowered<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name("huren-bulk".into()).spawn(move || {
        lower();
        f()
    })
}

/// Runs `f` on a thread of its own at the lower priority and returns what it returns.
pub(crate) fn run_lowered<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    spawn_lowered(f)?.join().map_err(|_| std::io::Error::other("a lowered-priority thread panicked"))
}

/// Runs `f` on a thread of its own at the lower priority once one of the [`BULK_THREADS`]
/// turns is free, and hands back what it returns. The turn is held by the thread, so a
/// caller that stops waiting (a cancelled call) does not free it before the work is done.
pub(crate) async fn run_bulk<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    run_taking(&TURNS, f).await
}

/// [`run_bulk`] with the turns given.
async fn run_taking<T: Send + 'static>(
    turns: &'static tokio::sync::Semaphore,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let turn = turns.acquire().await.map_err(|_| std::io::Error::other("the bulk-work turns were closed"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn_lowered(move || {
        let _turn = turn;
        let _ = tx.send(f());
    })?;
    rx.await.map_err(|_| std::io::Error::other("the bulk-work thread stopped without an answer (it panicked)"))
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

    /// At most so many bulk jobs run at once (as many as there are turns); the others wait
    /// for a turn, and all of them finish.
    #[tokio::test]
    async fn bulk_work_runs_at_most_so_many_at_once_and_all_of_it_finishes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        const TURNS: usize = 3;
        let turns: &'static tokio::sync::Semaphore = Box::leak(Box::new(tokio::sync::Semaphore::new(TURNS)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Every job waits until a full set of turns runs at once: more than TURNS at once
        // would show in `most`.
        let barrier = Arc::new(std::sync::Barrier::new(TURNS));
        let mut jobs = tokio::task::JoinSet::new();
        for i in 0..TURNS * 4 {
            let (running, most, barrier) = (running.clone(), most.clone(), barrier.clone());
            jobs.spawn(super::run_taking(turns, move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                barrier.wait();
                running.fetch_sub(1, Ordering::SeqCst);
                i
            }));
        }
        let mut done: Vec<usize> = jobs.join_all().await.into_iter().map(|r| r.unwrap()).collect();
        done.sort_unstable();
        assert_eq!(done, (0..TURNS * 4).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), TURNS);
    }
}
