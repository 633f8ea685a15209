//! The host runtime: verify, compile once, and run modules in sandboxes.
//!
//! Verification is against the runtime's publisher keys (keys-only mode) or, when it holds a
//! trust policy, against the policy in force: its publisher threshold, revoked keys and revoked
//! digests. A module's imports are read once when it loads and checked against each run's
//! capabilities before the run is instantiated (`vauban_core::admission::check_imports`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vauban_core::admission::{check_imports, verify_module};
use vauban_core::outcome::{CapturedOutput, CodeSource};
use vauban_core::{
    Capabilities, ModuleDigest, ModuleImports, ModuleKind, ModuleRefusal, Outcome, RunReport,
    SignatureError, TrustStore, Verified,
};
use wasmtime::component::ResourceTable;
use wasmtime::component::types::{ComponentExtern, ComponentItem};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::cache::{ArtifactCache, Compiled};
use crate::engine::{EpochTicker, MAX_TABLE_ELEMENTS};
use crate::job::{JobHost, JobPre};
use crate::limiter::MemoryLimiter;
use crate::output::OutputSink;
use crate::roots::AllowedRoots;
use crate::sandbox::{self, Sandbox};
use crate::trust::PolicyHolder;

/// Operator settings of a host runtime. Plain data: the binary fills it from flags and files.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are cached (created owner-only if missing).
    pub cache_dir: PathBuf,
    /// Host directories under which guests may be given directories. Empty: none.
    pub allowed_roots: Vec<PathBuf>,
    /// Publisher keys whose signatures this host accepts (keys-only mode). Empty: nothing runs.
    /// Ignored when `policy` is set.
    pub trust: TrustStore,
    /// Policy mode: the trust policy this host holds, which replaces `trust`. A module then
    /// needs the policy's publisher threshold of unrevoked publisher keys and a digest it does
    /// not revoke; the agent also checks each job's grant against it.
    pub policy: Option<PolicyHolder>,
    /// Instances that may run at once; more runs wait for a free slot.
    pub max_instances: u32,
    /// The most linear memory any one instance may be given, in bytes.
    pub max_memory_bytes: u64,
    /// Count fuel, so runs can have a deterministic CPU budget and report what they used.
    /// Costs about 20 % of guest speed on branchy code.
    pub fuel_metering: bool,
    /// How often the epoch advances: the granularity of timeouts and cancellation.
    pub epoch_tick: Duration,
}

impl RuntimeConfig {
    /// Defaults for a host caching into `cache_dir`, with no roots and no trusted keys.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            allowed_roots: Vec::new(),
            trust: TrustStore::default(),
            policy: None,
            max_instances: 16,
            max_memory_bytes: 4 << 30,
            fuel_metering: true,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The engine could not be configured.
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
    /// A directory (cache or allowed root) could not be opened.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A module was refused before it could run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its signature did not verify against the trust store. Nothing was compiled.
    #[error("refused: {0}")]
    Signature(SignatureError),
    /// The trust policy refuses it: a revoked digest, or too few publisher signatures (a
    /// revoked signer not counted). Nothing was compiled.
    #[error("refused: {0}")]
    Policy(ModuleRefusal),
    /// It is not valid WebAssembly.
    #[error("invalid {kind}: {message}")]
    Invalid {
        /// Core module or component.
        kind: ModuleKind,
        /// What the validator said.
        message: String,
    },
    /// It is valid but not something Vauban runs: not a command, or it imports what the sandbox
    /// does not provide.
    #[error("cannot run this {kind}: {message}")]
    Unrunnable {
        /// Core module or component.
        kind: ModuleKind,
        /// Why.
        message: String,
    },
    /// The artifact cache failed.
    #[error("artifact cache: {0}")]
    Cache(std::io::Error),
}

// Written out rather than `#[from]`, which would also make the inner error the `source` and
// print its message twice in an error chain.
impl From<SignatureError> for LoadError {
    fn from(e: SignatureError) -> Self {
        Self::Signature(e)
    }
}

