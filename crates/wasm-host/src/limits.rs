//! Resource limits DeepFlow lacks: a linear-memory cap (enforced by the engine's tunables, so
//! `memory.grow` past it returns -1 inside the guest), an instruction budget per call
//! (wasmer metering; an exhausted budget traps and is told apart by the exhausted flag) and a
//! wall-clock deadline per call (the watchdog, `crate::watchdog`: one bulk-memory operator
//! counts as one instruction however many bytes it moves).

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;
use wasmer::sys::vm::{
    MemoryError, MemoryStyle, TableStyle, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, CompilerConfig, Cranelift, EngineBuilder, Tunables};
use wasmer::{Engine, MemoryType, Pages, TableType};
use wasmer_middlewares::Metering;

/// Limits applied to every plugin.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Wasm operators one hook call may execute (metering); an endless loop stops here.
    pub instructions_per_call: u64,
    /// Instructions `_start` may execute at load.
    pub instructions_at_start: u64,
    /// Wall-clock time one hook call may take; a call past it is stopped (within one bulk
    /// memory operation and a quarter of this, at most 25 ms) and counted as a `deadline`
    /// failure. Also bounds a loop of `memory.fill`/`memory.copy`, which the instruction
    /// budget counts one per operation whatever its length.
    pub max_call_time: Duration,
    /// Wall-clock time `_start` and the hook-table exports may take when an instance is made
    /// (at load, and on a worker again after each failed call: a plugin that fails every call
    /// can hold a worker for at most `max_consecutive_failures` of these before it is disabled).
    pub max_start_time: Duration,
    /// Largest linear memory, bytes (rounded down to 64 KiB pages). A plugin has one linear
    /// memory: a module that defines more (multi-memory) is refused, or each would get the cap.
    pub max_memory_bytes: u64,
    /// Largest table, elements (8 bytes each): `table.grow` past it returns -1 in the guest,
    /// a larger initial size is a load error. Without it one `table.grow` took 400 MB.
    pub max_table_elements: u32,
    /// Largest module accepted, bytes.
    pub max_module_bytes: usize,
    /// Consecutive failed calls after which a plugin is disabled.
    pub max_consecutive_failures: u32,
    /// Payload bytes handed to plugins (`buf_size`; at most 65535 by the ABI).
    pub payload_bytes: u16,
    /// Largest result blob accepted from a plugin.
    pub max_result_bytes: u32,
    /// Log lines per plugin per second (its own output and the host's lines about it, such
    /// as failures); more are dropped and counted (`log_dropped`).
    pub max_log_lines_per_sec: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            instructions_per_call: 20_000_000,
            instructions_at_start: 200_000_000,
            max_call_time: Duration::from_millis(100),
            max_start_time: Duration::from_secs(1),
            max_memory_bytes: 128 << 20,
            max_table_elements: 1 << 17,
            max_module_bytes: 32 << 20,
            max_consecutive_failures: 16,
            payload_bytes: u16::MAX,
            max_result_bytes: 64 * 1024,
            max_log_lines_per_sec: 50,
        }
    }
}

/// Tables a module may define (the toolchains we know emit one; each is capped at
/// `max_table_elements`).
pub const MAX_TABLES: usize = 8;

/// Base tunables with every memory's and table's maximum lowered to the caps.
struct CappedTunables {
    base: BaseTunables,
    max_pages: Pages,
    max_elements: u32,
}

impl CappedTunables {
    fn adjust(&self, ty: &MemoryType) -> MemoryType {
        let mut t = *ty;
        t.maximum = Some(t.maximum.map_or(self.max_pages, |m| m.min(self.max_pages)));
        t
    }

    fn adjust_table(&self, ty: &TableType) -> Result<TableType, String> {
        if ty.minimum > self.max_elements {
            return Err(format!(
                "the module needs a table of {} elements at start; the cap is {}",
                ty.minimum, self.max_elements
            ));
        }
        let mut t = *ty;
        t.maximum = Some(
            t.maximum
                .map_or(self.max_elements, |m| m.min(self.max_elements)),
        );
        Ok(t)
    }

    fn check(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.max_pages {
            return Err(MemoryError::Generic(format!(
                "the module needs {} pages of memory at start; the cap is {} pages",
                ty.minimum.0, self.max_pages.0
            )));
        }
        Ok(())
    }
}

impl Tunables for CappedTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(&self.adjust(memory))
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        self.base.create_host_memory(&self.adjust(ty), style)
    }

    #[allow(unsafe_code)]
    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        // SAFETY: the caller's guarantee on `vm_definition_location` is passed on unchanged;
        // only the memory's maximum is lowered.
        unsafe {
            self.base
                .create_vm_memory(&self.adjust(ty), style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(&self.adjust_table(ty)?, style)
    }

    #[allow(unsafe_code)]
    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let ty = self.adjust_table(ty)?;
        // SAFETY: the caller's guarantee on `vm_definition_location` is passed on unchanged;
        // only the table's maximum is lowered.
        unsafe {
            self.base
                .create_vm_table(&ty, style, vm_definition_location)
        }
    }
}

/// One engine per plugin: Cranelift with the metering middleware (a metered engine compiles
/// one module only) and the memory cap.
pub fn engine(limits: &PluginLimits) -> Engine {
    let mut compiler = Cranelift::default();
    // Every operator costs one point: a budget is an instruction count.
    compiler.push_middleware(Arc::new(Metering::new(limits.instructions_per_call, |_| 1)));
    let mut engine = EngineBuilder::new(compiler).engine();
    let max_pages = Pages((limits.max_memory_bytes / 65536).min(65536) as u32);
    engine.set_tunables(CappedTunables {
        base: BaseTunables::new(),
        max_pages,
        max_elements: limits.max_table_elements,
    });
    engine.into()
}
