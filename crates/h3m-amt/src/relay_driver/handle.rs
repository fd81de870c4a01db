//! The [`RelayHandle`] that controls a running driver, the commands it sends
//! to the driver's loop, and the [`DriverEvent`]s it hands out.

use std::net::{IpAddr, SocketAddr};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Capture, DriverError, DriverStats};
use crate::inner::InnerError;
use crate::relay::{Faults, GatewaySummary, RelayEvent};

/// What the driver reports to [`RelayHandle::events`] receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// An event of the relay state machine (after the driver acted on it).
    Relay(RelayEvent),
    /// A native join failed (the channel stays wanted; data will not come).
    JoinFailed {
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
        /// What went wrong.
        error: String,
    },
}

/// A request from a [`RelayHandle`] to the driver's loop, with its reply channel.
pub(super) enum Command {
    Inject {
        source: SocketAddr,
        group: SocketAddr,
        ttl: u8,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<usize, InnerError>>,
    },
    SetFaults(Faults, oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    RotateSecret(oneshot::Sender<()>),
    Stats(oneshot::Sender<DriverStats>),
    Gateways(oneshot::Sender<Vec<GatewaySummary>>),
    Shutdown(oneshot::Sender<DriverStats>),
}

/// Controls a running driver (cheap to clone). The driver stops when
/// [`RelayHandle::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) events: broadcast::Sender<DriverEvent>,
    pub(super) local: Vec<SocketAddr>,
    pub(super) capture: Capture,
    pub(super) warnings: Vec<String>,
}

impl RelayHandle {
    /// The addresses the listening sockets are bound to (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The capture in use.
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Problems met at start that did not stop the driver (e.g. no packet sockets).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A receiver of every event from now on.
    pub fn events(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Sends `payload` as a UDP datagram from `source` to `group` (hop limit
    /// `ttl`) to every gateway that wants it, as if captured natively; returns
    /// how many gateways that is.
    pub async fn inject(
        &self,
        source: SocketAddr,
        group: SocketAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<usize, DriverError> {
        let payload = payload.to_vec();
        Ok(self.ask(|reply| Command::Inject { source, group, ttl, payload, reply }).await??)
    }

    /// Sets the faults ([`Relay::set_faults`](crate::relay::Relay::set_faults)).
    pub async fn set_faults(&self, faults: Faults) -> Result<(), DriverError> {
        self.ask(|reply| Command::SetFaults(faults, reply)).await
    }

    /// Restarts the relay: state forgotten, new secret ([`Relay::restart`](crate::relay::Relay::restart)).
    pub async fn restart(&self) -> Result<(), DriverError> {
        self.ask(Command::Restart).await
    }

    /// Rotates the MAC secret now ([`Relay::rotate_secret`](crate::relay::Relay::rotate_secret)).
    pub async fn rotate_secret(&self) -> Result<(), DriverError> {
        self.ask(Command::RotateSecret).await
    }

    /// The counters.
    pub async fn stats(&self) -> Result<DriverStats, DriverError> {
        self.ask(Command::Stats).await
    }

    /// The gateways with state.
    pub async fn gateways(&self) -> Result<Vec<GatewaySummary>, DriverError> {
        self.ask(Command::Gateways).await
    }

    /// Stops the driver (native memberships are left, nothing is sent to
    /// gateways) and returns the final counters.
    pub async fn shutdown(&self) -> Result<DriverStats, DriverError> {
        self.ask(Command::Shutdown).await
    }
}
