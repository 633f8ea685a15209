//! Memory and table ceilings for one store, with the peak it reached.

use wasmtime::ResourceLimiter;

/// Limits the total linear memory of every instance in a store and records the peak.
///
/// Growth beyond the limit is refused (the guest's `memory.grow` returns -1) rather than trapped:
/// a guest may handle the failure. When it does not, and traps, the runtime reads
/// [`MemoryLimiter::refused`] to report the run as out of memory instead of a plain trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    max_table_elements: usize,
    /// Sum of the current sizes of all memories in the store.
    total: u64,
    /// Highest `total` reached.
    peak: u64,
    /// The first growth refused: the total the guest asked for.
    refused: Option<u64>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64, max_table_elements: usize) -> Self {
        Self {
            limit,
            max_table_elements,
            total: 0,
            peak: 0,
            refused: None,
        }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// The total memory the guest asked for when it was first refused, if it ever was.
    pub(crate) fn refused(&self) -> Option<u64> {
        self.refused
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.total + (desired - current) as u64;
        if wanted > self.limit || maximum.is_some_and(|m| desired > m) {
            self.refused.get_or_insert(wanted);
            return Ok(false);
        }
        self.total = wanted;
        self.peak = self.peak.max(wanted);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements && maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_growth_past_the_total_and_remembers_it() {
        let mut l = MemoryLimiter::new(100, 10);
        assert!(l.memory_growing(0, 60, None).unwrap_or(false));
        assert!(l.memory_growing(0, 30, None).unwrap_or(false));
        assert!(!l.memory_growing(60, 80, None).unwrap_or(true));
        assert_eq!(l.peak(), 90);
        assert_eq!(l.refused(), Some(110));
        assert!(l.table_growing(0, 10, None).unwrap_or(false));
        assert!(!l.table_growing(0, 11, None).unwrap_or(true));
    }
}
