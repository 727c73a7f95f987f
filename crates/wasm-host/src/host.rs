//! Loading plugins, one instance per worker thread, and calling hooks with the ABI's
//! iteration and return-code rules (section 4), contained: a failing plugin is counted,
//! re-instantiated, and disabled after repeated failures; the record continues unchanged.

use crate::abi::{self, CustomHook};
use crate::imports::{
    imports_for, CallCtx, Env, HookResult, LinkError, LogLevel, LogSink, ProcExit,
};
use crate::limits::{engine, PluginLimits, MAX_TABLES};
use crate::metrics::{clock, CallStats, FailureKind, Hook, PluginMetrics};
use crate::result::BlobArena;
use crate::watchdog::{BudgetPtr, CallWatch};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmer::{
    AsStoreMut, Engine, FunctionEnv, Global, Instance, Memory, Module, RuntimeError, Store,
    TypedFunction, Value,
};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module is larger than the limit.
    #[error("module is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid WebAssembly.
    #[error("not a valid module: {0}")]
    Compile(String),
    /// An import cannot be provided.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A required export is missing or has the wrong type.
    #[error("export {name}: {reason}")]
    Export {
        /// The export.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Instantiation failed (e.g. memory larger than the cap).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// `_start` trapped or ran out of budget.
    #[error("_start failed: {0}")]
    Start(String),
    /// `get_hook_bitmap` / `get_custom_message_hook` returned a pointer outside memory.
    #[error("{0} points outside the module's memory")]
    BadPointer(&'static str),
    /// A plugin of that name is already loaded.
    #[error("a plugin named {0} is already loaded")]
    Duplicate(String),
}

/// A compiled plugin and what it registered.
pub struct Plugin {
    /// Its name (unique in a host).
    pub name: Arc<str>,
    engine: Engine,
    module: Module,
    /// The hook bitmap (section 2.1).
    pub hooks: u128,
    /// The custom-message hook, when exported and set.
    pub custom_hook: Option<CustomHook>,
    has_custom_export: bool,
    /// Counters, shared by every worker's instance.
    pub metrics: Arc<PluginMetrics>,
    disabled: AtomicBool,
    reason: Mutex<Option<String>>,
    consecutive_failures: AtomicU32,
}

impl Plugin {
    /// True once the plugin was disabled after repeated failures.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Why it was disabled.
    pub fn disabled_reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    /// The hooks it registered, by name.
    pub fn hook_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.hooks & abi::HOOK_HTTP_REQ != 0 {
            v.push("http_req");
        }
        if self.hooks & abi::HOOK_HTTP_RESP != 0 {
            v.push("http_resp");
        }
        if self.hooks & abi::HOOK_PAYLOAD_PARSE != 0 {
            v.push("payload_parse");
        }
        if self.hooks & abi::HOOK_CUSTOM_MESSAGE != 0 && self.has_custom_export {
            v.push("custom_message");
        }
        v
    }

    fn wants(&self, hook: Hook) -> bool {
        let bit = match hook {
            Hook::HttpReq => abi::HOOK_HTTP_REQ,
            Hook::HttpResp => abi::HOOK_HTTP_RESP,
            Hook::CheckPayload | Hook::ParsePayload => abi::HOOK_PAYLOAD_PARSE,
            Hook::CustomMessage => abi::HOOK_CUSTOM_MESSAGE,
        };
        self.hooks & bit != 0 && !self.is_disabled()
    }
}

/// A plugin instantiated in one thread's store.
struct Instantiated {
    /// First, so it is dropped (and leaves the watchdog) before the store that owns its global.
    budget: Budget,
    store: Store,
    instance: Instance,
    env: FunctionEnv<Env>,
    memory: Memory,
    funcs: [Option<TypedFunction<(), i32>>; 5],
    /// This instance's share of the plugin's call counters (only this thread writes it).
    stats: Arc<CallStats>,
    /// Calls until the memory-size gauge is read again (reading it costs as much as a
    /// no-op hook's own dispatch; memory only changes by the guest's `memory.grow`).
    mem_countdown: u32,
}

