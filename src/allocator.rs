//! Allocator settings shared by the binary and the benchmarks, which register
//! mimalloc as their global allocator.
//!
//! Every batch allocates and frees tens of megabytes of Arrow buffers, and the
//! state's maps grow and rehash. By default mimalloc hands memory back to the
//! OS about a second after it is freed, so later batches fault the same memory
//! in again and the kernel zeroes it (transparent huge pages: 2 MiB at a time).
//! Keeping freed memory for reuse cut a scan's page faults from about 15,000
//! to 2,600; memory stays bounded by the peak working set.
//!
//! Those 2,600 were transparent huge pages: each fault zeroes 2 MiB, and the
//! kernel kept splitting and faulting them in again (about 5 GB zeroed in a
//! scan whose peak RSS is 650 MiB: 0.3 to 1.1 s of system time). With THP off
//! for the process, every 4 KiB page is faulted in once (about 130,000
//! faults, 0.3 s), the peak RSS is 90 MiB lower and `run` 8 % faster.

/// `mi_option_purge_decommits` and `mi_option_purge_delay` in mimalloc's
/// `mi_option_e` (mimalloc.h); the `libmimalloc-sys` crate does not name them.
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_allow_thp` (mimalloc v3).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Tells mimalloc to keep freed memory for reuse instead of returning it to
/// the OS, and to reset rather than decommit what it does purge (the memory
/// stays mapped, so reusing it does not fault fresh zeroed pages in: 5 % more
/// scan throughput and 7 % more `run` throughput measured, see
/// docs/benchmarks.md), and turns transparent huge pages off for the process.
/// Call once, first thing in `main`. `MIMALLOC_PURGE_DELAY`,
/// `MIMALLOC_PURGE_DECOMMITS` and `MIMALLOC_ALLOW_THP` in the environment
/// still override them.
pub fn configure() {
    let options = [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", -1),
        (MI_OPTION_PURGE_DECOMMITS, "MIMALLOC_PURGE_DECOMMITS", 0),
        (MI_OPTION_ALLOW_THP, "MIMALLOC_ALLOW_THP", 0),
    ];
    for (option, env, value) in options {
        if std::env::var_os(env).is_none() {
            // SAFETY: sets a process-wide integer option; mimalloc allows this at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, value) }
        }
    }
    // mimalloc reads `allow_thp` when it starts, before `main`: its first
    // arena is already advised for huge pages. The process-wide switch
    // overrides that advice, as `MIMALLOC_ALLOW_THP=0` would have.
    #[cfg(target_os = "linux")]
    // SAFETY: `mi_option_get` reads an integer option.
    if unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) } == 0 {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
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
        // THP is allowed by default (1) on Linux.
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) }, 1);
        }
    }
}
