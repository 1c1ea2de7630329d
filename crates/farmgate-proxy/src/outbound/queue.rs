//! The cap on requests in flight per server (`max_connections_per_server`) and the queue of
//! requests waiting for a server below it (`queue_timeout`).
//!
//! A **slot** is one request on one server, from the moment the server is chosen until its
//! response body has ended, failed, or been dropped (the client went away): an HTTP/1.1
//! connection in use, or an HTTP/2 stream. A WebSocket holds its slot while its tunnel is open.
//! Health checks take none. The [`Slot`] guard frees it when dropped, so every error path and
//! every client abort frees it too.
//!
//! A server with all its slots taken is not eligible, as nginx's `max_conns` makes it: the
//! balancer chooses among the servers that have a free slot, so a `hash` key whose server is
//! full goes, as when that server is down, to the next one on its ring. When every server that
//! can take requests is full, the request waits in its **upstream's** queue, first come first
//! served, and the request at the head takes the first slot that frees on *any* server of the
//! upstream (chosen again by the balancer among those with a free slot). One queue per upstream
//! rather than one per server: a request never waits for a busy server while another has room.
//! Tokio's mutex is fair (FIFO), so the line is the order of its waiters on [`Line::turn`];
//! only the request holding the turn waits for a slot. After `queue_timeout` the request is
//! answered `503` (`UpstreamFailure::QueueTimeout`). A retry on another server (see
//! `upstream`) never queues: it takes a free slot at once or is not made.
//!
//! The slots and the queue outlive generations (`generation::Lasting` keeps them by upstream
//! name, and each server's by its address), so a reload neither resets nor doubles the cap:
//! requests still in flight on the old generation count against the same server. A reload that
//! changes `max_connections_per_server` resizes the same counters when its generation is swapped
//! in (`Generation::inherit`), so a reload that fails changes nothing. Turning the cap on counts
//! the requests that start after the reload only.
//!
//! Without a cap none of this exists: `UpstreamRt::dispatch` picks a server exactly as before,
//! with no lock, no allocation and no atomic operation of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use farmgate_admin::{Gauge, Throttle};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::failure::Seconds;

/// An upstream's queue and its servers' slots: the same for every generation of one server.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    line: Arc<Line>,
    /// Each server's slots, by address.
    servers: Mutex<BTreeMap<String, Arc<Slots>>>,
    /// Requests answered `503` after `queue_timeout`, since start.
    timeouts: AtomicU64,
    /// When the last summary was written, and the timeouts since.
    logged: Throttle,
}

/// The requests waiting, and what wakes them.
#[derive(Debug, Default)]
struct Line {
    /// Requests waiting now (in line, or at its head).
    waiting: AtomicUsize,
    /// Held by the request at the head of the line; the others wait for it in order.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the head of the line when a slot frees or the cap grows.
    freed: Notify,
}

/// One server's slots.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Slots taken now (by any generation).
    in_use: AtomicU32,
    /// `max_connections_per_server`.
    cap: AtomicU32,
    line: Arc<Line>,
}

/// A slot taken on a server, freed when dropped.
#[derive(Debug)]
#[must_use = "the slot is freed when the guard is dropped"]
pub(crate) struct Slot(Arc<Slots>);

/// What one look for a free slot found.
#[derive(Debug)]
pub(crate) enum Take<T> {
    /// A slot (and whatever the caller took with it).
    Got(T),
    /// Servers can take requests, but all of them are full.
    Full,
    /// No server can take requests (down, ejected, or tried already): waiting is pointless.
    NoServer,
}

/// The request waited `queue_timeout` in vain.
#[derive(Debug)]
pub(crate) struct TimedOut;

impl Queue {
    /// The slots of server `address`, made with `cap` slots if it has none yet (the cap of
    /// existing slots changes with [`Slots::resize`], when a generation is swapped in).
    pub(crate) fn slots(&self, address: &str, cap: u32) -> Arc<Slots> {
        let mut servers = self.servers.lock();
        servers
            .entry(address.to_owned())
            .or_insert_with(|| {
                Arc::new(Slots {
                    in_use: AtomicU32::new(0),
                    cap: AtomicU32::new(cap),
                    line: self.line.clone(),
                })
            })
            .clone()
    }

