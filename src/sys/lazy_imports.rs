//! The trampolines through which std calls libc (written by build.rs, see its
//! `STD_IMPORTS`): each jumps through our PLT, so the dynamic linker looks the function up
//! at its first call, not at every process start.

std::arch::global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/lazy_imports.s")),
    options(att_syntax)
);
