//! The host agent: dials the scheduler, runs what it assigns, and reports back.
//!
//! Hosts dial out, so that edge nodes behind NAT can join. [`run_agent`] holds one `HostLink`
//! connection at a time (`connection.rs`), reconnecting with backoff (`backoff.rs`) when it is
//! lost; each assignment runs as its own task (`job.rs`) that outlives the connection it arrived
//! on. Protobuf types stop here: the runtime below stays proto-free.
//!
//! What jobs produce (output, final results) goes into one agent-wide queue, the outbox, that
//! each connection drains in turn. A job that finishes while the scheduler is unreachable is
//! therefore reported on the next connection; a message handed to a connection that then dies
//! may still be lost, which the scheduler covers by requeueing the jobs of a node whose stream
//! closed.
//!
//! Each registration says what the host already has, so that a scheduler (perhaps restarted)
//! knows at once: the attempts still running here and the modules held (`CachedModules`).
//! Heartbeats then repeat the running attempts, and the modules only when they changed: a
//! heartbeat's empty `cached_modules` means "unchanged", not "none" (`connection::heartbeat`).

mod backoff;
mod connection;
mod job;
mod policy;
mod receipt;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Endpoint;
use tracing::Instrument as _;
use vauban_proto::v1::{self, host_message::Message};

use crate::Runtime;
use crate::modules::ModuleStore;

use backoff::Backoff;
pub use connection::ClientTls;
use connection::{End, Outbox};

/// Settings of a host agent. Plain data: the binary fills it from flags and files.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The scheduler's `HostLink` address, with its scheme: `https://127.0.0.1:7070` with
    /// [`AgentConfig::tls`], `http://` without.
    pub scheduler: String,
    /// This node's stable name, chosen by the operator.
    pub node_id: String,
    /// Labels the scheduler may place jobs by.
    pub labels: BTreeMap<String, String>,
    /// Jobs this host runs at once, as advertised; should equal the runtime's `max_instances`
    /// (more assignments than that wait for a free instance slot).
    pub slots: u32,
    /// Memory this host offers its jobs, as advertised.
    pub memory_bytes: u64,
    /// Where modules fetched from the scheduler are kept, by digest (created owner-only).
    pub module_dir: PathBuf,
    /// First delay before reconnecting after a lost or failed connection.
    pub reconnect_min: Duration,
    /// Longest delay between connection attempts; the delay doubles up to it.
    pub reconnect_max: Duration,
    /// Largest module this host fetches; a larger one refuses the job.
    pub max_module_bytes: u64,
    /// On shutdown, how long running jobs have to stop after being cancelled, and how long the
    /// last attempt to deliver their results may take when the scheduler is unreachable.
    pub shutdown_grace: Duration,
    /// Mutual TLS with the scheduler (`https://` addresses). `None` dials plaintext
    /// (`http://`), for `--insecure` only.
    pub tls: Option<ClientTls>,
    /// The key this host signs an execution receipt with after each attempt it runs (its public
    /// half is sent at registration). `None`: no receipts.
    pub receipt_key: Option<vauban_audit::SecretKey>,
    /// Policy mode: where the newest trust policy this host accepted is kept
    /// ([`crate::keep_policy`]), so that a pushed policy outlives a restart.
    pub trust_dir: Option<PathBuf>,
}

impl AgentConfig {
    /// Defaults for a node named `node_id` dialing `scheduler`: the `arch` label of this
    /// machine (`x86_64`, `aarch64`, ...) and no other, 16 slots, 4 GiB, a reconnect delay from
    /// 100 ms to 5 s, modules up to 256 MiB, a 5 s shutdown grace.
    pub fn new(
        scheduler: impl Into<String>,
        node_id: impl Into<String>,
        module_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            scheduler: scheduler.into(),
            node_id: node_id.into(),
            labels: [("arch".to_owned(), std::env::consts::ARCH.to_owned())].into(),
            slots: 16,
            memory_bytes: 4 << 30,
            module_dir: module_dir.into(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_module_bytes: 256 << 20,
            shutdown_grace: Duration::from_secs(5),
            tls: None,
            receipt_key: None,
            trust_dir: None,
        }
    }
}