    /// Forget the slots of servers not in `addresses` (requests holding their slots keep them).
    pub(crate) fn keep_servers(&self, addresses: &[&str]) {
        self.servers
            .lock()
            .retain(|address, _| addresses.contains(&address.as_str()));
    }

    /// Whether no request is waiting: then a new one may take a free slot at once without
    /// passing anyone.
    pub(crate) fn is_empty(&self) -> bool {
        self.line.waiting.load(Ordering::SeqCst) == 0
    }

    /// Requests waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.line.waiting.load(Ordering::SeqCst)
    }

    /// Requests answered `503` after waiting `queue_timeout`, since start.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Wait in line, for at most `timeout`, until `take` finds a slot (or finds that no server
    /// can take the request at all). `take` is tried when this request reaches the head of
    /// the line and again whenever a slot frees; `waiting` counts the request while it waits.
    pub(crate) async fn wait<T>(
        &self,
        timeout: Duration,
        waiting: &Gauge,
        mut take: impl FnMut() -> Take<T>,
    ) -> Result<Take<T>, TimedOut> {
        let _counted = Waiting::enter(&self.line, waiting);
        let in_line = async {
            let _head = self.line.turn.lock().await;
            loop {
                // Made before looking, so that a slot freed after the look wakes it.
                let freed = self.line.freed.notified();
                match take() {
                    Take::Full => freed.await,
                    found => return found,
                }
            }
        };
        tokio::time::timeout_at(Instant::now() + timeout, in_line)
            .await
            .map_err(|_| {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                TimedOut
            })
    }

    /// Log that requests of `upstream` timed out in the queue: at most one line a second,
    /// saying how many did since the last one, so an overloaded farm does not flood the log.
    pub(crate) fn log_timeout(&self, upstream: &str, cap: u32, timeout: Duration) {
        let Some(before) = self.logged.admit() else {
            return;
        };
        // Ours included.
        let count = before + 1;
        tracing::warn!(
            %upstream,
            "upstream {upstream} is saturated: {count} request(s) found every server at max_connections_per_server = {cap} for queue_timeout {} and were answered 503 ({} waiting now)",
            Seconds(timeout),
            self.waiting(),
        );
    }
}

impl Slots {
    /// Whether a slot is free now.
    pub(crate) fn has_room(&self) -> bool {
        self.in_use.load(Ordering::SeqCst) < self.cap.load(Ordering::Relaxed)
    }

    /// Take a free slot, if there is one.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let cap = self.cap.load(Ordering::Relaxed);
        self.in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Slots taken now.
    pub(crate) fn in_use(&self) -> u32 {
        self.in_use.load(Ordering::SeqCst)
    }

    /// Change the cap to `cap`. Slots taken beyond a smaller cap stay taken until their
    /// requests end; a larger one lets waiting requests in at once.
    pub(crate) fn resize(&self, cap: u32) {
        if cap > self.cap.swap(cap, Ordering::SeqCst) {
            self.line.freed.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.0;
        slots.in_use.fetch_sub(1, Ordering::SeqCst);
        // Sequentially consistent with the waiter's count and look: either it sees this slot
        // free, or this sees it waiting and wakes it.
        if slots.line.waiting.load(Ordering::SeqCst) > 0 {
            slots.line.freed.notify_waiters();
        }
    }
}

/// A request counted as waiting until dropped: served, timed out, or abandoned by its client.
struct Waiting<'a> {
    line: &'a Line,
    gauge: &'a Gauge,
}

impl<'a> Waiting<'a> {
    fn enter(line: &'a Line, gauge: &'a Gauge) -> Waiting<'a> {
        line.waiting.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        Waiting { line, gauge }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.line.waiting.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    /// A queue whose one server has one slot, taken.
    fn full() -> (Arc<Queue>, Arc<Slots>, Gauge, Slot) {
        let queue = Arc::new(Queue::default());
        let slots = queue.slots("10.0.0.11:8443", 1);
        let held = slots.try_take().unwrap();
        (queue, slots, Gauge::default(), held)
    }