impl From<ModuleRefusal> for LoadError {
    fn from(e: ModuleRefusal) -> Self {
        match e {
            ModuleRefusal::Signature(e) => Self::Signature(e),
            other => Self::Policy(other),
        }
    }
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        Self::Cache(e)
    }
}

/// Counters since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Modules compiled with Cranelift.
    pub compiled: u64,
    /// Modules loaded from the on-disk cache.
    pub disk_cache_hits: u64,
    /// Loads served from modules already in memory.
    pub memory_hits: u64,
}

#[derive(Debug, Default)]
struct Counters {
    compiled: AtomicU64,
    disk_cache_hits: AtomicU64,
    memory_hits: AtomicU64,
}

/// What one run gets: its capabilities, its input, the name it sees as `argv[0]`, and where its
/// output goes live.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// Everything the guest may use.
    pub capabilities: Capabilities,
    /// Bytes on the guest's stdin.
    pub stdin: Vec<u8>,
    /// `argv[0]`.
    pub program: String,
    /// Receives the output the run keeps, as the guest writes it (the report still carries all
    /// of it). `None`: output is only in the report.
    pub output: Option<OutputSink>,
}

/// A verified, compiled module ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct LoadedModule {
    ready: Arc<Ready>,
    /// Where its code came from for this load.
    pub code_source: CodeSource,
    /// How long verifying and loading or compiling took.
    pub load_time: Duration,
}

impl LoadedModule {
    /// What verification established: digest, kind, signers.
    pub fn verified(&self) -> &Verified {
        &self.ready.verified
    }

    /// What the module imports, read when it was loaded.
    pub fn imports(&self) -> &ModuleImports {
        &self.ready.imports
    }

    /// How a run calls into it, as decided once when it was loaded.
    pub fn entry(&self) -> Entry {
        match self.ready.pre {
            Pre::Core(_) | Pre::Component(_) => Entry::Command,
            Pre::Job(_) => Entry::Job,
        }
    }
}

/// How a run calls into a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A WASI command: a preview-1 module's `_start` or a component's `wasi:cli/run`, with the
    /// run's stdin on WASI stdin and its configuration in `VAUBAN_CONFIG_<KEY>` environment
    /// variables; its exit status is its exit code.
    Command,
    /// A component of the `vauban:job` world (`wit/job.wit`): its `run` export is called with
    /// the run's stdin bytes (WASI stdin is then empty) and reads its configuration through
    /// `vauban:job/config` (its environment is `env` alone); what it returns is its stdout, or
    /// its error is logged on stderr and its code is the exit code.
    Job,
}

struct Ready {
    verified: Verified,
    /// The version of the trust policy it verified under; 0 in keys-only mode. A module
    /// verified under an older policy is verified again before it runs.
    policy_version: u64,
    imports: ModuleImports,
    pre: Pre,
}

/// Instantiation work done once per module, reused by every run. Which entry point a component
/// has is decided here, at load time, from its type.
enum Pre {
    Core(wasmtime::InstancePre<CoreState>),
    Component(CommandPre<ComponentState>),
    Job(JobPre<ComponentState>),
}

struct CoreState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    job: JobHost,
}

/// A store's state that carries its memory limiter.
trait Limited {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter;
}

impl Limited for CoreState {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }
}