/// The memory-size gauge is refreshed every this many calls of an instance, and after every
/// failed call (where the size also tells a memory failure from a trap).
const MEM_GAUGE_EVERY: u32 = 16;

/// The metering middleware's two globals, looked up once per instance (the middleware's own
/// helpers look them up by name on every call and panic if they are missing), and the
/// instance's entry with the deadline watchdog. The remaining budget is set and read through
/// its address: wasmer's `Global` API costs ~120 instructions per call for the pair.
struct Budget {
    remaining: BudgetPtr,
    exhausted: Global,
    watch: Arc<CallWatch>,
}

impl Budget {
    #[allow(unsafe_code)]
    fn of(
        instance: &Instance,
        store: &mut Store,
        limits: &PluginLimits,
    ) -> Result<Budget, LoadError> {
        let g = |n: &'static str| {
            instance
                .exports
                .get_global(n)
                .cloned()
                .map_err(|e| LoadError::Export {
                    name: n,
                    reason: e.to_string(),
                })
        };
        let remaining = g("wasmer_metering_remaining_points")?;
        let exhausted = g("wasmer_metering_points_exhausted")?;
        let at = global_address(store, &remaining).ok_or_else(|| {
            LoadError::Instantiate("the metering budget global cannot be located".into())
        })?;
        // SAFETY: `at` is the value of the instance's i64 global, owned by `store`; every
        // `Instantiated` and `instantiate` drops its `Budget` (which calls `forget`) before
        // the store.
        let remaining = unsafe { BudgetPtr::new(at) };
        let watch = CallWatch::new(remaining, limits.max_call_time.min(limits.max_start_time))
            .map_err(LoadError::Instantiate)?;
        Ok(Budget {
            remaining,
            exhausted,
            watch,
        })
    }

    /// Starts a guest call with `points` and `limit_ticks` of wall-clock time; returns its
    /// start tick. The exhausted flag needs no reset: an instance whose budget ran out trapped
    /// and is replaced by a fresh one.
    fn begin(&self, points: u64, limit_ticks: u64) -> u64 {
        self.watch.begin(&self.remaining, points, limit_ticks)
    }

    /// Ends the call; true when the watchdog stopped it at its deadline.
    fn end(&self) -> bool {
        self.watch.end()
    }

    /// Points left of the last budget.
    fn remaining(&self) -> u64 {
        self.remaining.get()
    }

    fn is_exhausted(&self, store: &mut Store) -> bool {
        matches!(self.exhausted.get(store), Value::I32(v) if v > 0)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.watch.forget();
    }
}

/// The address of the value of the i64 global `g`. wasmer has no public accessor for it, so
/// `g` is given a value no other global of the store holds and the store's globals are
/// searched for it; exactly one must match, and a write through the address must read back
/// through `g`.
#[allow(unsafe_code)]
fn global_address(store: &mut Store, g: &Global) -> Option<std::ptr::NonNull<u64>> {
    const MARK: i64 = 0x6c37_7461_705f_6d74; // "l7tap_mt"
    g.set(store, Value::I64(MARK)).ok()?;
    let mut found = None;
    let mut matches = 0;
    for vg in store.objects_mut().as_sys().iter_globals() {
        if vg.ty().ty != wasmer::Type::I64 {
            continue;
        }
        let p = vg.vmglobal();
        // SAFETY: the store owns the global and no guest code runs; an I64 global's value
        // is the union's `i64` field.
        if unsafe { p.as_ref().val.i64 } == MARK {
            matches += 1;
            found = Some(p.cast::<u64>());
        }
    }
    let p = found.filter(|_| matches == 1)?;
    // SAFETY: as above; the union's first 8 bytes are the i64 value.
    unsafe { p.as_ptr().write(!(MARK as u64)) };
    (g.get(store) == Value::I64(!MARK)).then_some(p)
}

fn hook_index(h: Hook) -> usize {
    Hook::ALL.iter().position(|x| *x == h).unwrap_or(0)
}

