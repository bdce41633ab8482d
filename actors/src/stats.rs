//! Per-actor counters for `troupe admin actors` and the metrics endpoint.
//!
//! Every actor kind registers one [`ActorCounters`]; senders bump `sent` through
//! [`ActorCounters::sent`] and handlers bump `handled`, so `sent - handled` is the number of
//! messages waiting in (or being handled from) the mailbox. Per-connection actors share one
//! entry and count `instances`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use troupe_protocol::admin::ActorStat;

/// Counters of one actor kind. All relaxed atomics: they are statistics, not synchronization.
#[derive(Debug, Default)]
pub struct ActorCounters {
    pub name: String,
    instances: AtomicU64,
    sent: AtomicU64,
    handled: AtomicU64,
    errors: AtomicU64,
}

impl ActorCounters {
    pub fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }
    pub fn handled(&self) {
        self.handled.fetch_add(1, Relaxed);
    }
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }
    pub fn started(&self) {
        self.instances.fetch_add(1, Relaxed);
    }
    pub fn stopped(&self) {
        self.instances.fetch_sub(1, Relaxed);
    }
    pub fn instances(&self) -> u64 {
        self.instances.load(Relaxed)
    }
    pub fn snapshot(&self) -> ActorStat {
        let sent = self.sent.load(Relaxed);
        let handled = self.handled.load(Relaxed);
        ActorStat {
            name: self.name.clone(),
            instances: self.instances.load(Relaxed),
            mailbox: sent.saturating_sub(handled),
            handled,
            errors: self.errors.load(Relaxed),
        }
    }
}

/// The node's set of actor counters, in registration order.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    actors: Arc<Mutex<Vec<Arc<ActorCounters>>>>,
}

impl Registry {
    /// Returns the counters for `name`, creating them on first use.
    pub fn actor(&self, name: &str) -> Arc<ActorCounters> {
        let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = actors.iter().find(|a| a.name == name) {
            return a.clone();
        }
        let a = Arc::new(ActorCounters {
            name: name.to_string(),
            ..ActorCounters::default()
        });
        actors.push(a.clone());
        a
    }

    pub fn snapshot(&self) -> Vec<ActorStat> {
        let actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors.iter().map(|a| a.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_is_sent_minus_handled() {
        let reg = Registry::default();
        let a = reg.actor("memtable");
        a.started();
        a.sent();
        a.sent();
        a.handled();
        a.error();
        assert!(Arc::ptr_eq(&a, &reg.actor("memtable")));
        let s = &reg.snapshot()[0];
        assert_eq!((s.instances, s.mailbox, s.handled, s.errors), (1, 1, 1, 1));
    }
}