impl Limited for ComponentState {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A host's runtime: one engine, its linkers, its caches and its instance slots.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    core_linker: wasmtime::Linker<CoreState>,
    /// WASI preview 2 and the `vauban:job` imports, for commands and job components alike (a
    /// command may import `vauban:job/log` too).
    component_linker: wasmtime::component::Linker<ComponentState>,
    trust: TrustStore,
    policy: Option<PolicyHolder>,
    cache: ArtifactCache,
    roots: AllowedRoots,
    /// One permit per instance the pooling allocator can hold: a full pool fails instantiation
    /// at once, so runs wait here instead.
    slots: Semaphore,
    /// Modules compiled or loaded in this process, by digest.
    loaded: Mutex<HashMap<ModuleDigest, Arc<Ready>>>,
    counters: Counters,
    fuel_metering: bool,
    max_memory_bytes: u64,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Starts a runtime: builds the engine, opens the cache and the allowed roots, starts the
    /// epoch ticker (which stops when the last clone of the runtime is dropped).
    ///
    /// # Errors
    /// [`StartError`] when the engine cannot be built or a directory cannot be opened.
    pub fn new(config: RuntimeConfig) -> Result<Self, StartError> {
        let engine =
            crate::engine::build(&config).map_err(|e| StartError::Engine(e.to_string()))?;
        let mut core_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut CoreState| &mut s.wasi)
            .map_err(|e| StartError::Engine(e.to_string()))?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| StartError::Engine(e.to_string()))?;
        crate::job::add_to_linker(&mut component_linker, |s: &mut ComponentState| &mut s.job)
            .map_err(|e| StartError::Engine(e.to_string()))?;
        let cache = ArtifactCache::open(&config.cache_dir, &engine)?;
        let roots = AllowedRoots::open(&config.allowed_roots)?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        tracing::debug!(fingerprint = cache.fingerprint(), "host runtime started");
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                core_linker,
                component_linker,
                trust: config.trust,
                policy: config.policy,
                cache,
                roots,
                slots: Semaphore::new(config.max_instances.max(1) as usize),
                loaded: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                fuel_metering: config.fuel_metering,
                max_memory_bytes: config.max_memory_bytes,
                _ticker: ticker,
            }),
        })
    }

    /// The trust policy this runtime holds, in policy mode.
    pub fn policy(&self) -> Option<&PolicyHolder> {
        self.inner.policy.as_ref()
    }

    /// The version of the policy in force; 0 in keys-only mode.
    fn policy_version(&self) -> u64 {
        self.inner
            .policy
            .as_ref()
            .map_or(0, |p| p.current().version())
    }

    /// The module loaded with this digest, unless it verified under a policy that has since been
    /// replaced: it must then be verified again.
    fn in_memory(&self, digest: &ModuleDigest) -> Option<Arc<Ready>> {
        let mut loaded = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ready = loaded.get(digest)?;
        if ready.policy_version != self.policy_version() {
            loaded.remove(digest);
            return None;
        }
        Some(Arc::clone(ready))
    }

    /// Counters since start.
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.inner.counters;
        RuntimeStats {
            compiled: c.compiled.load(Ordering::Relaxed),
            disk_cache_hits: c.disk_cache_hits.load(Ordering::Relaxed),
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// The module with this digest, if this process already verified and loaded it. Callers
    /// that know a module's digest (the agent gets it with each assignment) skip hashing the
    /// bytes again; a module not in memory goes through [`Runtime::load`].
    pub fn loaded(&self, digest: &ModuleDigest) -> Option<LoadedModule> {
        let started = Instant::now();
        let ready = self.in_memory(digest)?;
        self.inner
            .counters
            .memory_hits
            .fetch_add(1, Ordering::Relaxed);
        Some(LoadedModule {
            ready,
            code_source: CodeSource::Memory,
            load_time: started.elapsed(),
        })
    }

    /// Verifies a module's signature and makes it ready to run: from memory if this process
    /// already verified and loaded the same bytes, else from the artifact cache, else by
    /// compiling it (and caching the result). Nothing is compiled or loaded from the cache
    /// before the signature verifies.
    ///
    /// Modules in memory are keyed by the sha256 of their complete bytes, and only modules that
    /// verified against this runtime's trust store get there: identical bytes would verify
    /// identically, so they are not verified again, unless the trust policy was replaced since.
    ///
    /// Compiling is CPU-bound and can take a second for a large module; async callers should
    /// call this from `spawn_blocking`.
    ///
    /// # Errors
    /// [`LoadError`] naming why the module cannot run.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedModule, LoadError> {
        let started = Instant::now();
        if let Some(ready) = self.in_memory(&ModuleDigest::of(bytes)) {
            self.inner
                .counters
                .memory_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(LoadedModule {
                ready,
                code_source: CodeSource::Memory,
                load_time: started.elapsed(),
            });
        }
        let (verified, policy_version) = match &self.inner.policy {
            Some(policy) => {
                let policy = policy.current();
                (verify_module(&policy, bytes)?, policy.version())
            }
            None => (self.inner.trust.verify(bytes)?, 0),
        };
        let digest = verified.digest;

        let engine = &self.inner.engine;
        let kind = verified.kind;
        let imports = ModuleImports::of(bytes).map_err(|e| LoadError::Invalid {
            kind,
            message: e.to_string(),
        })?;
        let (compiled, code_source) = match self.inner.cache.load(engine, &digest, kind)? {
            Some(compiled) => (compiled, CodeSource::DiskCache),
            None => {
                let invalid = |e: wasmtime::Error| LoadError::Invalid {
                    kind,
                    message: format!("{e:#}"),
                };
                let (compiled, artifact) = match kind {
                    ModuleKind::CoreModule => {
                        let m = wasmtime::Module::new(engine, bytes).map_err(invalid)?;
                        let artifact = m.serialize().map_err(invalid)?;
                        (Compiled::Core(m), artifact)
                    }
                    ModuleKind::Component => {
                        let c =
                            wasmtime::component::Component::new(engine, bytes).map_err(invalid)?;
                        let artifact = c.serialize().map_err(invalid)?;
                        (Compiled::Component(c), artifact)
                    }
                };
                self.inner.cache.store(&digest, &artifact)?;
                (compiled, CodeSource::Compiled)
            }
        };
        let counter = match code_source {
            CodeSource::Compiled => &self.inner.counters.compiled,
            _ => &self.inner.counters.disk_cache_hits,
        };
        counter.fetch_add(1, Ordering::Relaxed);

        let unrunnable = |message: String| LoadError::Unrunnable { kind, message };
        let pre = match compiled {
            Compiled::Core(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(unrunnable(
                        "not a WASI command: it exports no `_start` function".into(),
                    ));
                }
                let pre = self
                    .inner
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(|e| unrunnable(format!("{e:#}")))?;
                Pre::Core(pre)
            }
            Compiled::Component(component) => {
                // A component exporting the job world's `run` function is a job, whatever else
                // it exports (a Rust binary built with the job world also exports
                // `wasi:cli/run`, its `main`).
                let exports_run = matches!(
                    component.component_type().get_export(engine, "run"),
                    Some(ComponentExtern {
                        ty: ComponentItem::ComponentFunc(_),
                        ..
                    })
                );
                let pre = self
                    .inner
                    .component_linker
                    .instantiate_pre(&component)
                    .map_err(|e| unrunnable(format!("{e:#}")))?;
                if exports_run {
                    let pre = JobPre::new(pre).map_err(|e| {
                        unrunnable(format!(
                            "its `run` export is not the `vauban:job` world's ({e:#})"
                        ))
                    })?;
                    Pre::Job(pre)
                } else {
                    let pre = CommandPre::new(pre).map_err(|e| {
                        unrunnable(format!(
                            "not a WASI command nor a `vauban:job` component: no `wasi:cli/run` \
                             or `run` export ({e:#})"
                        ))
                    })?;
                    Pre::Component(pre)
                }
            }
        };
        let ready = Arc::new(Ready {
            verified,
            policy_version,
            imports,
            pre,
        });
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest, Arc::clone(&ready));
        Ok(LoadedModule {
            ready,
            code_source,
            load_time: started.elapsed(),
        })
    }

    /// Runs a loaded module once in a fresh sandbox built from `request`.
    ///
    /// Waits for a free instance slot first (cancellable). Never fails: whatever the guest
    /// does, the result is an [`Outcome`] in the report.
    pub async fn run(
        &self,
        module: &LoadedModule,
        request: RunRequest,
        cancel: &CancellationToken,
    ) -> RunReport {
        let verified = module.verified();
        let mut report = RunReport {
            outcome: Outcome::Cancelled,
            digest: verified.digest,
            kind: verified.kind,
            signers: verified.signers.clone(),
            code_source: module.code_source,
            load_time: module.load_time,
            run_time: Duration::ZERO,
            fuel_consumed: None,
            peak_memory_bytes: 0,
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            denials: Vec::new(),
        };
        let limits = request.capabilities.limits;
        // Deny by default, before anything is instantiated: an import the run's capabilities do
        // not cover (sockets without a network destination, an interface outside the baseline
        // that the run does not list) ends it here.
        if let Err(denied) = check_imports(&module.ready.imports, &request.capabilities) {
            report.outcome = Outcome::Denied {
                capability: format!("import {}", denied.import),
                reason: denied.reason,
            };
            return report;
        }
        // A job gets its input as `run`'s argument, a command on its stdin.
        let (stdin, input) = match module.entry() {
            Entry::Command => (request.stdin, Vec::new()),
            Entry::Job => (Vec::new(), request.stdin),
        };
        let sandbox = match sandbox::build(
            &self.inner.roots,
            &request.capabilities,
            &request.program,
            stdin,
            request.output.as_ref(),
            module.entry(),
        ) {
            Ok(s) => s,
            Err(denial) => {
                report.outcome = Outcome::Denied {
                    capability: denial.capability,
                    reason: denial.reason,
                };
                return report;
            }
        };
        let memory_limit = limits.memory_bytes.min(self.inner.max_memory_bytes);
        if limits.memory_bytes > self.inner.max_memory_bytes {
            report.outcome = Outcome::Denied {
                capability: format!("memory {} bytes", limits.memory_bytes),
                reason: format!(
                    "this host gives an instance at most {} bytes",
                    self.inner.max_memory_bytes
                ),
            };
            return report;
        }
        if limits.fuel.is_some() && !self.inner.fuel_metering {
            report.outcome = Outcome::Denied {
                capability: "fuel budget".into(),
                reason: "fuel metering is off on this host".into(),
            };
            return report;
        }

        // Biased, cancellation first: a run cancelled before it starts never starts.
        let _permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return report,
            permit = self.inner.slots.acquire() => match permit {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return report,
            },
        };

        let limiter = MemoryLimiter::new(memory_limit, MAX_TABLE_ELEMENTS);
        let Sandbox {
            mut wasi,
            stdout,
            stderr,
            denials,
            job,
        } = sandbox;
        let started = Instant::now();
        let (result, limiter, fuel_left) = match &module.ready.pre {
            Pre::Core(pre) => {
                let state = CoreState {
                    wasi: wasi.build_p1(),
                    limiter,
                };
                let mut store = self.new_store(state, limits.fuel);
                let result = bounded(limits.timeout, cancel, run_core(pre, &mut store)).await;
                let fuel_left = store.get_fuel().ok();
                (result, store.into_data().limiter, fuel_left)
            }
            Pre::Component(pre) => {
                let state = ComponentState {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limiter,
                    job,
                };
                let mut store = self.new_store(state, limits.fuel);
                let result = bounded(limits.timeout, cancel, run_component(pre, &mut store)).await;
                let fuel_left = store.get_fuel().ok();
                (result, store.into_data().limiter, fuel_left)
            }
            Pre::Job(pre) => {
                let state = ComponentState {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limiter,
                    job,
                };
                let mut store = self.new_store(state, limits.fuel);
                let result =
                    bounded(limits.timeout, cancel, run_job(pre, &mut store, &input)).await;
                let fuel_left = store.get_fuel().ok();
                (result, store.into_data().limiter, fuel_left)
            }
        };
        report.run_time = started.elapsed();
        let finished = matches!(result, Bounded::Finished(_));
        report.outcome = match result {
            Bounded::Finished(Ok(code)) => Outcome::Exited { code },
            Bounded::Finished(Err(error)) => classify(error, &limiter, limits.fuel),
            Bounded::TimedOut => Outcome::TimedOut {
                limit: limits.timeout,
            },
            Bounded::Cancelled => Outcome::Cancelled,
        };
        // A guest stopped mid-flight (timeout, cancellation) leaves wasmtime's fuel counter
        // unsettled, so fuel is only reported for runs that ended on their own.
        if finished {
            let budget = limits.fuel.unwrap_or(u64::MAX);
            report.fuel_consumed = fuel_left.map(|left| budget - left);
        }
        report.peak_memory_bytes = limiter.peak();
        report.stdout = stdout.snapshot();
        report.stderr = stderr.snapshot();
        report.denials =
            std::mem::take(&mut *denials.lock().unwrap_or_else(PoisonError::into_inner));
        report
    }

    fn new_store<T: Limited + 'static>(&self, state: T, fuel: Option<u64>) -> Store<T> {
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| s.limiter());
        if self.inner.fuel_metering {
            // Cannot fail: fuel is enabled on this engine.
            let _ = store.set_fuel(fuel.unwrap_or(u64::MAX));
        }
        // Yield to tokio at every epoch tick, so the timeout and cancellation below can fire
        // while the guest computes.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

