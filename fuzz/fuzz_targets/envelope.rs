//! The REST envelope decoder fed arbitrary bytes: it must return a typed error or a
//! value, never panic; every portal error must render as a tool error.
#![no_main]

use bitrix24_task_results_mcp::bitrix::CallError;
use bitrix24_task_results_mcp::bitrix::envelope::decode;
use bitrix24_task_results_mcp::results::TaskResult;
use bitrix24_task_results_mcp::tools::{REGISTRY, errors};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Item {
    item: TaskResult,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Items {
    items: Vec<TaskResult>,
}

fn check(outcome: Result<(), CallError>, status: u16) {
    match outcome {
        Ok(()) => assert!((200..300).contains(&status)),
        Err(err @ CallError::Portal(_)) => {
            for tool in REGISTRY {
                let r = errors::call_failed(*tool, "m", "https://p.example", &err);
                assert_eq!(r.is_error, Some(true));
            }
        }
        Err(CallError::Decode { status: s, .. }) => assert_eq!(s, status),
        Err(other) => panic!("unexpected error kind {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 600;
    let body = &data[2..];
    check(
        decode::<serde_json::Value>(status, None, body).map(|_| ()),
        status,
    );
    check(decode::<Item>(status, None, body).map(|_| ()), status);
    check(decode::<Items>(status, None, body).map(|_| ()), status);
});
