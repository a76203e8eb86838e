//! The one lock in Redis, shared by the sign-in store's named locks ([`crate::store::Store::try_lock`])
//! and the replicas' refresh lock of the configured identity's pair
//! (`crate::replicas::pair`): a key holding its holder's id, taken when free or already
//! that holder's (`SET … PXAT`, so a holder that dies frees it at its time) and freed
//! by compare-and-delete, so a holder whose lock expired and was taken by another cannot
//! free the other's.

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

/// `KEYS[1]`: the lock; `ARGV[1]`: the holder; `ARGV[2]`: until when (Unix ms). 1 when
/// taken (or renewed by its holder), 0 when another holds it.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  return 1
end
return 0",
    )
});

/// `KEYS[1]`: the lock; `ARGV[1]`: the holder. Deletes it only while that holder has it.
static FREE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
    )
});

/// Takes `key` for `holder` until `until_ms` (Unix ms): invoke it for an `i64`, 1 when
/// taken.
pub(crate) fn take(key: &str, holder: &str, until_ms: i64) -> ScriptInvocation<'static> {
    let mut invocation = TAKE.key(key);
    invocation.arg(holder).arg(until_ms.max(1));
    invocation
}

/// Frees `key` if `holder` still has it: invoke it for an `i64`.
pub(crate) fn free(key: &str, holder: &str) -> ScriptInvocation<'static> {
    let mut invocation = FREE.key(key);
    invocation.arg(holder);
    invocation
}
