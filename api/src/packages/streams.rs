//! Slots for Server-Sent Event streams: `operations.max_event_streams` per process, of which
//! one principal holds at most `operations.max_event_streams_per_principal`, each for at most
//! `operations.max_event_stream_seconds`. A slot is held by its stream and released when the
//! stream is dropped: at the operation's final state, at the time limit, or as soon as the
//! client closes the connection (the server does not keep half-closed connections, so a
//! client's FIN ends the response at once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct EventStreamSlots {
    total: Arc<Semaphore>,
    per_principal: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
    pub max_duration: Duration,
}

/// Why no slot was given.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot of the process is taken.
    Full,
    /// This principal holds its share already.
    PrincipalFull { limit: usize },
}

/// One stream's slot; dropping it frees it.
pub struct Slot {
    _total: OwnedSemaphorePermit,
    holder: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

impl EventStreamSlots {
    pub fn new(total: usize, per_principal: usize, max_duration: Duration) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_principal,
            held: Default::default(),
            max_duration,
        }
    }

    /// A slot for a stream of `holder` (a principal's [`depot_core::Principal::actor`]).
    pub fn acquire(&self, holder: &str) -> Result<Slot, NoSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.get(holder).copied().unwrap_or(0);
        if mine >= self.per_principal {
            return Err(NoSlot::PrincipalFull {
                limit: self.per_principal,
            });
        }
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| NoSlot::Full)?;
        held.insert(holder.to_owned(), mine + 1);
        Ok(Slot {
            _total: total,
            holder: holder.to_owned(),
            held: self.held.clone(),
        })
    }

    /// Slots in use.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_holds_its_share_and_dropped_slots_come_back() {
        let slots = EventStreamSlots::new(3, 2, Duration::from_secs(60));
        let a1 = slots.acquire("api_key:a").unwrap();
        let _a2 = slots.acquire("api_key:a").unwrap();
        assert_eq!(
            slots.acquire("api_key:a").err(),
            Some(NoSlot::PrincipalFull { limit: 2 })
        );
        let _b1 = slots.acquire("user:b").unwrap();
        assert_eq!(slots.acquire("user:c").err(), Some(NoSlot::Full));
        assert_eq!(slots.in_use(), 3);
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        let _a3 = slots.acquire("api_key:a").unwrap();
        assert_eq!(slots.acquire("user:b").err(), Some(NoSlot::Full));
    }
}
