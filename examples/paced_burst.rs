//! Makespan of a paced burst of writes against the bucket's theoretical minimum.
//!
//! Runs the real client against the in-process sandbox portal whose leaky bucket has the
//! same rate and burst as the client's (the portal's 2/s, burst 50, scaled up 100 times
//! by default so it finishes in about a second):
//!
//! ```sh
//! cargo run --release --example paced_burst -- [WRITES] [RATE_PER_SEC] [BURST]
//! ```
//!
//! The minimum is `(WRITES - BURST) / RATE`: the burst goes at once, the rest one per
//! interval. Refused attempts (503 from the sandbox) are retried by the client.

use std::time::{Duration, Instant};

use bitrix24_task_results_mcp::bitrix::{Client, ClientOptions, Effect, Endpoint, Rate};
use bitrix24_task_results_mcp::sandbox::{RateLimit, Sandbox, SandboxOptions};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let writes: u32 = args.next().map_or(Ok(200), |a| a.parse())?;
    let per_sec: f64 = args.next().map_or(Ok(200.0), |a| a.parse())?;
    let burst: u32 = args.next().map_or(Ok(50), |a| a.parse())?;
    let rate = Rate { per_sec, burst };

    let sandbox = Sandbox::start(SandboxOptions {
        rate: Some(RateLimit {
            drain_per_sec: per_sec,
            burst,
        }),
        ..SandboxOptions::default()
    })
    .await?;
    let endpoint = Endpoint::webhook(&sandbox.webhook_url())?;
    let caller = endpoint.caller;
    let client = Client::new(
        endpoint.portal,
        ClientOptions {
            rate,
            call_budget: Duration::from_secs(600),
            ..ClientOptions::default()
        },
    );

    let seeded = sandbox.results().len();
    let started = Instant::now();
    let calls = (0..writes).map(|i| {
        let client = client.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            let body = json!({"fields": {"taskId": 51, "text": format!("paced write {i}")}});
            client
                .call::<_, Value>(&caller, "tasks.task.result.add", &body, Effect::Write)
                .await
                .map(|_| ())
        })
    });
    let outcomes = futures::future::join_all(calls).await;
    let makespan = started.elapsed();

    let failed = outcomes.iter().filter(|o| !matches!(o, Ok(Ok(())))).count();
    let requests = sandbox.requests();
    let refused = requests.iter().filter(|r| r.status == 503).count();
    let minimum = rate.min_makespan(writes);
    println!(
        "{writes} writes at {per_sec}/s burst {burst}: makespan {:.3} s, theoretical minimum {:.3} s \
         (+{:.1}%), {} HTTP requests, {refused} refused with 503, {failed} failed, {} results created",
        makespan.as_secs_f64(),
        minimum.as_secs_f64(),
        (makespan.as_secs_f64() / minimum.as_secs_f64().max(1e-9) - 1.0) * 100.0,
        requests.len(),
        sandbox.results().len() - seeded,
    );
    Ok(())
}
