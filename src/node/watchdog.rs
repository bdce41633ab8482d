//! The systemd watchdog: `WATCHDOG=1` every half of `WATCHDOG_USEC`, sent from a task on the
//! node's main (System) arbiter. The coordinator, the admin actor, membership and the
//! listeners share that event loop, so a loop wedged by a blocking call or a livelock stops
//! the pings and systemd (`WatchdogSec=` in deploy/systemd/troupe@.service) kills and
//! restarts the node. Without `WATCHDOG_USEC` (not under systemd, or no `WatchdogSec=`)
//! nothing is sent.
//!
//! Test hook, debug builds only: `TROUPE_TEST_WEDGE_AFTER_PINGS=N` blocks the main event
//! loop's thread after the N-th ping (announced as `STATUS=` first), so a test sees the
//! pings stop. Release builds never read it.

use std::time::Duration;

/// The test hook's environment variable.
const WEDGE_ENV: &str = "TROUPE_TEST_WEDGE_AFTER_PINGS";

/// How often to ping for a watchdog timeout of `timeout`: half of it, as sd_watchdog_enabled(3)
/// recommends, so one late tick does not trip it. `None` (no watchdog) for a zero timeout.
pub(crate) fn ping_interval(timeout: Option<Duration>) -> Option<Duration> {
    timeout
        .filter(|t| !t.is_zero())
        .map(|t| (t / 2).max(Duration::from_millis(1)))
}

/// Parses the test hook's value: a positive ping count, else no hook.
fn wedge_after(value: Option<&str>) -> Option<u64> {
    value.and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0)
}

/// Spawns the ping task on the current arbiter (call it on the System arbiter, after
/// READY=1). Does nothing when systemd asked for no watchdog.
pub(crate) fn start() {
    let Some(every) = ping_interval(sd_notify::watchdog_enabled()) else {
        return;
    };
    let wedge = if cfg!(debug_assertions) {
        wedge_after(std::env::var(WEDGE_ENV).ok().as_deref())
    } else {
        None
    };
    log::info!("systemd watchdog: pinging every {every:?} from the main event loop");
    actix::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                log::warn!("systemd watchdog ping failed: {e}");
            }
            sent += 1;
            if wedge == Some(sent) {
                // A separate task, so that it is the blocked loop, not this task ending,
                // that stops the next ping.
                actix::spawn(wedge_main_loop());
            }
        }
    });
}

/// Test hook: blocks the current arbiter's thread for good.
async fn wedge_main_loop() {
    log::warn!("{WEDGE_ENV}: wedging the main event loop (test hook)");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(
        "wedging the main event loop (test hook)",
    )]);
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_timeout() {
        assert_eq!(
            ping_interval(Some(Duration::from_secs(10))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            ping_interval(Some(Duration::from_micros(1))),
            Some(Duration::from_millis(1))
        );
        assert_eq!(ping_interval(Some(Duration::ZERO)), None);
        assert_eq!(ping_interval(None), None);
    }

    #[test]
    fn wedge_hook_takes_a_positive_count_only() {
        assert_eq!(wedge_after(Some("3")), Some(3));
        assert_eq!(wedge_after(Some("0")), None);
        assert_eq!(wedge_after(Some("x")), None);
        assert_eq!(wedge_after(None), None);
    }
}
