//! yamux keepalive: ping the peer at an interval and end the session when a
//! ping is not answered in time, as hashicorp/yamux does by default
//! (`EnableKeepAlive`, `KeepAliveInterval` 30 s, and `ConnectionWriteTimeout`
//! 10 s as the time a ping may take; on a miss Go's session exits with
//! `ErrKeepAliveTimeout`).
//!
//! The `yamux` crate (0.14.1) has no ping API: it only sends its own
//! round-trip pings (opaque ids 0, 1, 2, …, one every 10 s while its
//! connection is polled) and never gives up on an unanswered one. It also
//! treats an ACK it did not ask for as a protocol error (GoAway, session
//! over). So this module works beside it on the raw byte stream:
//!
//! * [`Pinger`] is the timer, run by the session's driver task. When a ping is
//!   due it asks the transport tap to send one; when the timeout passes with
//!   no answer the driver ends the session with
//!   [`MuxError::PeerNotResponding`](super::yamux::MuxError::PeerNotResponding).
//! * The tap (in `yamux.rs`) follows the frame boundaries of both directions.
//!   It writes the Ping(SYN) frame (12 bytes: version 0, type 2, flag SYN,
//!   stream 0, the opaque id) between two of yamux's frames, and removes the
//!   matching Ping(ACK) from the inbound bytes before yamux parses them.
//!
//! The tap also answers the peer's pings itself (Ping(ACK), same opaque id,
//! as hashicorp and the `yamux` crate do) instead of passing them to the
//! crate: yamux 0.14.1 stops reading while it owes a pong it cannot write
//! (rust-yamux issue #227), so two of its sessions with full pipes both ways
//! would stop for good; the tap keeps reading and sends its answers at the
//! next frame boundary (at most [`MAX_PENDING_PONGS`] wait; under a flood
//! the excess is not answered, as nothing may grow without bound).
//!
//! Our opaque ids have the top bit set ([`OWN_PING_BIT`]) and yamux's count
//! up from 0, so the two never collide within 2^31 pings. Only the pong
//! counts as an answer: a peer that keeps sending data but ignores pings is
//! treated like Go treats it (dead after the timeout).
//!
//! The module knows frames only as far as the ping needs: nothing of streams,
//! DRPC or websockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Go's `yamux.DefaultConfig().KeepAliveInterval`.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Go's `yamux.DefaultConfig().ConnectionWriteTimeout`, which bounds how
/// long a keepalive ping may wait for its answer.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers to the peer's pings waiting to be written, at most.
pub const MAX_PENDING_PONGS: usize = 64;

/// The top bit of every opaque id this module sends.
pub const OWN_PING_BIT: u32 = 0x8000_0000;

/// yamux frame type of a Ping.
const TYPE_PING: u8 = 2;
/// yamux flags.
const FLAG_SYN: u16 = 0x1;
const FLAG_ACK: u16 = 0x2;

/// Marks a slot of [`PingSlots`] as holding an id (ids themselves may be 0).
const PRESENT: u64 = 1 << 32;

/// The 12 bytes of a Ping(SYN) frame with `id`.
pub fn ping_frame(id: u32) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[1] = TYPE_PING;
    f[2..4].copy_from_slice(&FLAG_SYN.to_be_bytes());
    // stream id 0 (session level)
    f[8..12].copy_from_slice(&id.to_be_bytes());
    f
}

/// The 12 bytes of a Ping(ACK) answering the peer's ping `id`.
pub fn pong_frame(id: u32) -> [u8; 12] {
    let mut f = ping_frame(id);
    f[2..4].copy_from_slice(&FLAG_ACK.to_be_bytes());
    f
}

/// If `header` is the peer's Ping(SYN), its opaque id (to be echoed in our ACK).
pub fn peer_ping_id(header: &[u8; 12]) -> Option<u32> {
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let id = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    (header[0] == 0 && header[1] == TYPE_PING && flags & FLAG_SYN != 0).then_some(id)
}

/// If `header` is a Ping(ACK) answering one of our pings, its opaque id.
pub fn own_pong_id(header: &[u8; 12]) -> Option<u32> {
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let id = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    (header[0] == 0
        && header[1] == TYPE_PING
        && flags & FLAG_ACK != 0
        && flags & FLAG_SYN == 0
        && id & OWN_PING_BIT != 0)
        .then_some(id)
}

/// What the timer and the tap tell each other. Both live in the driver task;
/// atomics only make the shared state `Sync`.
#[derive(Debug, Default)]
pub struct PingSlots {
    /// A ping the tap should send: `PRESENT | id`, or 0.
    to_send: AtomicU64,
    /// The last pong the tap removed from the inbound bytes: `PRESENT | id`, or 0.
    answered: AtomicU64,
}

impl PingSlots {
    /// The ping waiting to be written, taken out of the slot.
    pub fn take_ping(&self) -> Option<u32> {
        let v = self.to_send.swap(0, Ordering::AcqRel);
        (v & PRESENT != 0).then_some(v as u32)
    }

    /// Whether a ping waits to be written.
    pub fn ping_waiting(&self) -> bool {
        self.to_send.load(Ordering::Acquire) & PRESENT != 0
    }

    /// Records a pong seen by the tap.
    pub fn pong(&self, id: u32) {
        self.answered.store(PRESENT | u64::from(id), Ordering::Release);
    }

