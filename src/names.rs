//! Names the program resolved: `getaddrinfo` tells us which name an address was looked up
//! by, so that `connect(ip)` can be judged (allow and block lists name hosts) and labelled.

use crate::int_hash::{int_map, IntMap};
use crate::sync::SpinLock;
use std::net::IpAddr;
use std::sync::Arc;

/// Enough for any real program's working set of API hosts; on overflow we forget all
/// rather than grow without bound (a forgotten name only costs a less precise match until
/// the program resolves it again).
const CAPACITY: usize = 4096;

/// Shared (`Arc`): each connection to an address holds its name without a copy.
static NAMES: SpinLock<IntMap<IpAddr, Arc<str>>> = SpinLock::new(int_map());

pub fn remember(ip: IpAddr, name: &str) {
    let name: Arc<str> = name.trim_end_matches('.').to_ascii_lowercase().into();
    let mut names = NAMES.lock();
    let map = &mut *names;
    if map.len() >= CAPACITY && !map.contains_key(&ip) {
        map.clear();
    }
    map.insert(ip, name);
}

pub fn lookup(ip: IpAddr) -> Option<Arc<str>> {
    NAMES.lock().get(&ip).cloned()
}

/// For a forked child: the parent's other threads may have held the lock.
pub fn after_fork_in_child() {
    NAMES.force_unlock();
}
