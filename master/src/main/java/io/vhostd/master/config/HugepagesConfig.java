package io.vhostd.master.config;

/**
 * {@code hugepages:} — the master's shared-memory arena for VirtNvme queue pairs.
 *
 * @param enabled back the arena with 2 MiB huge pages ({@code memfd_create(MFD_HUGETLB)}), falling back to a plain
 *     memfd when none are free; key {@code enabled}, default true
 * @param arenaSizeBytes arena size in bytes, a positive multiple of 2 MiB; key {@code arena_size_bytes}, default
 *     {@value #DEFAULT_ARENA_SIZE_BYTES}
 */
public record HugepagesConfig(boolean enabled, long arenaSizeBytes) {
    /** 64 MiB. */
    public static final long DEFAULT_ARENA_SIZE_BYTES = 64L << 20;

    /** The huge page size the arena is a multiple of. */
    public static final long HUGEPAGE_SIZE_BYTES = 2L << 20;

    /** {@code enabled: true, arena_size_bytes: 67108864}. */
    public static HugepagesConfig defaults() {
        return new HugepagesConfig(true, DEFAULT_ARENA_SIZE_BYTES);
    }
}
