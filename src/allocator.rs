//! Allocator settings shared by the binary and the benchmarks, which register
//! mimalloc as their global allocator.
//!
//! Every batch allocates and frees tens of megabytes of Arrow buffers, and the
//! state's maps grow and rehash. By default mimalloc hands memory back to the
//! OS about a second after it is freed, so later batches fault the same memory
//! in again and the kernel zeroes it (transparent huge pages: 2 MiB at a time).
//! Keeping freed memory for reuse cut a scan's page faults from about 15,000
//! to 2,600; memory stays bounded by the peak working set.

/// `mi_option_purge_decommits` and `mi_option_purge_delay` in mimalloc's
/// `mi_option_e` (mimalloc.h); the `libmimalloc-sys` crate does not name them.
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep freed memory for reuse instead of returning it to
/// the OS, and to reset rather than decommit what it does purge (the memory
/// stays mapped, so reusing it does not fault fresh zeroed pages in: 5 % more
/// scan throughput and 7 % more `run` throughput measured, see
/// docs/benchmarks.md). Call once, first thing in `main`. `MIMALLOC_PURGE_DELAY`
/// and `MIMALLOC_PURGE_DECOMMITS` in the environment still override them.
pub fn keep_freed_memory() {
    for (option, env, value) in [(MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", -1), (MI_OPTION_PURGE_DECOMMITS, "MIMALLOC_PURGE_DECOMMITS", 0)] {
        if std::env::var_os(env).is_none() {
            // SAFETY: sets a process-wide integer option; mimalloc allows this at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, value) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_the_purge_delay() {
        // The purge delay of the mimalloc built here defaults to 1000 ms (src/options.c);
        // a wrong index would read another option's default.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
        }
        // Decommitting on a purge is on by default (1); a wrong index would read another option.
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DECOMMITS) }, 1);
        }
    }
}
