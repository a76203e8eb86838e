//! How the server stops on a signal.
//!
//! Ctrl-C (SIGINT) stops at once: whoever pressed it at a terminal wants the prompt back.
//! SIGTERM (container runtimes, service managers, Kubernetes) first drains when a drain
//! period is given (`--drain-seconds`, HTTP only): `draining` is cancelled, so `/readyz`
//! answers 503 and load balancers take this process out of rotation, while it goes on
//! serving calls in flight and new ones for the period; then `stop` is cancelled and the
//! server shuts down as it does without a drain. A second signal during the drain stops
//! at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Interrupt,
    Terminate,
}

/// SIGINT and SIGTERM, each of which may arrive more than once.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Self {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) -> Received {
        let interrupt = async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No handler could be installed: never "received", rather than at once.
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            match self.term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => Received::Interrupt,
            _ = term => Received::Terminate,
        }
    }
}

/// Waits for SIGINT or SIGTERM and cancels `stop`; on SIGTERM with a non-zero `drain`,
/// cancels `draining` first and waits out the drain (or a second signal).
pub async fn on_signal(stop: CancellationToken, draining: CancellationToken, drain: Duration) {
    let mut signals = Signals::listen();
    let first = signals.next().await;
    if first == Received::Terminate && !drain.is_zero() {
        draining.cancel();
        tracing::info!(
            drain_s = drain.as_secs(),
            "SIGTERM received: draining (/readyz answers 503; calls are still served), then shutting down"
        );
        tokio::select! {
            _ = tokio::time::sleep(drain) => {
                tracing::info!("drain over, shutting down");
            }
            again = signals.next() => {
                tracing::info!(signal = ?again, "second signal during the drain, shutting down now");
            }
        }
    } else {
        tracing::info!("signal received, shutting down");
    }
    draining.cancel();
    stop.cancel();
}