async fn run_core(
    pre: &wasmtime::InstancePre<CoreState>,
    store: &mut Store<CoreState>,
) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    start.call_async(&mut *store, ()).await?;
    Ok(0)
}

async fn run_component(
    pre: &CommandPre<ComponentState>,
    store: &mut Store<ComponentState>,
) -> wasmtime::Result<i32> {
    let command = pre.instantiate_async(&mut *store).await?;
    match command.wasi_cli_run().call_run(&mut *store).await? {
        Ok(()) => Ok(0),
        Err(()) => Ok(1),
    }
}

/// Calls a job component's `run` with `input`; what it returns becomes the run's output (see
/// [`JobHost::finish`]).
async fn run_job(
    pre: &JobPre<ComponentState>,
    store: &mut Store<ComponentState>,
    input: &[u8],
) -> wasmtime::Result<i32> {
    let job = pre.instantiate_async(&mut *store).await?;
    let result = job.call_run(&mut *store, input).await?;
    Ok(store.data().job.finish(result))
}

enum Bounded<T> {
    Finished(T),
    TimedOut,
    Cancelled,
}

/// Runs `work` until it finishes, the timeout passes, or `cancel` fires. Dropping the guest's
/// future stops it at its next epoch yield.
async fn bounded<T>(
    timeout: Duration,
    cancel: &CancellationToken,
    work: impl Future<Output = T>,
) -> Bounded<T> {
    // Biased, so that the outcome is deterministic: a cancellation already made wins, and a
    // guest that finished is not reported as timed out.
    tokio::select! {
        biased;
        () = cancel.cancelled() => Bounded::Cancelled,
        result = work => Bounded::Finished(result),
        () = tokio::time::sleep(timeout) => Bounded::TimedOut,
    }
}

/// Turns the error a guest's run ended with into an outcome.
fn classify(error: wasmtime::Error, limiter: &MemoryLimiter, fuel: Option<u64>) -> Outcome {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited { code: exit.0 };
    }
    if let (Some(Trap::OutOfFuel), Some(budget)) = (error.downcast_ref::<Trap>(), fuel) {
        return Outcome::OutOfFuel { budget };
    }
    if let Some(requested) = limiter.refused() {
        return Outcome::OutOfMemory {
            limit: limiter.limit(),
            requested,
        };
    }
    Outcome::Trapped {
        message: format!("{error:?}"),
    }
}
