//! The process's one wasmtime `Engine`, and the ticker that drives its epochs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::RuntimeConfig;

/// Table elements one instance may have. Rust and C guests use a few hundred to a few thousand.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Builds the engine: pooling allocator sized to the host's instance slots, epoch interruption
/// for timeouts and cancellation, fuel when the operator wants deterministic CPU budgets.
pub(crate) fn build(config: &RuntimeConfig) -> wasmtime::Result<Engine> {
    let slots = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A component built by wit-component holds a handful of core instances (the guest, the
    // WASI adapter, shims), each with up to a memory and a few tables.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 4)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
        .table_elements(MAX_TABLE_ELEMENTS);

    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .consume_fuel(config.fuel_metering)
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}

/// Increments the engine's epoch every `tick` on a dedicated OS thread (a tokio task would stall
/// behind spinning guests on a busy runtime). Stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("vauban-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