    fn take_from(slots: &Arc<Slots>) -> Take<Slot> {
        match slots.try_take() {
            Some(slot) => Take::Got(slot),
            None => Take::Full,
        }
    }

    #[test]
    fn a_server_takes_as_many_requests_as_its_cap_and_frees_them_on_drop() {
        let queue = Queue::default();
        let slots = queue.slots("10.0.0.11:8443", 2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert!(!slots.has_room());
        drop(a);
        assert_eq!(slots.in_use(), 1);
        let c = slots.try_take().unwrap();
        drop((b, c));
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn the_same_server_gets_the_same_slots_and_a_resize_keeps_those_taken() {
        let queue = Queue::default();
        let slots = queue.slots("10.0.0.11:8443", 2);
        let held = [slots.try_take().unwrap(), slots.try_take().unwrap()];
        // A reload: the same counters, whatever cap the build asked for.
        let again = queue.slots("10.0.0.11:8443", 5);
        assert!(Arc::ptr_eq(&slots, &again));
        assert!(again.try_take().is_none(), "the two taken still count");
        again.resize(1);
        drop(held);
        assert_eq!(again.in_use(), 0);
        let one = again.try_take().unwrap();
        assert!(again.try_take().is_none(), "the smaller cap holds");
        again.resize(3);
        let more = [again.try_take().unwrap(), again.try_take().unwrap()];
        assert_eq!(again.in_use(), 3);
        drop((one, more));
        queue.keep_servers(&[]);
        assert!(!Arc::ptr_eq(&slots, &queue.slots("10.0.0.11:8443", 2)));
    }

    #[tokio::test]
    async fn waiters_are_served_first_come_first_served() {
        let (queue, slots, gauge, held) = full();
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (line, slots, gauge, order_tx) = (
                queue.clone(),
                slots.clone(),
                gauge.clone(),
                order_tx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let got = line
                    .wait(Duration::from_secs(3600), &gauge, || take_from(&slots))
                    .await;
                let Ok(Take::Got(slot)) = got else {
                    panic!("waiter {i} got no slot")
                };
                order_tx.send(i).unwrap();
                slot
            }));
            // Each is in line before the next one comes.
            while queue.waiting() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(gauge.get(), 3);
        drop(held);
        let mut served = Vec::new();
        for task in tasks {
            drop(task.await.unwrap());
            served.push(order.recv().await.unwrap());
        }
        assert_eq!(served, [0, 1, 2]);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_timeout_and_leaves_the_line() {
        let (queue, slots, gauge, _held) = full();
        let got = queue
            .wait(Duration::from_millis(10), &gauge, || take_from(&slots))
            .await;
        assert!(matches!(got, Err(TimedOut)));
        assert_eq!(queue.timeouts(), 1);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_waiter_dropped_in_line_lets_the_next_one_in() {
        let (queue, slots, gauge, held) = full();
        let first = tokio::spawn({
            let (queue, slots, gauge) = (queue.clone(), slots.clone(), gauge.clone());
            async move {
                let _ = queue
                    .wait(Duration::from_secs(3600), &gauge, || take_from(&slots))
                    .await;
            }
        });
        while queue.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let (queue, slots, gauge) = (queue.clone(), slots.clone(), gauge.clone());
            async move {
                matches!(
                    queue
                        .wait(Duration::from_secs(3600), &gauge, || take_from(&slots))
                        .await,
                    Ok(Take::Got(_))
                )
            }
        });
        while queue.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        // The head's client goes away.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(queue.waiting(), 1);
        drop(held);
        assert!(second.await.unwrap());
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn no_server_at_all_ends_the_wait_at_once() {
        let queue = Queue::default();
        let got = queue
            .wait(Duration::from_secs(3600), &Gauge::default(), || {
                Take::<()>::NoServer
            })
            .await;
        assert!(matches!(got, Ok(Take::NoServer)));
    }
}