fn instantiate(
    name: &Arc<str>,
    engine: &Engine,
    module: &Module,
    limits: &PluginLimits,
    log: &LogSink,
    metrics: &Arc<PluginMetrics>,
) -> Result<Instantiated, LoadError> {
    let mut store = Store::new(engine.clone());
    let env = FunctionEnv::new(
        &mut store,
        Env {
            memory: None,
            ctx: None,
            plugin: Arc::clone(name),
            log: Arc::clone(log),
            metrics: Arc::clone(metrics),
            max_result_bytes: limits.max_result_bytes,
            log_per_sec: limits.max_log_lines_per_sec,
            exit_code: None,
            blobs: BlobArena::default(),
        },
    );
    let imports = imports_for(&mut store, &env, module)?;
    let instance = Instance::new(&mut store, module, &imports)
        .map_err(|e| LoadError::Instantiate(e.to_string()))?;
    let memory = instance
        .exports
        .get_memory("memory")
        .map_err(|e| LoadError::Export {
            name: "memory",
            reason: e.to_string(),
        })?
        .clone();
    env.as_mut(&mut store).memory = Some(memory.clone());
    let typed = |store: &Store, n: &'static str| {
        instance
            .exports
            .get_typed_function::<(), i32>(store, n)
            .map_err(|e| LoadError::Export {
                name: n,
                reason: e.to_string(),
            })
    };
    let mut funcs: [Option<TypedFunction<(), i32>>; 5] = Default::default();
    for h in [
        Hook::CheckPayload,
        Hook::ParsePayload,
        Hook::HttpReq,
        Hook::HttpResp,
    ] {
        funcs[hook_index(h)] = Some(typed(&store, h.export())?);
    }
    funcs[hook_index(Hook::CustomMessage)] = typed(&store, "on_custom_message").ok();
    let start = instance
        .exports
        .get_typed_function::<(), ()>(&store, "_start")
        .map_err(|e| LoadError::Export {
            name: "_start",
            reason: e.to_string(),
        })?;
    let budget = Budget::of(&instance, &mut store, limits)?;
    budget.begin(
        limits.instructions_at_start,
        ticks_of(limits.max_start_time),
    );
    let started = start.call(&mut store);
    let late = budget.end();
    if let Err(e) = started {
        // Go's wasip1 runtime ends `_start` with proc_exit(0): a normal start. The import
        // records the code in the environment (the trap's payload does not survive the
        // unwinding as a typed error).
        let exit0 = env.as_ref(&store).exit_code == Some(0)
            || e.clone().downcast::<ProcExit>().is_ok_and(|p| p.0 == 0);
        if !exit0 {
            let why = if late {
                format!("ran past its deadline of {:?}", limits.max_start_time)
            } else if budget.is_exhausted(&mut store) {
                "instruction budget exhausted".to_string()
            } else {
                e.message()
            };
            return Err(LoadError::Start(why));
        }
    }
    Ok(Instantiated {
        store,
        instance,
        env,
        memory,
        funcs,
        budget,
        stats: metrics.shard(),
        mem_countdown: 0,
    })
}

/// Reads `n` bytes at the pointer an export returned; `Ok(None)` for a null pointer.
fn read_export_ptr(
    inst: &mut Instantiated,
    export: &'static str,
    n: usize,
    limit: Duration,
) -> Result<Option<Vec<u8>>, LoadError> {
    let Ok(f) = inst
        .instance
        .exports
        .get_typed_function::<(), i32>(&inst.store, export)
    else {
        return Ok(None);
    };
    inst.budget.begin(inst.budget.remaining(), ticks_of(limit));
    let called = f.call(&mut inst.store);
    let late = inst.budget.end();
    let ptr = called.map_err(|e| {
        let why = if late {
            format!("ran past its deadline of {limit:?}")
        } else {
            e.message()
        };
        LoadError::Start(format!("{export}: {why}"))
    })?;
    if ptr == 0 {
        return Ok(None);
    }
    let view = inst.memory.view(&inst.store);
    let p = u64::from(ptr as u32);
    if p + n as u64 > view.data_size() {
        return Err(LoadError::BadPointer(export));
    }
    let mut buf = vec![0u8; n];
    view.read(p, &mut buf)
        .map_err(|_| LoadError::BadPointer(export))?;
    Ok(Some(buf))
}

