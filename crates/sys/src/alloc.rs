//! The C allocator's settings for a long-running process (glibc's malloc; elsewhere, e.g. in
//! the static musl module binaries, these do nothing).

/// Settings for a daemon that is mostly idle between bursts of work on short-lived threads:
/// at most `arenas` malloc arenas (glibc makes one per thread that allocates, up to 8 per
/// core, and keeps each arena's freed memory), and blocks of 128 KiB and more mapped on their
/// own and returned at once when freed (no dynamic threshold that moves them into an arena).
/// Call before the process starts threads.
pub fn tune_for_daemon(arenas: u32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = arenas.clamp(1, i32::MAX as u32) as libc::c_int;
        // SAFETY: mallopt only changes the allocator's parameters; an unknown parameter or a
        // refused value leaves them as they were (it returns 0 then, which changes nothing).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Gives the free memory of every malloc arena back to the system (its pages, not only the
/// top of each heap): after a burst of work, so that an idle process holds what it uses.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' locks itself and only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
