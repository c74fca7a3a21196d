//! An ordered parallel map: workers take items in turn and work on them at once, one sink
//! receives the results in the items' order. At most a window of items is between being taken
//! and being sunk, so memory stays bounded however far ahead the workers could run.

use std::collections::BTreeMap;
use std::io;
use std::sync::{mpsc, Condvar, Mutex};

/// What the workers share: the items, and how far the sink has come.
struct Feed<I> {
    items: I,
    /// The sequence number of the next item taken.
    taken: u64,
    /// How many results the sink has received.
    sunk: u64,
    /// The sink failed: workers stop.
    stop: bool,
}

/// Runs `work` on every item on `threads` threads, each with its own `state()`, and passes
/// the results to `sink` in the order of `items`. Stops at the first error of `sink`, which it
/// returns.
pub fn ordered_map<I, T, R, S>(
    items: I,
    threads: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, T) -> R + Sync,
    mut sink: impl FnMut(R) -> io::Result<()>,
) -> io::Result<()>
where
    I: Iterator<Item = T> + Send,
    R: Send,
{
    let threads = threads.max(1);
    let window = threads as u64 * 4;
    let feed = Mutex::new(Feed {
        items,
        taken: 0,
        sunk: 0,
        stop: false,
    });
    let room = Condvar::new();
    let (tx, rx) = mpsc::channel::<(u64, R)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (feed, room, state, work) = (&feed, &room, &state, &work);
            scope.spawn(move || {
                let _stop = StopOnPanic(feed, room);
                let mut own = state();
                while let Some((seq, item)) = take(feed, room, window) {
                    if tx.send((seq, work(&mut own, item))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut next = 0;
        let result = rx.iter().try_for_each(|(seq, r)| {
            pending.insert(seq, r);
            while let Some(r) = pending.remove(&next) {
                sink(r)?;
                next += 1;
                feed.lock().unwrap().sunk = next;
                room.notify_all();
            }
            Ok(())
        });
        if result.is_err() {
            feed.lock().unwrap().stop = true;
            room.notify_all();
        }
        result
    })
}

/// Stops the other workers when its worker panics: its result will never come, so without
/// this they would wait for room in the window forever, and the sink for them.
struct StopOnPanic<'a, I>(&'a Mutex<Feed<I>>, &'a Condvar);

impl<I> Drop for StopOnPanic<'_, I> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
            self.1.notify_all();
        }
    }
}

/// The next item and its sequence number, once the window has room; None when the items
/// are done or the sink failed.
fn take<I: Iterator>(feed: &Mutex<Feed<I>>, room: &Condvar, window: u64) -> Option<(u64, I::Item)> {
    let mut f = feed.lock().unwrap();
    while !f.stop && f.taken >= f.sunk + window {
        f = room.wait(f).unwrap();
    }
    if f.stop {
        return None;
    }
    let item = f.items.next()?;
    f.taken += 1;
    Some((f.taken - 1, item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn results_arrive_in_order_and_within_the_window() {
        for threads in [1, 2, 5] {
            let taken = AtomicU64::new(0);
            let mut got = Vec::new();
            ordered_map(
                0..200u64,
                threads,
                || (),
                |_, i| {
                    taken.fetch_add(1, Ordering::SeqCst);
                    // Later items finish sooner, so the results come out of order.
                    std::thread::sleep(Duration::from_micros((200 - i) % 7 * 100));
                    i * 3
                },
                |r| {
                    let ahead = taken.load(Ordering::SeqCst) - got.len() as u64;
                    assert!(ahead <= threads as u64 * 4, "{ahead} taken ahead");
                    got.push(r);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got, (0..200).map(|i| i * 3).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panicking_worker_ends_the_map_with_its_panic() {
        let outcome = std::panic::catch_unwind(|| {
            ordered_map(
                0..1000u64,
                2,
                || (),
                |_, i| {
                    assert_ne!(i, 5, "worker panics");
                    i
                },
                |_| Ok(()),
            )
        });
        assert!(outcome.is_err());
    }

    #[test]
    fn a_failing_sink_stops_the_workers() {
        let taken = AtomicU64::new(0);
        let err = ordered_map(
            0..100_000u64,
            3,
            || (),
            |_, i| {
                taken.fetch_add(1, Ordering::SeqCst);
                i
            },
            |r| match r {
                10 => Err(io::Error::other("full disk")),
                _ => Ok(()),
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "full disk");
        assert!(taken.load(Ordering::SeqCst) <= 11 + 12, "stopped early");
    }
}