/// A duration in clock ticks (for deadlines).
fn ticks_of(d: Duration) -> u64 {
    clock::from_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

static NEXT_HOST_ID: AtomicU64 = AtomicU64::new(1);

/// Compiled modules by content and limits, so loading the same plugin again (another engine,
/// a reload, a test) does not compile it again. Bounded; cleared when full.
type ModuleCache = HashMap<(u64, u64, u64, u32), (Arc<[u8]>, Engine, Module)>;
static MODULE_CACHE: Mutex<Option<ModuleCache>> = Mutex::new(None);
const MODULE_CACHE_ENTRIES: usize = 64;

fn compiled(wasm: &[u8], limits: &PluginLimits) -> Result<(Engine, Module), LoadError> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut h);
    let key = (
        h.finish(),
        limits.instructions_per_call,
        limits.max_memory_bytes,
        limits.max_table_elements,
    );
    let mut cache = MODULE_CACHE.lock();
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some((bytes, e, m)) = map.get(&key) {
        if bytes.as_ref() == wasm {
            return Ok((e.clone(), m.clone()));
        }
    }
    let e = engine(limits);
    let m = Module::new(&e, wasm).map_err(|err| LoadError::Compile(err.to_string()))?;
    let info = m.info();
    if info.memories.len() > 1 {
        return Err(LoadError::Compile(format!(
            "the module defines {} linear memories; a plugin may have one (the memory cap is per memory)",
            info.memories.len()
        )));
    }
    if info.tables.len() > MAX_TABLES {
        return Err(LoadError::Compile(format!(
            "the module defines {} tables; a plugin may have at most {MAX_TABLES}",
            info.tables.len()
        )));
    }
    if map.len() >= MODULE_CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, (Arc::from(wasm), e.clone(), m.clone()));
    Ok((e, m))
}

struct HostInner {
    id: u64,
    limits: PluginLimits,
    /// `limits.max_call_time` in clock ticks.
    call_ticks: u64,
    log: LogSink,
    plugins: RwLock<Arc<Vec<Arc<Plugin>>>>,
    generation: AtomicU64,
    /// Bit per hook (Hook::ALL order): some loaded plugin registered it. Checked before any
    /// other work so records pass plugin-free paths at the cost of one load.
    wanted: AtomicU64,
}

/// The plugins of an engine: load, unload and reload them by name at any time; every worker
/// thread picks up the new set at its next call.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.names())
            .finish()
    }
}

/// What a hook call came to.
pub(crate) enum Outcome {
    /// The plugin returned this code; its result slot held this.
    Returned(i32, Option<HookResult>),
    /// The call failed (already counted).
    Failed,
}

/// A worker thread's instances of one host's plugins.
struct ThreadPlugins {
    generation: u64,
    plugins: Arc<Vec<Arc<Plugin>>>,
    instances: Vec<Option<Instantiated>>,
    /// The call context's box, kept between dispatches.
    spare: Option<Box<CallCtx>>,
}

impl Default for ThreadPlugins {
    fn default() -> Self {
        ThreadPlugins {
            generation: u64::MAX,
            plugins: Arc::new(Vec::new()),
            instances: Vec::new(),
            spare: None,
        }
    }
}

/// A worker thread's instances, per host (usually one host: a short list is searched
/// faster than a map is hashed). Entries of hosts that are gone are pruned when a host is
/// added, so a long-lived thread does not keep dead hosts' instances.
struct ThreadHost {
    id: u64,
    host: Weak<HostInner>,
    plugins: ThreadPlugins,
}

thread_local! {
    static RUNTIMES: RefCell<Vec<ThreadHost>> = const { RefCell::new(Vec::new()) };
}

