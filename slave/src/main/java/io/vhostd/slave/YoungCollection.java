package io.vhostd.slave;

import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.util.List;

/**
 * Runs a young collection at a moment of the slave's choosing (issue #4): a collection stops every thread of the JVM,
 * the data path's too, and one that falls inside a handover's pause adds 5 - 9 ms to it (G1 young pauses seen in the
 * bench with {@code -Xlog:gc}). So the slave empties its young generation just before it may be handed a session:
 * once its warm-up is done, and in a rolling upgrade's prepare phase, while the old slave still serves. There is no
 * API for a young collection ({@code System.gc()} is a full one, and it shrank the heap and made the next handovers
 * slower: docs/benchmarks.md, session 6), so this allocates short-lived garbage until the young collector's count
 * moves.
 */
final class YoungCollection {
    /** Garbage allocated per step: well below a humongous object for G1's smallest regions (1 MiB, half of it). */
    static final int CHUNK_BYTES = 64 * 1024;

    /** Keeps the JIT from removing the allocations. */
    private static volatile Object sink;

    private YoungCollection() {}

    /**
     * Allocates garbage until a young collection ran or {@code maxBytes} were allocated.
     *
     * @param collections the collections so far of the collector that empties the young generation (e.g. G1 Young
     *     Generation); -1 when unknown
     * @return whether it ran
     */
    static boolean run(java.util.function.LongSupplier collections, long maxBytes) {
        long before = collections.getAsLong();
        if (before < 0) {
            return false;
        }
        for (long allocated = 0; allocated < maxBytes; allocated += CHUNK_BYTES) {
            sink = new byte[CHUNK_BYTES];
            if (collections.getAsLong() != before) {
                sink = null;
                return true;
            }
        }
        sink = null;
        return false;
    }

    /**
     * {@link #run(java.util.function.LongSupplier, long)} with this JVM's young collector (the first collector that
     * manages the eden pool: "G1 Young Generation", "Copy", "PS Scavenge"), at most 1 GiB.
     */
    static boolean now() {
        GarbageCollectorMXBean young = youngCollector(ManagementFactory.getGarbageCollectorMXBeans());
        return young != null && run(young::getCollectionCount, 1L << 30);
    }

    /** The collector among {@code collectors} that empties the eden, or null (ZGC, Shenandoah: no young pause). */
    static GarbageCollectorMXBean youngCollector(List<GarbageCollectorMXBean> collectors) {
        for (GarbageCollectorMXBean c : collectors) {
            if (c.isValid()
                    && List.of(c.getMemoryPoolNames()).stream().anyMatch(p -> p.contains("Eden"))
                    && !c.getName().contains("Old")
                    && !c.getName().contains("MarkSweep")
                    && !c.getName().contains("Concurrent")) {
                return c;
            }
        }
        return null;
    }
}
