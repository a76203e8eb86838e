//! Where the suite's holders meet ([`Bench`]): any holder that keeps the pair itself
//! ([`HolderBench`], the replicas' pair in Redis), a sign-in store holding one person's
//! pair ([`StoreBench`], SQLite or Redis), and, for unit tests, the in-memory holder
//! ([`memory`]).

use std::sync::Arc;

use crate::bitrix::BoxFuture;
use crate::clock;
use crate::identity::holder::{Holder, Pair};
use crate::identity::person::PersonPair;
use crate::store::{BitrixTokens, Person, Store};

/// Where the holders of one pair meet: one file, one store, one Redis.
pub trait Bench: Send + Sync {
    /// Keeps `pair` there, as a sign-in or a first start would.
    fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()>;
    /// A holder of its own, as another process or replica would have one.
    fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>>;
    /// The pair kept there now, read as a process starting now would.
    fn kept(&self) -> BoxFuture<'_, Option<Pair>>;
    /// Whether a refusal for good ends the pair (a person's sign-in) rather than only
    /// failing the refresh.
    fn refusal_ends(&self) -> bool {
        false
    }
}

/// Opens the place anew, as another process does.
type Open<T> = Box<dyn Fn() -> BoxFuture<'static, T> + Send + Sync>;

/// Processes sharing a holder that keeps the pair itself (the replicas' pair in Redis):
/// seeded by storing, read back by loading.
pub struct HolderBench(Open<Arc<dyn Holder>>);

impl HolderBench {
    /// `open` makes one process's holder.
    pub fn new(
        open: impl Fn() -> BoxFuture<'static, Arc<dyn Holder>> + Send + Sync + 'static,
    ) -> Self {
        HolderBench(Box::new(open))
    }
}

impl Bench for HolderBench {
    fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
        Box::pin(async move { (self.0)().await.store(pair).await.expect("seeded") })
    }

    fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>> {
        (self.0)()
    }

    fn kept(&self) -> BoxFuture<'_, Option<Pair>> {
        Box::pin(async move { (self.0)().await.load().await.expect("loaded") })
    }
}

/// The person the store benches hold the pair of.
const MEMBER_ID: &str = "engine-member";
const USER_ID: i64 = 7;

/// Processes sharing one sign-in store, holding one person's pair.
pub struct StoreBench(Open<Arc<dyn Store>>);

impl StoreBench {
    /// `open` opens the store as one process does.
    pub fn new(
        open: impl Fn() -> BoxFuture<'static, Arc<dyn Store>> + Send + Sync + 'static,
    ) -> Self {
        StoreBench(Box::new(open))
    }
}

impl Bench for StoreBench {
    fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
        let person = Person {
            member_id: MEMBER_ID.into(),
            user_id: USER_ID,
            domain: "p.example".into(),
            tokens: BitrixTokens {
                access: pair.access.clone(),
                refresh: pair.refresh.clone(),
                expires_at: pair.expires_at.unwrap_or_else(|| clock::now_s() + 3600),
                server_endpoint: pair.server_endpoint.clone(),
                client_endpoint: pair.client_endpoint.clone(),
                scope: pair.scope.clone(),
            },
            last_used_at: clock::now_s(),
            created_at: clock::now_s(),
        };
        Box::pin(async move { (self.0)().await.put_person(person).await.expect("seeded") })
    }

    fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>> {
        Box::pin(async move {
            let store = (self.0)().await;
            Arc::new(PersonPair::new(store, MEMBER_ID, USER_ID)) as Arc<dyn Holder>
        })
    }

    fn kept(&self) -> BoxFuture<'_, Option<Pair>> {
        Box::pin(async move {
            let person = (self.0)().await.person(MEMBER_ID, USER_ID).await;
            person.expect("read").map(|p| Pair::from(p.tokens))
        })
    }

    fn refusal_ends(&self) -> bool {
        true
    }
}

/// Engines sharing one in-memory holder.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryBench(pub(crate) crate::identity::memory::Memory);

#[cfg(test)]
impl Bench for MemoryBench {
    fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
        self.0.seed(pair.clone());
        Box::pin(async {})
    }

    fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>> {
        let holder: Arc<dyn Holder> = Arc::new(self.0.clone());
        Box::pin(async move { holder })
    }

    fn kept(&self) -> BoxFuture<'_, Option<Pair>> {
        let kept = self.0.kept();
        Box::pin(async move { kept })
    }
}