/// Runs the agent until `shutdown`: connects, registers, heartbeats, runs assignments, reports,
/// and reconnects with backoff when the connection is lost (running jobs continue meanwhile).
///
/// On `shutdown` it stops accepting assignments, cancels running jobs, waits for them for
/// [`AgentConfig::shutdown_grace`], delivers their results if it can, and returns `Ok`.
///
/// # Errors
/// Only for a configuration that can never work: a scheduler address that is not a URI with a
/// scheme, or a module directory that cannot be created or opened. An unreachable scheduler is
/// not an error: the agent keeps trying until `shutdown`.
pub async fn run_agent(
    config: AgentConfig,
    runtime: Runtime,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = connection::endpoint(&config)?;
    let store = ModuleStore::open(&config.module_dir).with_context(|| {
        format!(
            "cannot open the module directory {}",
            config.module_dir.display()
        )
    })?;
    let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
    let agent = Arc::new(Agent::new(config, runtime, store, outbox_tx));
    let mut outbox = Outbox::new(outbox_rx);
    let mut backoff = Backoff::new(agent.config.reconnect_min, agent.config.reconnect_max);
    let span = tracing::info_span!("agent", node = %agent.config.node_id);

    async {
        while !shutdown.is_cancelled() {
            match connection::serve(&agent, &endpoint, &mut outbox, &mut backoff, &shutdown).await {
                Ok(End::Drained) => return Ok(()),
                Ok(End::Closed) => tracing::warn!("the scheduler closed the connection"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "no connection to the scheduler")
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let delay = backoff.next_delay();
            tracing::info!(retry_in = ?delay, "reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => {}
            }
        }
        agent.shut_down(&endpoint, &mut outbox, &mut backoff).await;
        Ok(())
    }
    .instrument(span)
    .await
}

/// What the agent's connections and jobs share.
struct Agent {
    config: AgentConfig,
    runtime: Runtime,
    store: ModuleStore,
    first_loads: FirstLoads,
    /// Modules this host holds, as registrations and heartbeats report them.
    cached: CachedModules,
    /// Jobs not yet reported, by job id and attempt.
    jobs: JobTable,
    /// Where jobs send what they produce; drained by whichever connection is up.
    outbox: mpsc::UnboundedSender<v1::HostMessage>,
    tracker: TaskTracker,
    /// Parent of every job's cancellation token: cancelled on shutdown.
    jobs_cancel: CancellationToken,
    /// Set once, when shutdown begins: when running jobs must have stopped.
    drain_deadline: OnceLock<Instant>,
}

impl Agent {
    /// An agent with no jobs yet, holding the modules `store` has on disk.
    fn new(
        config: AgentConfig,
        runtime: Runtime,
        store: ModuleStore,
        outbox: mpsc::UnboundedSender<v1::HostMessage>,
    ) -> Self {
        // Once, at startup, like opening the store: a directory listing, no file is read.
        let cached = match store.digests() {
            Ok(digests) => CachedModules::new(digests),
            Err(error) => {
                // Only a placement hint is lost: jobs still find the modules by digest.
                tracing::warn!(%error, "cannot list the module directory; reporting no modules");
                CachedModules::default()
            }
        };
        Self {
            config,
            runtime,
            store,
            first_loads: FirstLoads::default(),
            cached,
            jobs: JobTable::default(),
            outbox,
            tracker: TaskTracker::new(),
            jobs_cancel: CancellationToken::new(),
            drain_deadline: OnceLock::new(),
        }
    }

    /// Starts an assignment as its own task, or refuses it when the agent is shutting down.
    fn accept(
        self: &Arc<Self>,
        assignment: v1::Assignment,
        client: connection::Client,
        draining: bool,
    ) {
        let (job_id, attempt) = (assignment.job_id.clone(), assignment.attempt);
        let cancel = self.jobs_cancel.child_token();
        if !self.jobs.insert(&job_id, attempt, cancel.clone()) {
            tracing::warn!(%job_id, attempt, "ignoring a repeated assignment");
            return;
        }
        if draining {
            self.send(job::refused(job_id, attempt, "the host is shutting down"));
            return;
        }
        let span = tracing::info_span!("job", %job_id, attempt);
        self.tracker
            .spawn(job::run(Arc::clone(self), client, assignment, cancel).instrument(span));
    }

    /// Queues a message for the scheduler, on this connection or the next.
    fn send(&self, message: v1::HostMessage) {
        // Cannot fail: the agent holds the receiver for as long as it holds this sender.
        let _ = self.outbox.send(message);
    }

    /// Records that `message` was handed to a connection. A job counts as running, and is
    /// listed in heartbeats, until its final message leaves: the scheduler never sees a
    /// heartbeat without a job before that job's result.
    fn sent(&self, message: &v1::HostMessage) {
        if let Some(Message::Finished(finished)) = &message.message {
            self.jobs.remove(&finished.job_id, finished.attempt);
        }
    }

    /// Begins shutting down (once): cancels every job and stops tracking new ones. Returns when
    /// running jobs must have stopped.
    fn begin_drain(&self) -> Instant {
        *self.drain_deadline.get_or_init(|| {
            tracing::info!(
                running = self.tracker.len(),
                "shutting down: cancelling jobs"
            );
            self.jobs_cancel.cancel();
            self.tracker.close();
            Instant::now() + self.config.shutdown_grace
        })
    }

    /// Shutdown when no connection is up: waits for the jobs, then tries once to deliver what
    /// they produced.
    async fn shut_down(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        outbox: &mut Outbox,
        backoff: &mut Backoff,
    ) {
        let deadline = self.begin_drain();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.tracker.len(),
                "jobs still running after the shutdown grace: their results are lost"
            );
        }
        if outbox.is_empty() {
            return;
        }
        // The connection already knows to drain, since `shutdown` is cancelled.
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let flush = connection::serve(self, endpoint, outbox, backoff, &cancelled);
        match tokio::time::timeout(self.config.shutdown_grace, flush).await {
            Ok(Ok(End::Drained)) => {}
            Ok(Ok(End::Closed)) => tracing::warn!("results not delivered: connection closed"),
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "results not delivered");
            }
            Err(_) => tracing::warn!("results not delivered: the scheduler did not answer"),
        }
    }
}

