//! The functions a plugin imports: DeepFlow's `deepflow` module (section 3) and a minimal
//! WASI preview1 (section 6). Every guest pointer is bounds-checked in u64; a bad one is
//! answered with 0 (or a WASI error), never a panic.

use crate::abi::BaseCtx;
use crate::metrics::PluginMetrics;
use crate::result::{decode_blob_in, BlobArena, PluginRecord};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, MemoryView,
    Module, RuntimeError, Type, Value,
};

/// Log levels of `wasm_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// 0.
    Info,
    /// 1 (and unknown levels).
    Warn,
    /// 2.
    Error,
}

/// Where plugin output goes: (plugin name, level, message).
pub type LogSink = Arc<dyn Fn(&str, LogLevel, &str) + Send + Sync>;

/// Which hook is running (decides which `vm_read_*` info is available).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveHook {
    /// `check_payload`.
    Check,
    /// `parse_payload`.
    Parse,
    /// `on_http_req`.
    HttpReq,
    /// `on_http_resp`.
    HttpResp,
    /// `on_custom_message`.
    Custom,
}

/// What a hook stored through `host_read_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookResult {
    /// `host_read_str_result`.
    Str(Vec<u8>),
    /// `host_read_l7_protocol_info`.
    Records(Vec<PluginRecord>),
}

/// HTTP request info parts (section 5.3), encoded only when the guest reads them.
#[derive(Debug, Clone, Default)]
pub struct HttpReqInfo {
    /// Path.
    pub path: Bytes,
    /// Host.
    pub host: Bytes,
    /// User-Agent header.
    pub user_agent: Bytes,
    /// Referer header.
    pub referer: Bytes,
}

/// What a hook is given besides the base context and the payload.
#[derive(Debug, Clone, Default)]
pub enum HookInfo {
    /// Nothing (`check_payload`, `parse_payload`).
    #[default]
    None,
    /// HTTP request info (section 5.3).
    HttpReq(HttpReqInfo),
    /// HTTP response info parts: status code, status, endpoint (section 5.4).
    HttpResp(u16, u8, Bytes),
    /// Custom message info parts: hook point, type code, body (section 5.5).
    Custom(u16, u32, Bytes),
}

/// The parse context of one hook call. One is built per dispatch and handed from plugin to
/// plugin; each part is encoded only when a guest reads it.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// The running hook.
    pub hook: ActiveHook,
    /// The base context (section 5.1).
    pub base: BaseCtx,
    /// The payload.
    pub payload: Bytes,
    /// The hook's own info (read by `vm_read_http_req_info` and its siblings).
    pub info: HookInfo,
    /// The hook's result slot.
    pub result: Option<HookResult>,
}

impl Default for CallCtx {
    /// An empty context (a `check_payload` call on nothing), to be `set` before a call.
    fn default() -> Self {
        let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        CallCtx {
            hook: ActiveHook::Check,
            base: BaseCtx {
                src: nowhere,
                dst: nowhere,
                l4_protocol: 0,
                l7_protocol: 0,
                ebpf_type: 0,
                time_us: 0,
                direction: 0,
                proc_name: Bytes::new(),
                flow_id: 0,
                buf_size: 1,
            },
            payload: Bytes::new(),
            info: HookInfo::None,
            result: None,
        }
    }
}

impl CallCtx {
    /// Drops what the context holds of a record (its buffers), keeping the allocation.
    pub fn clear(&mut self) {
        self.payload = Bytes::new();
        self.base.proc_name = Bytes::new();
        self.info = HookInfo::None;
        self.result = None;
    }
}

/// Per-instance host state.
pub struct Env {
    /// The guest's exported memory (set after instantiation).
    pub memory: Option<Memory>,
    /// The active call's context (`None` between calls and during `_start`).
    pub ctx: Option<Box<CallCtx>>,
    /// Plugin name, for logs.
    pub plugin: Arc<str>,
    /// Log sink.
    pub log: LogSink,
    /// Counters.
    pub metrics: Arc<PluginMetrics>,
    /// Largest result blob accepted.
    pub max_result_bytes: u32,
    /// Log lines per second (`PluginLimits::max_log_lines_per_sec`).
    pub log_per_sec: u32,
    /// Set by `proc_exit`: the exit code.
    pub exit_code: Option<i32>,
    /// Where result blobs are copied (their records' fields are slices of the copies).
    pub blobs: BlobArena,
}