/// The default log sink: stderr, one line per message, with the plugin's name.
pub fn stderr_log() -> LogSink {
    Arc::new(|plugin: &str, level: LogLevel, msg: &str| {
        eprintln!("l7tap plugin {plugin} [{level:?}]: {msg}")
    })
}

impl PluginHost {
    /// An empty host with these limits; plugin output goes to `log`.
    pub fn new(limits: PluginLimits, log: LogSink) -> Self {
        clock::init();
        PluginHost {
            inner: Arc::new(HostInner {
                id: NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed),
                call_ticks: ticks_of(limits.max_call_time),
                limits,
                log,
                plugins: RwLock::new(Arc::new(Vec::new())),
                generation: AtomicU64::new(0),
                wanted: AtomicU64::new(0),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &PluginLimits {
        &self.inner.limits
    }

    /// Compiles and validates a plugin (imports linked, exports type-checked, `_start` run,
    /// hooks read) without adding it.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let limits = &self.inner.limits;
        if wasm.len() > limits.max_module_bytes {
            return Err(LoadError::TooLarge {
                size: wasm.len(),
                limit: limits.max_module_bytes,
            });
        }
        let (engine, module) = compiled(wasm, limits)?;
        let name: Arc<str> = Arc::from(name);
        let metrics = Arc::new(PluginMetrics::default());
        let mut inst = instantiate(&name, &engine, &module, limits, &self.inner.log, &metrics)?;
        let hooks = read_export_ptr(&mut inst, "get_hook_bitmap", 16, limits.max_start_time)?
            .map(|b| u128::from_be_bytes(b.try_into().unwrap_or([0; 16])))
            .unwrap_or(0);
        let custom_hook = read_export_ptr(
            &mut inst,
            "get_custom_message_hook",
            8,
            limits.max_start_time,
        )?
        .map(|b| CustomHook::from_word(u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))));
        let has_custom_export = inst.funcs[hook_index(Hook::CustomMessage)].is_some();
        Ok(Arc::new(Plugin {
            name,
            engine,
            module,
            hooks,
            custom_hook,
            has_custom_export,
            metrics,
            disabled: AtomicBool::new(false),
            reason: Mutex::new(None),
            consecutive_failures: AtomicU32::new(0),
        }))
    }

