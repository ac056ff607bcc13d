//! The Redis store: one sorted set per namespace holds every live hold and
//! open, scored by its deadline in the server's clock; probe leases and rate
//! states are keys beside it; every change is published on one channel.
//!
//! Each operation is one Lua script run through `redis::Script` (EVALSHA,
//! loading the script again after a restart or `SCRIPT FLUSH` answers
//! `NOSCRIPT`). Commands go through one `ConnectionManager`, which reconnects
//! by itself; messages come through one pub/sub connection, made again by the
//! mirror's background task when it ends.

use futures_util::stream::{BoxStream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use std::sync::Arc;
use std::time::Duration;

use super::backend::{
    Backend, BackendError, BoxFuture, Change, Gcra, LeaseGrant, ProbeGrant, Snapshot, Update,
    MAX_HOLD_MS, MAX_OPEN_MS,
};
use super::builder::{FleetBuilder, FleetError};
use super::key::{Digest, Kind};
use super::mirror::FleetMirror;

mod names;
mod secret;

use names::{parse_message, Names};
use secret::scrub;

struct Scripts {
    extend: Script,
    close: Script,
    poll: Script,
    probe: Script,
    lease: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            extend: Script::new(include_str!("extend.lua")),
            close: Script::new(include_str!("close.lua")),
            poll: Script::new(include_str!("poll.lua")),
            probe: Script::new(include_str!("probe.lua")),
            lease: Script::new(include_str!("lease.lua")),
        }
    }
}

pub(crate) struct RedisBackend {
    client: Client,
    manager: ConnectionManager,
    names: Names,
    scripts: Arc<Scripts>,
    /// Credentials in the address, removed from every error text.
    secrets: Vec<String>,
}

impl FleetBuilder {
    /// A mirror on the Redis server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://…`, `redis+unix:///path/to/socket`). Connects in the
    /// background: a server that is down now only delays sharing, and is
    /// said once through the notices. Starts the background task on the
    /// current tokio runtime.
    ///
    /// ```no_run
    /// use tower_http_resilience::fleet::FleetMirror;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mirror = FleetMirror::builder("gateway")
    ///     .on_notice(|notice| eprintln!("{notice}"))
    ///     .redis("redis+unix:///run/redis/redis.sock")
    ///     .unwrap();
    /// # let _ = mirror;
    /// # }
    /// ```
    pub fn redis(self, url: &str) -> Result<FleetMirror, FleetError> {
        super::key::check_namespace(self.namespace()).map_err(FleetError::new)?;
        let secrets = secret::secrets(url);
        let client = Client::open(url).map_err(|e| {
            FleetError::new(format!(
                "bad redis address: {}",
                scrub(&e.to_string(), &secrets)
            ))
        })?;
        let call_timeout = self.call_timeout_value();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(call_timeout))
            .set_connection_timeout(Some(call_timeout.max(Duration::from_millis(100))))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(FleetError::new(
                "a fleet mirror must be built inside a tokio runtime",
            ));
        }
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| FleetError::new(scrub(&e.to_string(), &secrets)))?;
        let backend = RedisBackend {
            client,
            manager,
            names: Names::new(self.namespace()),
            scripts: Arc::new(Scripts::new()),
            secrets,
        };
        self.start(Arc::new(backend))
    }
}

impl RedisBackend {
    fn error(&self, e: RedisError) -> BackendError {
        BackendError(scrub(&e.to_string(), &self.secrets))
    }

    async fn extend(
        &self,
        kind: Kind,
        digest: Digest,
        wait_ms: u64,
    ) -> Result<Update, BackendError> {
        let cap = if kind == Kind::Hold {
            MAX_HOLD_MS
        } else {
            MAX_OPEN_MS
        };
        let mut inv = self.scripts.extend.key(self.names.state());
        if kind == Kind::Open {
            inv.key(self.names.probe(digest));
        }
        inv.arg(digest.member(kind))
            .arg(wait_ms.min(cap))
            .arg(cap)
            .arg(self.names.channel())
            .arg(format!("{} {digest}", kind.tag()));
        let mut con = self.manager.clone();
        let (_, until_ms, now_ms): (u8, u64, u64) = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(if until_ms == 0 {
            Update::Unchanged
        } else {
            Update::Until {
                kind,
                digest,
                until_ms,
                now_ms,
            }
        })
    }

