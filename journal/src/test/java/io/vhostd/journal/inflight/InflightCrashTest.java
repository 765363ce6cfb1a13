package io.vhostd.journal.inflight;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.vhostd.journal.CrashAfter;
import io.vhostd.journal.SimulatedCrash;
import io.vhostd.journal.StoreObserver;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * "Crash at every step" for the vhost-user inflight region (spec §9.4): a scripted workload of fetches and
 * out-of-order completion batches, killed after each store in turn; recovery (and a second crash during recovery's
 * repair) must give the state before or after the operation in progress, as the spec's tables say, and the workload
 * continued on the recovered region must end where the crash-free run ends.
 */
@Timeout(60)
class InflightCrashTest {
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void closeArena() {
        arena.close();
    }

    private MemorySegment copyOf(MemorySegment s) {
        MemorySegment c = arena.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // split

    private static final int SPLIT_QS = 8;

    /** Split: the heads in flight in fetch order and the used index. */
    record SplitModel(List<Integer> inflight, int used) {
        SplitModel fetch(int head) {
            List<Integer> l = new ArrayList<>(inflight);
            l.add(head);
            return new SplitModel(l, used);
        }

        SplitModel complete(int... heads) {
            List<Integer> l = new ArrayList<>(inflight);
            for (int h : heads) {
                l.remove(Integer.valueOf(h));
            }
            return new SplitModel(l, (used + heads.length) & 0xFFFF);
        }
    }

    /** A split op: positive = fetch that head; an array = a completion batch. */
    record SplitOp(int fetchHead, int[] batch) {
        static SplitOp fetch(int head) {
            return new SplitOp(head, null);
        }

        static SplitOp complete(int... heads) {
            return new SplitOp(-1, heads);
        }

        SplitModel apply(SplitModel m) {
            return batch == null ? m.fetch(fetchHead) : m.complete(batch);
        }

        String commitField() {
            return batch == null ? "split.inflight" : "guest.publish";
        }

        @Override
        public String toString() {
            return batch == null ? "fetch " + fetchHead : "complete " + java.util.Arrays.toString(batch);
        }
    }

    static final class SplitGuest {
        int usedIdx;
        StoreObserver observer = StoreObserver.NONE;
    }

    private static List<SplitOp> splitWorkload() {
        return List.of(
                SplitOp.fetch(3),
                SplitOp.fetch(0),
                SplitOp.fetch(5),
                SplitOp.fetch(1),
                SplitOp.complete(5, 3),
                SplitOp.fetch(3),
                SplitOp.fetch(7),
                SplitOp.complete(0),
                SplitOp.complete(7, 1, 3),
                SplitOp.fetch(2),
                SplitOp.fetch(6),
                SplitOp.fetch(4),
                SplitOp.fetch(0),
                SplitOp.complete(6),
                SplitOp.complete(0, 4),
                SplitOp.fetch(1));
    }

    private static void runSplit(InflightRegionSplit w, SplitGuest g, SplitOp op) {
        if (op.batch() == null) {
            w.fetched(op.fetchHead());
        } else {
            int n = op.batch().length;
            w.completed(op.batch(), n, q -> {
                g.usedIdx = (g.usedIdx + n) & 0xFFFF;
                g.observer.afterStore("guest.publish");
            });
        }
    }

    private static void assertSplit(SplitModel m, InflightSplitRecovery r, String context) {
        assertEquals(m.inflight(), r.resubmit().stream().map(InflightHead::head).toList(), context + ": in flight");
        assertEquals(m.used(), r.usedIdx(), context + ": used_idx");
        assertEquals((m.used() + m.inflight().size()) & 0xFFFF, r.lastAvailIdx(), context + ": last avail");
    }

    private MemorySegment splitRegion() {
        MemorySegment b = arena.allocate(InflightRegionDescriptor.mmapSizeBytes(1, SPLIT_QS, false), 64);
        return InflightRegionDescriptor.queueRegion(b, 0, SPLIT_QS, false);
    }

    @Test
    void shouldRecoverPreOrPostStateWhenSplitWriterDiesAfterEveryStore() {
        List<SplitOp> ops = splitWorkload();
        int startUsed = 65534; // the used index wraps during the workload
        // the crash-free run
        MemorySegment clean = splitRegion();
        SplitGuest cg = new SplitGuest();
        cg.usedIdx = startUsed;
        CrashAfter counter = CrashAfter.never();
        cg.observer = counter;
        InflightRegionSplit cw = new InflightRegionSplit(clean, 0, SPLIT_QS, counter);
        cw.start(cg.usedIdx);
        SplitModel cm = new SplitModel(List.of(), startUsed);
        for (SplitOp op : ops) {
            runSplit(cw, cg, op);
            cm = op.apply(cm);
            assertSplit(
                    cm,
                    new InflightRegionSplit(copyOf(clean), 0, SPLIT_QS, StoreObserver.NONE).start(cg.usedIdx),
                    "clean run after " + op);
        }
        long total = counter.stores();
        int torn = 0;
        for (long n = 1; n <= total; n++) {
            MemorySegment r = splitRegion();
            SplitGuest g = new SplitGuest();
            g.usedIdx = startUsed;
            CrashAfter crash = new CrashAfter(n);
            g.observer = crash;
            SplitModel before = new SplitModel(List.of(), startUsed);
            int opIndex = -1;
            boolean post;
            try {
                InflightRegionSplit w = new InflightRegionSplit(r, 0, SPLIT_QS, crash);
                crash.mark();
                w.start(g.usedIdx);
                for (int i = 0; i < ops.size(); i++) {
                    opIndex = i;
                    crash.mark();
                    runSplit(w, g, ops.get(i));
                    before = ops.get(i).apply(before);
                }
                fail("no crash at store " + n);
                return;
            } catch (SimulatedCrash e) {
                post = opIndex >= 0 && crash.storedSinceMark(ops.get(opIndex).commitField());
            }
            SplitModel expected = post ? ops.get(opIndex).apply(before) : before;
            String context = "crash after store " + n + " in '" + (opIndex < 0 ? "start" : ops.get(opIndex)) + "' ("
                    + (post ? "post" : "pre") + ")";
            for (long m = 1; ; m++) {
                MemorySegment again = copyOf(r);
                try {
                    new InflightRegionSplit(again, 0, SPLIT_QS, new CrashAfter(m)).start(g.usedIdx);
                    break;
                } catch (SimulatedCrash e) {
                    assertSplit(
                            expected,
                            new InflightRegionSplit(again, 0, SPLIT_QS, StoreObserver.NONE).start(g.usedIdx),
                            context + ", repair crash " + m);
                }
            }
            g.observer = StoreObserver.NONE;
            InflightRegionSplit resumed = new InflightRegionSplit(r, 0, SPLIT_QS, StoreObserver.NONE);
            InflightSplitRecovery rec = resumed.start(g.usedIdx);
            assertSplit(expected, rec, context);
            torn += rec.clearedBatchSize() > 0 ? 1 : 0;
            for (int i = opIndex < 0 ? 0 : post ? opIndex + 1 : opIndex; i < ops.size(); i++) {
                runSplit(resumed, g, ops.get(i));
            }
            assertSplit(
                    cm,
                    new InflightRegionSplit(r, 0, SPLIT_QS, StoreObserver.NONE).start(g.usedIdx),
                    context + ", continued to the end");
        }
        assertTrue(total > 50 && torn > 0, total + " stores, " + torn + " torn batches");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // packed

    private static final int PACKED_QS = 6;

    /** A packed op: fetch a chain (id, num descriptors) or complete chains by id. */
    record PackedOp(int id, int num, int[] batch) {
        static PackedOp fetch(int id, int num) {
            return new PackedOp(id, num, null);
        }

        static PackedOp complete(int... ids) {
            return new PackedOp(-1, 0, ids);
        }

        String commitField() {
            return batch == null ? "packed.oldFreeHead" : "guest.publish";
        }

        @Override
        public String toString() {
            return batch == null ? "fetch chain " + id + " of " + num : "complete " + java.util.Arrays.toString(batch);
        }
    }

    /** Packed: chains in flight (id to length, fetch order), used and avail positions with wrap counters. */
    record PackedModel(
            List<Integer> inflight,
            Map<Integer, Integer> nums,
            int used,
            boolean usedWrap,
            int avail,
            boolean availWrap) {
        PackedModel apply(PackedOp op) {
            List<Integer> l = new ArrayList<>(inflight);
            Map<Integer, Integer> n = new HashMap<>(nums);
            if (op.batch() == null) {
                l.add(op.id());
                n.put(op.id(), op.num());
                int a = avail + op.num();
                return a >= PACKED_QS
                        ? new PackedModel(l, n, used, usedWrap, a - PACKED_QS, !availWrap)
                        : new PackedModel(l, n, used, usedWrap, a, availWrap);
            }
            int u = used;
            for (int id : op.batch()) {
                l.remove(Integer.valueOf(id));
                u += n.get(id);
            }
            return u >= PACKED_QS
                    ? new PackedModel(l, n, u - PACKED_QS, !usedWrap, avail, availWrap)
                    : new PackedModel(l, n, u, usedWrap, avail, availWrap);
        }
    }

    private static List<PackedOp> packedWorkload() {
        return List.of(
                PackedOp.fetch(1, 2),
                PackedOp.fetch(2, 1),
                PackedOp.fetch(3, 3), // the ring is full
                PackedOp.complete(2),
                PackedOp.fetch(4, 1), // the driver wrapped
                PackedOp.complete(3, 1), // out of order, and the used index crosses the end of the ring
                PackedOp.fetch(5, 2),
                PackedOp.complete(4),
                PackedOp.fetch(6, 3),
                PackedOp.complete(6, 5), // the used index crosses the end again: wrap counter back to 1
                PackedOp.fetch(7, 1));
    }

    /** The fake guest ring, plus the harness's map from chain id to the head entry the writer returned. */
    static final class PackedGuest {
        final InflightRegionPackedTest.PackedRing ring = new InflightRegionPackedTest.PackedRing(PACKED_QS);
        long madeAvailable;
        final Map<Integer, Integer> headEntry = new HashMap<>();
        StoreObserver observer = StoreObserver.NONE;
    }

    private static void runPacked(InflightRegionPacked w, PackedGuest g, PackedOp op, long availableAfter) {
        if (op.batch() == null) {
            // the driver made the chain available once; a fetch done again after a crash reads the same descriptors
            while (g.madeAvailable < availableAfter) {
                g.ring.makeAvailable(1);
                g.madeAvailable++;
            }
            int head = -1;
            for (int k = 0; k < op.num(); k++) {
                head = w.descriptorFetched(
                        0x10000L * op.id() + k,
                        512 * (k + 1),
                        op.id(),
                        k < op.num() - 1 ? 1 : 0,
                        k == 0,
                        k == op.num() - 1);
            }
            g.headEntry.put(op.id(), head);
        } else {
            int[] entries = new int[op.batch().length];
            int[] nums = new int[op.batch().length];
            for (int i = 0; i < entries.length; i++) {
                entries[i] = g.headEntry.get(op.batch()[i]);
            }
            w.completed(entries, entries.length, q -> {
                for (int i = 0; i < entries.length; i++) {
                    nums[i] = numOf(op.batch()[i]);
                }
                g.ring.publishUsed(nums);
                g.observer.afterStore("guest.publish");
            });
        }
    }

    private static int numOf(int id) {
        for (PackedOp op : packedWorkload()) {
            if (op.batch() == null && op.id() == id) {
                return op.num();
            }
        }
        throw new IllegalArgumentException("no chain " + id);
    }

    private static long[] availableAfter(List<PackedOp> ops) {
        long[] after = new long[ops.size()];
        long total = 0;
        for (int i = 0; i < ops.size(); i++) {
            total += ops.get(i).batch() == null ? ops.get(i).num() : 0;
            after[i] = total;
        }
        return after;
    }

    private static void assertPacked(PackedModel m, InflightPackedRecovery r, String context) {
        assertEquals(
                m.inflight(),
                r.resubmit().stream().map(c -> c.descriptors().getFirst().id()).toList(),
                context + ": in flight");
        for (InflightChain c : r.resubmit()) {
            int id = c.descriptors().getFirst().id();
            assertEquals(numOf(id), c.descriptors().size(), context + ": chain " + id + " length");
            for (int k = 0; k < c.descriptors().size(); k++) {
                assertEquals(0x10000L * id + k, c.descriptors().get(k).addr(), context + ": chain " + id + " copy");
            }
        }
        assertEquals(m.used(), r.usedIdx(), context + ": used_idx");
        assertEquals(m.usedWrap(), r.usedWrapCounter(), context + ": used_wrap_counter");
        assertEquals(m.avail(), r.lastAvailIdx(), context + ": last avail");
        assertEquals(m.availWrap(), r.lastAvailWrapCounter(), context + ": avail wrap counter");
    }

    private MemorySegment packedRegion() {
        MemorySegment b = arena.allocate(InflightRegionDescriptor.mmapSizeBytes(1, PACKED_QS, true), 64);
        return InflightRegionDescriptor.queueRegion(b, 0, PACKED_QS, true);
    }

    private static InflightPackedRecovery startPacked(MemorySegment r, PackedGuest g) {
        return new InflightRegionPacked(r, 0, PACKED_QS, StoreObserver.NONE).start(0, true, g.ring::flagsAt);
    }

    @Test
    void shouldRecoverPreOrPostStateWhenPackedWriterDiesAfterEveryStore() {
        List<PackedOp> ops = packedWorkload();
        long[] availableAfter = availableAfter(ops);
        PackedModel empty = new PackedModel(List.of(), Map.of(), 0, true, 0, true);
        MemorySegment clean = packedRegion();
        PackedGuest cg = new PackedGuest();
        CrashAfter counter = CrashAfter.never();
        cg.observer = counter;
        InflightRegionPacked cw = new InflightRegionPacked(clean, 0, PACKED_QS, counter);
        cw.start(0, true, cg.ring::flagsAt);
        PackedModel cm = empty;
        for (int i = 0; i < ops.size(); i++) {
            runPacked(cw, cg, ops.get(i), availableAfter[i]);
            cm = cm.apply(ops.get(i));
            assertPacked(cm, startPacked(copyOf(clean), cg), "clean after " + ops.get(i));
        }
        long total = counter.stores();
        Map<InflightPackedRecovery.Outcome, Integer> outcomes = new HashMap<>();
        for (long n = 1; n <= total; n++) {
            MemorySegment r = packedRegion();
            PackedGuest g = new PackedGuest();
            CrashAfter crash = new CrashAfter(n);
            g.observer = crash;
            PackedModel before = empty;
            int opIndex = -1;
            boolean post;
            try {
                InflightRegionPacked w = new InflightRegionPacked(r, 0, PACKED_QS, crash);
                crash.mark();
                w.start(0, true, g.ring::flagsAt);
                for (int i = 0; i < ops.size(); i++) {
                    opIndex = i;
                    crash.mark();
                    runPacked(w, g, ops.get(i), availableAfter[i]);
                    before = before.apply(ops.get(i));
                }
                fail("no crash at store " + n);
                return;
            } catch (SimulatedCrash e) {
                post = opIndex >= 0 && crash.storedSinceMark(ops.get(opIndex).commitField());
            }
            PackedModel expected = post ? before.apply(ops.get(opIndex)) : before;
            String context = "crash after store " + n + " in '" + (opIndex < 0 ? "start" : ops.get(opIndex)) + "' ("
                    + (post ? "post" : "pre") + ")";
            for (long m = 1; ; m++) {
                MemorySegment again = copyOf(r);
                try {
                    new InflightRegionPacked(again, 0, PACKED_QS, new CrashAfter(m)).start(0, true, g.ring::flagsAt);
                    break;
                } catch (SimulatedCrash e) {
                    assertPacked(expected, startPacked(again, g), context + ", repair crash " + m);
                }
            }
            g.observer = StoreObserver.NONE;
            InflightRegionPacked resumed = new InflightRegionPacked(r, 0, PACKED_QS, StoreObserver.NONE);
            InflightPackedRecovery rec = resumed.start(0, true, g.ring::flagsAt);
            assertPacked(expected, rec, context);
            outcomes.merge(rec.outcome(), 1, Integer::sum);
            g.headEntry.clear();
            for (InflightChain c : rec.resubmit()) {
                g.headEntry.put(c.descriptors().getFirst().id(), c.headEntry());
            }
            for (int i = opIndex < 0 ? 0 : post ? opIndex + 1 : opIndex; i < ops.size(); i++) {
                runPacked(resumed, g, ops.get(i), availableAfter[i]);
            }
            assertPacked(cm, startPacked(r, g), context + ", continued to the end");
        }
        assertTrue(
                outcomes.getOrDefault(InflightPackedRecovery.Outcome.COMMITTED, 0) > 0
                        && outcomes.getOrDefault(InflightPackedRecovery.Outcome.ROLLED_BACK, 0) > 0,
                total + " stores, outcomes " + outcomes);
    }
}