    /// Loads a plugin at the end of the call order.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        if self.get(name).is_some() {
            return Err(LoadError::Duplicate(name.to_string()));
        }
        let p = self.compile(name, wasm)?;
        self.swap(|v| v.push(Arc::clone(&p)));
        Ok(p)
    }

    /// Replaces the plugin `name` (same place in the order) with a new build; loads it at the
    /// end when there was none.
    pub fn reload(&self, name: &str, wasm: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let p = self.compile(name, wasm)?;
        self.swap(|v| match v.iter().position(|q| &*q.name == name) {
            Some(i) => v[i] = Arc::clone(&p),
            None => v.push(Arc::clone(&p)),
        });
        Ok(p)
    }

    /// Removes the plugin `name`; false when there was none.
    pub fn unload(&self, name: &str) -> bool {
        let mut found = false;
        self.swap(|v| {
            let before = v.len();
            v.retain(|p| &*p.name != name);
            found = v.len() != before;
        });
        found
    }

    fn swap(&self, f: impl FnOnce(&mut Vec<Arc<Plugin>>)) {
        let mut guard = self.inner.plugins.write();
        let mut v: Vec<Arc<Plugin>> = guard.as_ref().clone();
        f(&mut v);
        let mut wanted = 0u64;
        for p in &v {
            for (i, h) in Hook::ALL.iter().enumerate() {
                if p.wants(*h) {
                    wanted |= 1 << i;
                }
            }
        }
        self.inner.wanted.store(wanted, Ordering::Release);
        *guard = Arc::new(v);
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// The loaded plugins, in call order.
    pub fn plugins(&self) -> Arc<Vec<Arc<Plugin>>> {
        Arc::clone(&self.inner.plugins.read())
    }

    /// Names in call order.
    pub fn names(&self) -> Vec<String> {
        self.plugins().iter().map(|p| p.name.to_string()).collect()
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins().iter().find(|p| &*p.name == name).cloned()
    }

    /// True when some loaded plugin registered this hook (disabled ones included: the
    /// per-plugin check skips them).
    pub fn any_wants(&self, hook: Hook) -> bool {
        self.inner.wanted.load(Ordering::Acquire) & (1 << hook_index(hook)) != 0
    }

    /// Runs `f` with this thread's instances (rebuilt when the plugin set changed).
    fn with_thread<R>(&self, f: impl FnOnce(&mut ThreadPlugins, &HostInner) -> R) -> R {
        RUNTIMES.with(|rt| {
            let mut hosts = rt.borrow_mut();
            let generation = self.inner.generation.load(Ordering::Acquire);
            let id = self.inner.id;
            let at = match hosts.iter().position(|h| h.id == id) {
                Some(at) => at,
                None => {
                    hosts.retain(|h| h.host.strong_count() > 0);
                    hosts.push(ThreadHost {
                        id,
                        host: Arc::downgrade(&self.inner),
                        plugins: ThreadPlugins::default(),
                    });
                    hosts.len() - 1
                }
            };
            let tp = &mut hosts[at].plugins;
            if tp.generation != generation {
                let plugins = self.plugins();
                // Keep the instances of plugins that did not change.
                let mut instances: Vec<Option<Instantiated>> = Vec::with_capacity(plugins.len());
                let mut old: Vec<(Arc<Plugin>, Option<Instantiated>)> = tp
                    .plugins
                    .iter()
                    .cloned()
                    .zip(tp.instances.drain(..))
                    .collect();
                for p in plugins.iter() {
                    let reuse = old
                        .iter()
                        .position(|(q, _)| Arc::ptr_eq(q, p))
                        .and_then(|i| old[i].1.take());
                    instances.push(reuse);
                }
                tp.plugins = plugins;
                tp.instances = instances;
                tp.generation = generation;
            }
            f(tp, &self.inner)
        })
    }

    /// Calls `hook` on each plugin that wants it, in order, handing the call context that
    /// `prepare` filled from one to the next (its result slot emptied in between); `decide`
    /// sees each outcome and says whether to stop. Gives the context's payload back.
    pub(crate) fn call_each(
        &self,
        hook: Hook,
        prepare: impl FnOnce(&mut CallCtx),
        decide: &mut dyn FnMut(&Arc<Plugin>, Outcome) -> bool,
    ) -> Bytes {
        self.with_thread(|tp, inner| {
            let ThreadPlugins {
                plugins,
                instances,
                spare,
                ..
            } = tp;
            // Boxed: it moves into each instance's environment and back, a pointer swap. The
            // thread keeps the box for its next dispatch, and it is filled in place.
            let mut b = spare.take().unwrap_or_default();
            prepare(&mut b);
            let mut ctx = Some(b);
            for (plugin, slot) in plugins.iter().zip(instances.iter_mut()) {
                if !plugin.wants(hook) {
                    continue;
                }
                if hook == Hook::CustomMessage && !plugin.has_custom_export {
                    continue;
                }
                let outcome = call_one(inner, plugin, slot, hook, &mut ctx);
                if decide(plugin, outcome) {
                    break;
                }
            }
            let Some(mut b) = ctx else {
                return Bytes::new();
            };
            let payload = std::mem::take(&mut b.payload);
            // Nothing of this record stays alive in the spare box.
            b.clear();
            *spare = Some(b);
            payload
        })
    }

    /// Records a valid-but-unexpected return code as a failure (section 4: "else error").
    pub(crate) fn bad_return(&self, plugin: &Plugin, code: i32, hook: Hook) {
        failed(
            &self.inner,
            plugin,
            FailureKind::BadReturn,
            &format!("{} returned {code}", hook.export()),
        );
    }

    /// Counters of every plugin, by name.
    pub fn metrics(&self) -> Vec<(String, Vec<(String, u64)>)> {
        self.plugins()
            .iter()
            .map(|p| (p.name.to_string(), p.metrics.snapshot()))
            .collect()
    }
}