    async fn close(
        &self,
        digest: Digest,
        token: u64,
        holder: &str,
    ) -> Result<Update, BackendError> {
        let mut con = self.manager.clone();
        let closed: u8 = self
            .scripts
            .close
            .key(self.names.state())
            .key(self.names.probe(digest))
            .arg(digest.member(Kind::Open))
            .arg(token)
            .arg(self.names.channel())
            .arg(format!("c {digest} {token}"))
            .arg(holder)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(if closed == 1 {
            Update::Closed { digest, token }
        } else {
            Update::Unchanged
        })
    }

    async fn snapshot(&self, limit: usize) -> Result<Snapshot, BackendError> {
        let mut con = self.manager.clone();
        let (now_ms, live, items): (u64, u64, Vec<String>) = self
            .scripts
            .poll
            .key(self.names.state())
            .arg(limit)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        let entries = items
            .chunks_exact(2)
            .filter_map(|pair| {
                let (kind, digest) = Digest::parse_member(&pair[0])?;
                let until: f64 = pair[1].parse().ok()?;
                Some((kind, digest, until as u64))
            })
            .collect::<Vec<_>>();
        Ok(Snapshot {
            now_ms,
            complete: live as usize <= limit,
            entries,
        })
    }

    async fn listen(&self) -> Result<BoxStream<'static, Update>, BackendError> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| self.error(e))?;
        pubsub
            .subscribe(self.names.channel())
            .await
            .map_err(|e| self.error(e))?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| {
                let update = msg
                    .get_payload::<String>()
                    .ok()
                    .and_then(|text| parse_message(&text));
                std::future::ready(update)
            })
            .boxed())
    }

    async fn take_probe(
        &self,
        digest: Digest,
        holder: &str,
        lease_ms: u64,
    ) -> Result<ProbeGrant, BackendError> {
        let mut con = self.manager.clone();
        let (granted, left): (u8, u64) = self
            .scripts
            .probe
            .key(self.names.probe(digest))
            .arg(holder)
            .arg(lease_ms.clamp(1, MAX_OPEN_MS))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(if granted == 1 {
            ProbeGrant::Granted
        } else {
            ProbeGrant::Held { remaining_ms: left }
        })
    }

    async fn take_cells(
        &self,
        digest: Digest,
        gcra: Gcra,
        cells: u32,
    ) -> Result<LeaseGrant, BackendError> {
        let mut con = self.manager.clone();
        let (granted, retry_us): (u32, u64) = self
            .scripts
            .lease
            .key(self.names.rate(digest))
            .arg(gcra.emission_us.max(1))
            .arg(gcra.tolerance_us)
            .arg(cells.max(1))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(if granted > 0 {
            LeaseGrant::Cells(granted)
        } else {
            LeaseGrant::Empty { retry_us }
        })
    }
}

impl Backend for RedisBackend {
    fn push(&self, change: Change, holder: &str) -> BoxFuture<'_, Result<Update, BackendError>> {
        let holder = holder.to_owned();
        Box::pin(async move {
            match change {
                Change::Hold { digest, wait_ms } => self.extend(Kind::Hold, digest, wait_ms).await,
                Change::Open { digest, open_ms } => self.extend(Kind::Open, digest, open_ms).await,
                Change::Close { digest, token } => self.close(digest, token, &holder).await,
            }
        })
    }

    fn poll(&self, limit: usize) -> BoxFuture<'_, Result<Snapshot, BackendError>> {
        Box::pin(self.snapshot(limit))
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Update>, BackendError>> {
        Box::pin(self.listen())
    }

    fn probe(
        &self,
        digest: Digest,
        holder: &str,
        lease_ms: u64,
    ) -> BoxFuture<'_, Result<ProbeGrant, BackendError>> {
        let holder = holder.to_owned();
        Box::pin(async move { self.take_probe(digest, &holder, lease_ms).await })
    }

    fn lease(
        &self,
        digest: Digest,
        gcra: Gcra,
        cells: u32,
    ) -> BoxFuture<'_, Result<LeaseGrant, BackendError>> {
        Box::pin(self.take_cells(digest, gcra, cells))
    }
}