/// Makes the first load of each module run alone. Jobs of a module this host has not loaded yet
/// often arrive together (the module just fetched, from memory for all but the first): without
/// this, each would compile it, and their compilations would race to write the same artifact.
/// Once a load succeeded, later loads (which verify the signature, every time) run in parallel.
#[derive(Debug, Default)]
struct FirstLoads {
    // A std mutex: held only to look up or change the map, never across an await.
    /// Per module: `None` once loaded, else the gate its first loads take in turn.
    gates: Mutex<HashMap<vauban_core::ModuleDigest, Option<Arc<tokio::sync::Mutex<()>>>>>,
}

impl FirstLoads {
    /// The gate to hold while loading `digest`, or `None` when it was loaded before.
    fn gate(&self, digest: vauban_core::ModuleDigest) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates
            .entry(digest)
            .or_insert_with(|| Some(Arc::default()))
            .clone()
    }

    /// Records that `digest` loaded: later loads need no gate.
    fn loaded(&self, digest: vauban_core::ModuleDigest) {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest, None);
    }
}

/// The modules this host holds, by digest: those in the module store on disk (listed at startup,
/// added when a fetch is stored; their digest was checked then, and is again whenever one is
/// read) and those loaded in the runtime, which keeps them for the life of the process (their
/// signature verified too). The scheduler places jobs by it, so it is a hint, kept cheap: a set
/// in memory, changed as modules come and go, never a scan of the directory after startup.
///
/// Every change bumps a version, so that a connection tells which heartbeats must carry the set
/// by comparing versions, without keeping a copy of what it last sent.
#[derive(Debug, Default)]
struct CachedModules {
    // A std mutex: held only to change or copy the set, never across an await.
    state: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    digests: BTreeSet<vauban_core::ModuleDigest>,
    /// Bumped by every change to `digests`.
    version: u64,
}

impl CachedModules {
    fn new(digests: impl IntoIterator<Item = vauban_core::ModuleDigest>) -> Self {
        let cached = Cached {
            digests: digests.into_iter().collect(),
            version: 0,
        };
        Self {
            state: Mutex::new(cached),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that this host holds `digest`.
    fn insert(&self, digest: vauban_core::ModuleDigest) {
        let mut state = self.state();
        if state.digests.insert(digest) {
            state.version += 1;
        }
    }

    /// Records that this host no longer holds `digest`.
    fn remove(&self, digest: &vauban_core::ModuleDigest) {
        let mut state = self.state();
        if state.digests.remove(digest) {
            state.version += 1;
        }
    }

    /// The version of the set and its digests as the protocol lists them, `sha256:<hex>`,
    /// sorted.
    fn snapshot(&self) -> (u64, Vec<String>) {
        self.state().listed()
    }

    /// Like [`CachedModules::snapshot`], but only when the set changed since `version`.
    fn changed_since(&self, version: u64) -> Option<(u64, Vec<String>)> {
        let state = self.state();
        // Versions only grow, so unequal means changed.
        (state.version != version).then(|| state.listed())
    }
}

impl Cached {
    fn listed(&self) -> (u64, Vec<String>) {
        let digests = self.digests.iter().map(ToString::to_string).collect();
        (self.version, digests)
    }
}

/// Jobs assigned to this host and not yet reported, with what cancels each.
#[derive(Debug, Default)]
struct JobTable {
    // A std mutex: held only to insert, remove or copy entries, never across an await.
    running: Mutex<HashMap<(String, u32), CancellationToken>>,
}

impl JobTable {
    /// Adds a job; false when that attempt is already here.
    fn insert(&self, job_id: &str, attempt: u32, cancel: CancellationToken) -> bool {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.entry((job_id.to_owned(), attempt)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(cancel);
                true
            }
        }
    }

    /// Cancels a job; false when that attempt is not here.
    fn cancel(&self, job_id: &str, attempt: u32) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(&(job_id.to_owned(), attempt)) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    fn remove(&self, job_id: &str, attempt: u32) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(job_id.to_owned(), attempt));
    }

    /// The attempts here as heartbeats list them, `<job id>/<attempt>`, sorted. The attempt is
    /// named so that the scheduler can tell a stale attempt (requeued while this host was cut
    /// off, now running elsewhere too) from the current one, and cancel it.
    fn attempt_ids(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let ids: BTreeSet<String> = running
            .keys()
            .map(|(job_id, attempt)| format!("{job_id}/{attempt}"))
            .collect();
        ids.into_iter().collect()
    }
}