impl Env {
    /// Logs a line of this plugin, within its rate limit.
    pub fn log(&self, level: LogLevel, msg: &str) {
        self.metrics
            .log(&self.log, &self.plugin, level, msg, self.log_per_sec);
    }
}

/// The exit of `proc_exit`, carried through the trap.
#[derive(Debug, thiserror::Error)]
#[error("proc_exit({0})")]
pub struct ProcExit(pub i32);

fn span(ptr: i32, len: i32, mem_size: u64) -> Option<(u64, usize)> {
    let p = u64::from(ptr as u32);
    let l = u64::from(len as u32);
    let end = p.checked_add(l)?;
    (end <= mem_size).then_some((p, l as usize))
}

/// Runs `f` on the guest buffer `[ptr, ptr+len)`; `None` (a bad pointer, counted) when the
/// buffer lies outside the guest's memory.
///
/// wasmer's `MemoryView::read`/`write` copy with volatile 8-byte moves (to be safe against
/// a concurrently running guest); a 1 KiB payload then costs ~130 ns instead of ~20. Here no
/// guest code can run while `f` does: imports run on the thread that called the guest, with
/// the guest suspended in this import, and an instance's store never leaves its worker
/// thread (instances are per thread, plugins cannot start threads). So plain slices are sound.
#[allow(unsafe_code)]
fn in_guest<R>(
    view: &MemoryView<'_>,
    metrics: &PluginMetrics,
    ptr: i32,
    len: i32,
    f: impl FnOnce(&mut [u8]) -> R,
) -> Option<R> {
    let Some((p, l)) = span(ptr, len, view.data_size()) else {
        metrics.bad_pointers.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // SAFETY: see above: nothing else reads, writes or resizes this memory while `f` runs,
    // and the slice does not outlive `f`.
    let mem = unsafe { view.data_unchecked_mut() };
    mem.get_mut(usize::try_from(p).ok()?..)?.get_mut(..l).map(f)
}

/// Reads `[ptr, ptr+len)` of guest memory; `None` (counted) when out of bounds.
fn read(env: &mut FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let (data, store) = env.data_and_store_mut();
    let mem = data.memory.as_ref()?;
    in_guest(&mem.view(&store), &data.metrics, ptr, len, |b| b.to_vec())
}

/// Writes `bytes` into the guest buffer `[ptr, ptr+len)`; false when the buffer lies outside
/// memory (a bad pointer, counted) or the bytes do not fit in it.
fn store_in(
    view: &MemoryView<'_>,
    metrics: &PluginMetrics,
    ptr: i32,
    len: i32,
    bytes: &[u8],
) -> bool {
    in_guest(view, metrics, ptr, len, |dst| {
        match dst.get_mut(..bytes.len()) {
            Some(d) => {
                d.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    })
    .unwrap_or(false)
}

/// Writes `bytes` at `ptr` if they fit in `len` and in memory.
fn write(env: &mut FunctionEnvMut<'_, Env>, ptr: i32, len: i32, bytes: &[u8]) -> bool {
    let (data, store) = env.data_and_store_mut();
    let Some(mem) = data.memory.as_ref() else {
        return false;
    };
    store_in(&mem.view(&store), &data.metrics, ptr, len, bytes)
}

fn wasm_log(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32, level: i32) {
    let Some(msg) = read(&mut env, ptr, len.min(64 * 1024)) else {
        return;
    };
    let d = env.data();
    let level = match level {
        0 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => LogLevel::Warn,
    };
    match std::str::from_utf8(&msg) {
        Ok(s) => d.log(level, s),
        Err(_) => d.log(LogLevel::Error, "wasm_log: message is not UTF-8 (dropped)"),
    }
}

/// Copies the bytes `part` makes of the context into the guest buffer: the bytes written,
/// or 0 (no context, nothing to give, or it does not fit).
fn give(
    env: &mut FunctionEnvMut<'_, Env>,
    ptr: i32,
    len: i32,
    part: impl FnOnce(&CallCtx, &mut dyn FnMut(&[u8]) -> i32) -> i32,
) -> i32 {
    let (data, store) = env.data_and_store_mut();
    let Some(ctx) = data.ctx.as_ref() else {
        return 0;
    };
    let Some(mem) = data.memory.as_ref() else {
        return 0;
    };
    let view = mem.view(&store);
    let mut put = |bytes: &[u8]| -> i32 {
        // Too long is answered before the pointer is looked at (not a bad pointer).
        if (len as u32 as usize) < bytes.len() || !store_in(&view, &data.metrics, ptr, len, bytes) {
            return 0;
        }
        bytes.len() as i32
    };
    part(ctx, &mut put)
}

fn vm_read_ctx_base(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    give(&mut env, ptr, len, |c, put| {
        let mut buf = [0u8; BaseCtx::MAX_ENCODED];
        put(c.base.encode_to(&mut buf))
    })
}

fn vm_read_payload(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    let (data, store) = env.data_and_store_mut();
    let (Some(ctx), Some(mem)) = (data.ctx.as_ref(), data.memory.as_ref()) else {
        return 0;
    };
    if (len as u32 as usize) < ctx.payload.len() {
        return -1;
    }
    // A buffer outside memory answers 0 (counted); one too short was answered -1 above.
    if store_in(&mem.view(&store), &data.metrics, ptr, len, &ctx.payload) {
        ctx.payload.len() as i32
    } else {
        0
    }
}

fn vm_read_http_req_info(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    give(&mut env, ptr, len, |c, put| match &c.info {
        HookInfo::HttpReq(h) => put(&crate::abi::encode_http_req(
            &h.path,
            &h.host,
            &h.user_agent,
            &h.referer,
        )),
        _ => 0,
    })
}

fn vm_read_http_resp_info(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    if len < 3 {
        return 0;
    }
    give(&mut env, ptr, len, |c, put| match &c.info {
        HookInfo::HttpResp(code, status, ep) => put(&crate::abi::encode_http_resp(
            *code,
            *status,
            ep,
            len as u32 as usize,
        )),
        _ => 0,
    })
}

fn vm_read_custom_message_info(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    give(&mut env, ptr, len, |c, put| match &c.info {
        HookInfo::Custom(point, code, body) => {
            put(&crate::abi::encode_custom_message(*point, *code, body))
        }
        _ => 0,
    })
}

fn host_read_l7_protocol_info(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    let (d, store) = env.data_and_store_mut();
    let Some(ctx) = d.ctx.as_mut() else {
        d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    if len as u32 > d.max_result_bytes {
        d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let Some(mem) = d.memory.as_ref() else {
        return 0;
    };
    // Decoded from guest memory; the blob is copied once (into the arena) and its fields
    // are slices of the copy.
    let (hook, direction) = (ctx.hook, ctx.base.direction);
    let arena = &mut d.blobs;
    let decoded = in_guest(&mem.view(&store), &d.metrics, ptr, len, |blob| {
        (hook != ActiveHook::Check).then(|| decode_blob_in(arena, blob, direction))
    });
    match decoded {
        None => 0, // a bad pointer, counted
        Some(None) => {
            d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
            d.log(
                LogLevel::Error,
                "check_payload stored an L7 result; it must store a string",
            );
            0
        }
        Some(Some(Ok(records))) => {
            ctx.result = Some(HookResult::Records(records));
            1
        }
        Some(Some(Err(e))) => {
            d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
            d.log(LogLevel::Error, &e.to_string());
            0
        }
    }
}

fn host_read_str_result(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    let Some(b) = read(&mut env, ptr, len) else {
        return 0;
    };
    let d = env.data_mut();
    let Some(ctx) = d.ctx.as_mut() else { return 0 };
    if b.len() < 2 {
        d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let Some(s) = b.get(2..2 + n) else {
        d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    if ctx.hook != ActiveHook::Check {
        d.metrics.bad_results.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    ctx.result = Some(HookResult::Str(s.to_vec()));
    1
}

// ---- WASI preview1: no files, no network, no environment; stdout/stderr go to the log ----

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;
const ERRNO_SPIPE: i32 = 70;
const ERRNO_NOTCAPABLE: i32 = 76;

fn put_u32s(env: &mut FunctionEnvMut<'_, Env>, ptrs: &[(i32, u32)]) -> i32 {
    for (p, v) in ptrs {
        if !write(env, *p, 4, &v.to_le_bytes()) {
            return ERRNO_FAULT;
        }
    }
    ERRNO_SUCCESS
}

fn args_sizes_get(mut env: FunctionEnvMut<'_, Env>, argc: i32, size: i32) -> i32 {
    put_u32s(&mut env, &[(argc, 0), (size, 0)])
}

fn environ_sizes_get(mut env: FunctionEnvMut<'_, Env>, count: i32, size: i32) -> i32 {
    put_u32s(&mut env, &[(count, 0), (size, 0)])
}

fn args_get(_env: FunctionEnvMut<'_, Env>, _argv: i32, _buf: i32) -> i32 {
    ERRNO_SUCCESS
}

fn environ_get(_env: FunctionEnvMut<'_, Env>, _environ: i32, _buf: i32) -> i32 {
    ERRNO_SUCCESS
}

fn clock_time_get(mut env: FunctionEnvMut<'_, Env>, id: i32, _precision: i64, out: i32) -> i32 {
    let ns = match id {
        0 => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        1..=3 => monotonic_ns(),
        _ => return ERRNO_INVAL,
    };
    if write(&mut env, out, 8, &ns.to_le_bytes()) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

fn fd_write(
    mut env: FunctionEnvMut<'_, Env>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return ERRNO_BADF;
    }
    let n = (iovs_len as u32).min(1024);
    let mut out = Vec::new();
    let mut total: u32 = 0;
    for i in 0..n {
        let Some(iov) = read(&mut env, iovs.wrapping_add((i * 8) as i32), 8) else {
            return ERRNO_FAULT;
        };
        let base = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        // Logged text is capped; the guest is told everything was written.
        let take = len.min(4096u32.saturating_sub(out.len() as u32));
        if take > 0 {
            let Some(b) = read(&mut env, base, take as i32) else {
                return ERRNO_FAULT;
            };
            out.extend_from_slice(&b);
        }
        total = total.saturating_add(len);
    }
    let d = env.data();
    let text = String::from_utf8_lossy(&out);
    let text = text.trim_end_matches('\n');
    if !text.is_empty() {
        d.log(
            if fd == 1 {
                LogLevel::Info
            } else {
                LogLevel::Warn
            },
            text,
        );
    }
    put_u32s(&mut env, &[(nwritten, total)])
}

fn fd_read(
    mut env: FunctionEnvMut<'_, Env>,
    fd: i32,
    _iovs: i32,
    _iovs_len: i32,
    nread: i32,
) -> i32 {
    if fd != 0 {
        return ERRNO_BADF;
    }
    put_u32s(&mut env, &[(nread, 0)]) // stdin is empty
}

fn fd_close(_env: FunctionEnvMut<'_, Env>, fd: i32) -> i32 {
    if (0..=2).contains(&fd) {
        ERRNO_SUCCESS
    } else {
        ERRNO_BADF
    }
}

fn fd_fdstat_get(mut env: FunctionEnvMut<'_, Env>, fd: i32, out: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return ERRNO_BADF;
    }
    // filetype character device (2), no flags, rights: read for stdin, write for stdout/stderr.
    let mut st = [0u8; 24];
    st[0] = 2;
    let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 };
    st[8..16].copy_from_slice(&rights.to_le_bytes());
    if write(&mut env, out, 24, &st) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

fn fd_filestat_get(_env: FunctionEnvMut<'_, Env>, _fd: i32, _out: i32) -> i32 {
    ERRNO_BADF
}

fn fd_pread(
    _env: FunctionEnvMut<'_, Env>,
    _fd: i32,
    _iovs: i32,
    _len: i32,
    _off: i64,
    _n: i32,
) -> i32 {
    ERRNO_BADF
}

fn fd_prestat_get(_env: FunctionEnvMut<'_, Env>, _fd: i32, _out: i32) -> i32 {
    ERRNO_BADF // no preopened directories
}

fn fd_prestat_dir_name(_env: FunctionEnvMut<'_, Env>, _fd: i32, _p: i32, _l: i32) -> i32 {
    ERRNO_BADF
}

fn fd_seek(_env: FunctionEnvMut<'_, Env>, fd: i32, _off: i64, _whence: i32, _out: i32) -> i32 {
    if (0..=2).contains(&fd) {
        ERRNO_SPIPE
    } else {
        ERRNO_BADF
    }
}

#[allow(clippy::too_many_arguments)]
fn path_open(
    _env: FunctionEnvMut<'_, Env>,
    _fd: i32,
    _dirflags: i32,
    _path: i32,
    _path_len: i32,
    _oflags: i32,
    _rights_base: i64,
    _rights_inh: i64,
    _fdflags: i32,
    _out: i32,
) -> i32 {
    ERRNO_NOTCAPABLE
}

fn path_readlink(
    _env: FunctionEnvMut<'_, Env>,
    _fd: i32,
    _p: i32,
    _pl: i32,
    _b: i32,
    _bl: i32,
    _out: i32,
) -> i32 {
    ERRNO_NOTCAPABLE
}

fn proc_exit(mut env: FunctionEnvMut<'_, Env>, code: i32) -> Result<(), RuntimeError> {
    env.data_mut().exit_code = Some(code);
    Err(RuntimeError::user(Box::new(ProcExit(code))))
}

fn sched_yield(_env: FunctionEnvMut<'_, Env>) -> i32 {
    ERRNO_SUCCESS
}

fn random_get(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) -> i32 {
    let n = (len as u32 as usize).min(1 << 20);
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        return ERRNO_NOSYS;
    }
    if write(&mut env, ptr, len, &buf) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    }
}

/// Why a module cannot be linked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// An import from a module other than `deepflow` and `wasi_snapshot_preview1`.
    #[error("unknown import {module}.{name}")]
    UnknownModule {
        /// Module name.
        module: String,
        /// Item name.
        name: String,
    },
    /// A `deepflow` import that does not exist.
    #[error("unknown import deepflow.{0}")]
    UnknownDeepflow(String),
    /// An import whose type differs from the ABI's.
    #[error("import {module}.{name} has type {found}, the ABI says {expected}")]
    WrongType {
        /// Module name.
        module: String,
        /// Item name.
        name: String,
        /// What the module declares.
        found: String,
        /// What the ABI defines.
        expected: String,
    },
    /// A memory, table or global import.
    #[error("import {module}.{name} is not a function")]
    NotAFunction {
        /// Module name.
        module: String,
        /// Item name.
        name: String,
    },
}

/// Builds the import object for `module`: every import it declares is resolved (the ABI's
/// functions type-checked; other WASI functions stubbed with ENOSYS), or the first one that
/// cannot be is reported.
pub fn imports_for(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<Env>,
    module: &Module,
) -> Result<Imports, LinkError> {
    let mut imports = Imports::new();
    for imp in module.imports() {
        let (m, name) = (imp.module().to_string(), imp.name().to_string());
        let Some(want) = imp.ty().func().cloned() else {
            return Err(LinkError::NotAFunction { module: m, name });
        };
        let f = match m.as_str() {
            "deepflow" => deepflow_fn(store, env, &name)
                .ok_or_else(|| LinkError::UnknownDeepflow(name.clone()))?,
            "wasi_snapshot_preview1" => match wasi_fn(store, env, &name) {
                Some(f) => f,
                None => {
                    // Not one we implement: a stub of the declared type that says ENOSYS.
                    let results: Vec<Value> = want
                        .results()
                        .iter()
                        .map(|t| match t {
                            Type::I32 => Value::I32(ERRNO_NOSYS),
                            Type::I64 => Value::I64(i64::from(ERRNO_NOSYS)),
                            Type::F32 => Value::F32(0.0),
                            Type::F64 => Value::F64(0.0),
                            _ => Value::I32(0),
                        })
                        .collect();
                    Function::new(store, want.clone(), move |_| Ok(results.clone()))
                }
            },
            _ => return Err(LinkError::UnknownModule { module: m, name }),
        };
        let have: FunctionType = f.ty(store);
        if have != want {
            return Err(LinkError::WrongType {
                module: m,
                name,
                found: format!("{want}"),
                expected: format!("{have}"),
            });
        }
        imports.define(imp.module(), imp.name(), f);
    }
    Ok(imports)
}

fn deepflow_fn(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<Env>,
    name: &str,
) -> Option<Function> {
    Some(match name {
        "wasm_log" => Function::new_typed_with_env(store, env, wasm_log),
        "vm_read_ctx_base" => Function::new_typed_with_env(store, env, vm_read_ctx_base),
        "vm_read_payload" => Function::new_typed_with_env(store, env, vm_read_payload),
        "vm_read_http_req_info" => Function::new_typed_with_env(store, env, vm_read_http_req_info),
        "vm_read_http_resp_info" => {
            Function::new_typed_with_env(store, env, vm_read_http_resp_info)
        }
        "vm_read_custom_message_info" => {
            Function::new_typed_with_env(store, env, vm_read_custom_message_info)
        }
        "host_read_l7_protocol_info" => {
            Function::new_typed_with_env(store, env, host_read_l7_protocol_info)
        }
        "host_read_str_result" => Function::new_typed_with_env(store, env, host_read_str_result),
        // Declared by old SDKs, never called; DeepFlow lacks it and fails to link such modules.
        "host_read_http_result" => Function::new_typed_with_env(
            store,
            env,
            |_e: FunctionEnvMut<'_, Env>, _p: i32, _l: i32| -> i32 { 0 },
        ),
        _ => return None,
    })
}

fn wasi_fn(store: &mut impl AsStoreMut, env: &FunctionEnv<Env>, name: &str) -> Option<Function> {
    Some(match name {
        "args_sizes_get" => Function::new_typed_with_env(store, env, args_sizes_get),
        "args_get" => Function::new_typed_with_env(store, env, args_get),
        "environ_sizes_get" => Function::new_typed_with_env(store, env, environ_sizes_get),
        "environ_get" => Function::new_typed_with_env(store, env, environ_get),
        "clock_time_get" => Function::new_typed_with_env(store, env, clock_time_get),
        "fd_write" => Function::new_typed_with_env(store, env, fd_write),
        "fd_read" => Function::new_typed_with_env(store, env, fd_read),
        "fd_close" => Function::new_typed_with_env(store, env, fd_close),
        "fd_fdstat_get" => Function::new_typed_with_env(store, env, fd_fdstat_get),
        "fd_filestat_get" => Function::new_typed_with_env(store, env, fd_filestat_get),
        "fd_pread" => Function::new_typed_with_env(store, env, fd_pread),
        "fd_prestat_get" => Function::new_typed_with_env(store, env, fd_prestat_get),
        "fd_prestat_dir_name" => Function::new_typed_with_env(store, env, fd_prestat_dir_name),
        "fd_seek" => Function::new_typed_with_env(store, env, fd_seek),
        "path_open" => Function::new_typed_with_env(store, env, path_open),
        "path_readlink" => Function::new_typed_with_env(store, env, path_readlink),
        "proc_exit" => Function::new_typed_with_env(store, env, proc_exit),
        "sched_yield" => Function::new_typed_with_env(store, env, sched_yield),
        "random_get" => Function::new_typed_with_env(store, env, random_get),
        _ => return None,
    })
}
