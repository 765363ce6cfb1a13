package io.vhostd.master.config;

/**
 * {@code hugepages:} — the master's shared-memory arena for VirtNvme queue pairs, and the 2 MiB huge pages it may
 * reserve for it.
 *
 * @param enabled back the arena with 2 MiB huge pages ({@code memfd_create(MFD_HUGETLB)}), falling back to a plain
 *     memfd when none are free; key {@code enabled}, default true
 * @param arenaSizeBytes arena size in bytes, a positive multiple of 2 MiB; key {@code arena_size_bytes}, default
 *     {@value #DEFAULT_ARENA_SIZE_BYTES}, or {@code reserve} huge pages when {@code reserve} is given and this key is
 *     not
 * @param reserve huge pages the master makes sure are free at start-up, raising {@code vm.nr_hugepages} (or the
 *     node's pool) by what is missing, and gives back at shutdown; key {@code reserve}, 0..{@value #MAX_RESERVE},
 *     default 0 (reserve nothing: use what the host has set up). Needs {@code enabled: true}.
 * @param node the NUMA node whose pool to raise ({@code /sys/devices/system/node/node<N>/hugepages/...}); key {@code
 *     node}, default {@value #ANY_NODE} (the global pool, {@code /proc/sys/vm/nr_hugepages})
 */
public record HugepagesConfig(boolean enabled, long arenaSizeBytes, int reserve, int node) {
    /** 64 MiB. */
    public static final long DEFAULT_ARENA_SIZE_BYTES = 64L << 20;

    /** The huge page size the arena is a multiple of. */
    public static final long HUGEPAGE_SIZE_BYTES = 2L << 20;

    /** Most huge pages {@code reserve} may ask for (1 TiB of 2 MiB pages). */
    public static final int MAX_RESERVE = 1 << 19;

    /** {@link #node}: no node given, the global pool. */
    public static final int ANY_NODE = -1;

    /** No reservation, the global pool. */
    public HugepagesConfig(boolean enabled, long arenaSizeBytes) {
        this(enabled, arenaSizeBytes, 0, ANY_NODE);
    }

    /** {@code enabled: true, arena_size_bytes: 67108864}, no reservation. */
    public static HugepagesConfig defaults() {
        return new HugepagesConfig(true, DEFAULT_ARENA_SIZE_BYTES);
    }
}