    fn request(&self, id: u32) {
        self.to_send.store(PRESENT | u64::from(id), Ordering::Release);
    }

    fn answered(&self, id: u32) -> bool {
        self.answered.load(Ordering::Acquire) == PRESENT | u64::from(id)
    }
}

/// Keepalive settings: how often to ping, how long an answer may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Time between the answer to one ping and the next ping (Go's
    /// `KeepAliveInterval`, default 30 s).
    pub interval: Duration,
    /// How long a ping may go unanswered before the session ends (default
    /// 10 s, Go's `ConnectionWriteTimeout`).
    pub timeout: Duration,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            interval: DEFAULT_KEEPALIVE_INTERVAL,
            timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Next ping when the sleep ends.
    Idle,
    /// Ping `id` requested; the sleep ends at its deadline.
    Waiting { id: u32 },
}

/// The keepalive timer of one session, polled by its driver task.
#[derive(Debug)]
pub struct Pinger {
    config: KeepaliveConfig,
    sleep: Pin<Box<Sleep>>,
    /// Whether `sleep` has been polled since its last reset, so it will
    /// wake the driver: later polls only look at `is_elapsed` (the driver
    /// polls on every frame; a timer poll each time would cost).
    armed: bool,
    state: State,
    next_id: u32,
    /// Pings answered so far (for tests and diagnostics).
    answered: u64,
}

impl Pinger {
    /// A timer whose first ping goes out one interval from now.
    pub fn new(config: KeepaliveConfig) -> Self {
        Pinger {
            config,
            sleep: Box::pin(tokio::time::sleep(config.interval)),
            armed: false,
            state: State::Idle,
            next_id: 0,
            answered: 0,
        }
    }

    /// Whether the sleep has ended; registers the driver's waker once per reset.
    fn elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            return self.sleep.as_mut().poll(cx).is_ready();
        }
        self.sleep.is_elapsed()
    }

    fn reset(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.armed = false;
    }

    /// The timeout, for the error that reports a miss.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Advances the timer. Call after the tap has had its chance to see
    /// pongs (after polling the connection) and whenever the task wakes.
    /// `Ready(())` means the current ping went unanswered: the session must
    /// end. Otherwise the sleep is registered with `cx`.
    pub fn poll(&mut self, cx: &mut Context<'_>, slots: &PingSlots) -> Poll<()> {
        loop {
            match self.state {
                State::Waiting { id } if slots.answered(id) => {
                    self.answered += 1;
                    self.state = State::Idle;
                    self.reset(Instant::now() + self.config.interval);
                }
                State::Waiting { id } => {
                    if self.elapsed(cx) {
                        tracing::debug!(id, timeout = ?self.config.timeout, "yamux keepalive ping unanswered");
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
                State::Idle => {
                    if !self.elapsed(cx) {
                        return Poll::Pending;
                    }
                    let id = OWN_PING_BIT | (self.next_id & !OWN_PING_BIT);
                    self.next_id = self.next_id.wrapping_add(1);
                    slots.request(id);
                    self.state = State::Waiting { id };
                    self.reset(Instant::now() + self.config.timeout);
                    // Wake at once so the connection is polled and the tap
                    // writes the ping.
                    cx.waker().wake_by_ref();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_frame_matches_hashicorp_layout() {
        // Same layout as the vector's "00 02 0001 00000000 00000000" with our id.
        let f = ping_frame(0x8000_0005);
        assert_eq!(f, [0, 2, 0, 1, 0, 0, 0, 0, 0x80, 0, 0, 5]);
    }

    #[test]
    fn only_acks_of_our_ids_are_recognised_as_pongs() {
        let mut ack = ping_frame(0x8000_0005);
        ack[3] = 2; // flags = ACK
        assert_eq!(own_pong_id(&ack), Some(0x8000_0005));
        // yamux's own RTT pong (id 0) is left for yamux.
        let mut theirs = ping_frame(0);
        theirs[3] = 2;
        assert_eq!(own_pong_id(&theirs), None);
        // A SYN (the peer pinging us) is not a pong; it is answered with the same id.
        assert_eq!(own_pong_id(&ping_frame(0x8000_0005)), None);
        assert_eq!(peer_ping_id(&ping_frame(7)), Some(7));
        assert_eq!(peer_ping_id(&ack), None);
        assert_eq!(pong_frame(7), [0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
        // A data frame with the same length field is not a pong.
        let mut data = ack;
        data[1] = 0;
        assert_eq!(own_pong_id(&data), None);
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_ping_ends_after_interval_plus_timeout_and_answered_ping_rearms() {
        let config = KeepaliveConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        };
        let slots = PingSlots::default();
        let mut pinger = Pinger::new(config);
        let start = Instant::now();
        // First ping due after 30 s; answer it.
        std::future::poll_fn(|cx| {
            let _ = pinger.poll(cx, &slots);
            if slots.ping_waiting() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        let id = slots.take_ping().unwrap();
        assert!(id & OWN_PING_BIT != 0);
        slots.pong(id);
        // Second ping: 30 s after the answer; leave it unanswered.
        let second = Instant::now();
        std::future::poll_fn(|cx| pinger.poll(cx, &slots)).await;
        assert_eq!(second.elapsed(), Duration::from_secs(40));
        assert_eq!(pinger.answered, 1);
        assert_ne!(slots.take_ping(), Some(id), "each ping has a new id");
    }
}