fn failed(inner: &HostInner, plugin: &Plugin, kind: FailureKind, why: &str) {
    plugin.metrics.fail(kind);
    let n = plugin.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    let per_sec = inner.limits.max_log_lines_per_sec;
    plugin.metrics.log(
        &inner.log,
        &plugin.name,
        LogLevel::Error,
        &format!("{} failure: {why}", kind.name()),
        per_sec,
    );
    if n >= inner.limits.max_consecutive_failures && !plugin.disabled.swap(true, Ordering::Relaxed)
    {
        let reason = format!(
            "disabled after {n} consecutive failures; last: {} ({why})",
            kind.name()
        );
        // Always logged: once per plugin, and the reason the operator needs.
        (inner.log)(&plugin.name, LogLevel::Error, &reason);
        *plugin.reason.lock() = Some(reason);
    }
}

fn call_one(
    inner: &HostInner,
    plugin: &Arc<Plugin>,
    slot: &mut Option<Instantiated>,
    hook: Hook,
    ctx: &mut Option<Box<CallCtx>>,
) -> Outcome {
    if slot.is_none() {
        match instantiate(
            &plugin.name,
            &plugin.engine,
            &plugin.module,
            &inner.limits,
            &inner.log,
            &plugin.metrics,
        ) {
            Ok(i) => *slot = Some(i),
            Err(e) => {
                failed(inner, plugin, FailureKind::Instantiate, &e.to_string());
                return Outcome::Failed;
            }
        }
    }
    let Some(inst) = slot.as_mut() else {
        return Outcome::Failed;
    };
    let Some(func) = inst.funcs[hook_index(hook)].as_ref() else {
        return Outcome::Failed;
    };
    if ctx.is_none() {
        return Outcome::Failed;
    }
    // The context moves into the instance for the call and back out after it.
    std::mem::swap(&mut inst.env.as_mut(&mut inst.store).ctx, ctx);
    let t0 = inst
        .budget
        .begin(inner.limits.instructions_per_call, inner.call_ticks);
    let r: Result<i32, RuntimeError> = func.call(&mut inst.store);
    let ticks = clock::now().wrapping_sub(t0);
    let late = inst.budget.end();
    let left = inst.budget.remaining();
    inst.stats.record(
        hook,
        ticks,
        inner.limits.instructions_per_call.saturating_sub(left),
    );
    std::mem::swap(&mut inst.env.as_mut(&mut inst.store).ctx, ctx);
    let result = ctx.as_mut().and_then(|c| c.result.take());
    let memory_size = || {
        let mem = inst.memory.view(&inst.store).data_size();
        if plugin.metrics.memory_bytes.load(Ordering::Relaxed) != mem {
            plugin.metrics.memory_bytes.store(mem, Ordering::Relaxed);
        }
        mem
    };
    if r.is_ok() {
        if inst.mem_countdown == 0 {
            memory_size();
            inst.mem_countdown = MEM_GAUGE_EVERY;
        }
        inst.mem_countdown -= 1;
    }
    match r {
        Ok(code) => {
            if plugin.consecutive_failures.load(Ordering::Relaxed) != 0 {
                plugin.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Outcome::Returned(code, result)
        }
        Err(e) => {
            let mem = memory_size();
            let kind = if late {
                FailureKind::Deadline
            } else if inst.budget.is_exhausted(&mut inst.store) {
                FailureKind::Budget
            } else if mem + 65536 > inner.limits.max_memory_bytes {
                FailureKind::Memory
            } else {
                FailureKind::Trap
            };
            failed(
                inner,
                plugin,
                kind,
                &format!("{}: {}", hook.export(), e.message()),
            );
            // A trapped instance may hold broken state: start afresh next time (cheap).
            *slot = None;
            Outcome::Failed
        }
    }
}
