package io.vhostd.journal.inflight;

import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_INFLIGHT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_LAST_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_NEXT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_FREE_HEAD_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_VERSION_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.VIRTQ_DESC_F_AVAIL_MASK;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.VIRTQ_DESC_F_USED_MASK;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.journal.JournalException;
import io.vhostd.journal.SimulatedCrashAtField;
import io.vhostd.journal.StoreObserver;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class InflightRegionPackedTest {
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void closeArena() {
        arena.close();
    }

    /** The guest's packed descriptor ring: flags per position, driver and device positions with wrap counters. */
    static final class PackedRing {
        final int size;
        final int[] flags;
        int availIdx;
        boolean availWrap = true;
        int usedIdx;
        boolean usedWrap = true;

        PackedRing(int size) {
            this.size = size;
            this.flags = new int[size];
        }

        /** The driver makes a buffer of {@code num} descriptors available; returns its first position. */
        int makeAvailable(int num) {
            int first = availIdx;
            for (int k = 0; k < num; k++) {
                // virtio 1.2 §2.8.1: AVAIL = the driver's wrap counter, USED = its inverse
                flags[availIdx] = availWrap ? VIRTQ_DESC_F_AVAIL_MASK : VIRTQ_DESC_F_USED_MASK;
                if (++availIdx == size) {
                    availIdx = 0;
                    availWrap = !availWrap;
                }
            }
            return first;
        }

        /** The device writes one used descriptor per buffer (AVAIL = USED = its wrap counter). */
        void publishUsed(int... nums) {
            for (int num : nums) {
                flags[usedIdx] = usedWrap ? VIRTQ_DESC_F_AVAIL_MASK | VIRTQ_DESC_F_USED_MASK : 0;
                usedIdx += num;
                if (usedIdx >= size) {
                    usedIdx -= size;
                    usedWrap = !usedWrap;
                }
            }
        }

        int flagsAt(int position) {
            return flags[position];
        }
    }

    private MemorySegment region(int qs) {
        MemorySegment buffer = arena.allocate(InflightRegionDescriptor.mmapSizeBytes(1, qs, true), 64);
        return InflightRegionDescriptor.queueRegion(buffer, 0, qs, true);
    }

    private static InflightRegionPacked writer(MemorySegment r, int qs, StoreObserver o) {
        return new InflightRegionPacked(r, 0, qs, o);
    }

    /** Fetches a chain of {@code num} descriptors whose buffer id is {@code id}; returns its head entry. */
    private static int fetch(InflightRegionPacked w, PackedRing ring, int id, int num) {
        ring.makeAvailable(num);
        int head = -1;
        for (int k = 0; k < num; k++) {
            head = w.descriptorFetched(
                    0x10000L * id + 0x100L * k, 512 + k, id, k < num - 1 ? 1 : 0, k == 0, k == num - 1);
        }
        return head;
    }

    private static List<Integer> ids(InflightPackedRecovery r) {
        return r.resubmit().stream().map(c -> c.descriptors().getFirst().id()).toList();
    }

    private static long desc(int i) {
        return QUEUE_REGION_PACKED_DESC_OFFSET + 32L * i;
    }

    @Test
    void shouldFormatFreeListAndWrapCountersWhenRegionIsNew() {
        MemorySegment r = region(4);
        InflightPackedRecovery rec = writer(r, 4, StoreObserver.NONE).start(0, true, p -> 0);
        assertTrue(rec.fresh());
        assertTrue(rec.usedWrapCounter());
        assertEquals(1, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_VERSION_OFFSET));
        assertEquals(4, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_DESC_NUM_OFFSET));
        for (int j = 0; j < 4; j++) {
            assertEquals(j + 1, r.get(ValueLayout.JAVA_SHORT, desc(j) + DESC_STATE_PACKED_NEXT_OFFSET));
        }
        assertEquals(1, r.get(ValueLayout.JAVA_BYTE, QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET));
        assertEquals(1, r.get(ValueLayout.JAVA_BYTE, QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET));
    }

    @Test
    void shouldResubmitChainsWithTheirDescriptorsWhenCompletedOutOfOrder() {
        MemorySegment r = region(8);
        PackedRing ring = new PackedRing(8);
        InflightRegionPacked w = writer(r, 8, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        fetch(w, ring, 1, 1);
        int b = fetch(w, ring, 2, 3);
        fetch(w, ring, 3, 2);
        w.completed(new int[] {b}, 1, q -> ring.publishUsed(3));
        InflightPackedRecovery rec = writer(r, 8, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertFalse(rec.fresh());
        assertEquals(InflightPackedRecovery.Outcome.CONSISTENT, rec.outcome());
        assertEquals(List.of(1, 3), ids(rec));
        assertEquals(
                List.of(new InflightDesc(0x30000, 512, 3, 1), new InflightDesc(0x30100, 513, 3, 0)),
                rec.resubmit().get(1).descriptors());
        assertEquals(3, rec.usedIdx());
        assertTrue(rec.usedWrapCounter());
        assertEquals(6, rec.lastAvailIdx(), "used_idx + the descriptors of the chains in flight");
        assertTrue(rec.lastAvailWrapCounter());
        assertEquals(ring.availIdx, rec.lastAvailIdx());
    }

    @Test
    void shouldRollBackOldFieldsWhenBatchDidNotReachTheRing() {
        MemorySegment r = region(8);
        PackedRing ring = new PackedRing(8);
        InflightRegionPacked w = writer(r, 8, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        int a = fetch(w, ring, 1, 2);
        fetch(w, ring, 2, 1);
        w.batchBegin(new int[] {a}, 1); // free_head, used_idx moved; the used descriptor was never written
        assertEquals(2, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_USED_IDX_OFFSET));
        InflightPackedRecovery rec = writer(r, 8, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertEquals(InflightPackedRecovery.Outcome.ROLLED_BACK, rec.outcome());
        assertEquals(List.of(1, 2), ids(rec));
        assertEquals(0, rec.usedIdx());
        assertEquals(0, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_USED_IDX_OFFSET));
        assertEquals(3, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_FREE_HEAD_OFFSET));
    }

    @Test
    void shouldCommitOldFieldsWhenBatchReachedTheRing() {
        MemorySegment r = region(8);
        PackedRing ring = new PackedRing(8);
        InflightRegionPacked w = writer(r, 8, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        int a = fetch(w, ring, 1, 2);
        fetch(w, ring, 2, 1);
        w.batchBegin(new int[] {a}, 1);
        ring.publishUsed(2); // published; the writer dies before batchEnd
        InflightPackedRecovery rec = writer(r, 8, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertEquals(InflightPackedRecovery.Outcome.COMMITTED, rec.outcome());
        assertEquals(List.of(2), ids(rec));
        assertEquals(2, rec.usedIdx());
        assertEquals(2, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET));
        assertEquals(0, r.get(ValueLayout.JAVA_BYTE, desc(a) + DESC_STATE_PACKED_INFLIGHT_OFFSET));
    }

    @Test
    void shouldKeepTheNewWrapCounterWhenCrashBetweenOldWrapAndOldIdx() {
        // a batch that crosses the end of the ring, and the writer dies after old_used_wrap_counter, before
        // old_used_idx: with vhost-user.rst's order (old_used_idx first) this would roll back to a stale wrap counter
        for (String field : List.of("packed.clear", "packed.oldFreeHead", "packed.oldUsedWrap", "packed.oldUsedIdx")) {
            MemorySegment r = region(4);
            PackedRing ring = new PackedRing(4);
            InflightRegionPacked w = writer(r, 4, StoreObserver.NONE);
            w.start(0, true, ring::flagsAt);
            int a = fetch(w, ring, 1, 3);
            w.completed(new int[] {a}, 1, q -> ring.publishUsed(3)); // used at 3, wrap 1
            int b = fetch(w, ring, 2, 2); // positions 3, 0: the driver wrapped
            InflightRegionPacked dying = writer(r, 4, new SimulatedCrashAtField(field, 1));
            dying.start(0, true, ring::flagsAt);
            assertThrows(RuntimeException.class, () -> dying.completed(new int[] {b}, 1, q -> ring.publishUsed(2)));
            InflightPackedRecovery rec = writer(r, 4, StoreObserver.NONE).start(0, true, ring::flagsAt);
            assertEquals(1, rec.usedIdx(), field);
            assertFalse(rec.usedWrapCounter(), field + ": the used wrap counter flipped with the batch");
            assertEquals(List.of(), rec.resubmit(), field);
            assertEquals(ring.usedIdx, rec.usedIdx());
        }
    }

    @Test
    void shouldNotMistakeAFullLapBatchForNoBatch() {
        // a batch of exactly desc_num descriptors leaves used_idx where it was and flips only the wrap counter
        MemorySegment r = region(4);
        PackedRing ring = new PackedRing(4);
        InflightRegionPacked w = writer(r, 4, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        int a = fetch(w, ring, 1, 2);
        int b = fetch(w, ring, 2, 2);
        w.batchBegin(new int[] {a, b}, 2);
        assertEquals(0, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_USED_IDX_OFFSET));
        InflightPackedRecovery back = writer(copy(r), 4, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertEquals(InflightPackedRecovery.Outcome.ROLLED_BACK, back.outcome());
        assertEquals(List.of(1, 2), ids(back));
        assertTrue(back.usedWrapCounter());
        ring.publishUsed(2, 2);
        InflightPackedRecovery forward = writer(r, 4, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertEquals(InflightPackedRecovery.Outcome.COMMITTED, forward.outcome());
        assertEquals(List.of(), forward.resubmit());
        assertFalse(forward.usedWrapCounter());
    }

    @Test
    void shouldDropATornFetchWhenChainWasNotComplete() {
        MemorySegment r = region(8);
        PackedRing ring = new PackedRing(8);
        InflightRegionPacked w = writer(r, 8, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        fetch(w, ring, 1, 1);
        InflightRegionPacked dying = writer(r, 8, new SimulatedCrashAtField("packed.copy", 2));
        dying.start(0, true, ring::flagsAt);
        ring.makeAvailable(3);
        assertThrows(RuntimeException.class, () -> {
            for (int k = 0; k < 3; k++) {
                dying.descriptorFetched(0x20000L + k, 4096, 2, k < 2 ? 1 : 0, k == 0, k == 2);
            }
        });
        InflightPackedRecovery rec = writer(r, 8, StoreObserver.NONE).start(0, true, ring::flagsAt);
        assertEquals(List.of(1), ids(rec));
        assertEquals(1, rec.lastAvailIdx(), "the torn chain is fetched again");
        assertEquals(1, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_FREE_HEAD_OFFSET));
    }

    private MemorySegment copy(MemorySegment r) {
        MemorySegment c = arena.allocate(r.byteSize(), 64);
        c.copyFrom(r);
        return c;
    }

    private void assertRefused(Consumer<MemorySegment> corrupt, String messagePart) {
        assertRefused((r, ring) -> corrupt.accept(r), messagePart);
    }

    private void assertRefused(BiConsumer<MemorySegment, PackedRing> corrupt, String messagePart) {
        MemorySegment r = region(8);
        PackedRing ring = new PackedRing(8);
        InflightRegionPacked w = writer(r, 8, StoreObserver.NONE);
        w.start(0, true, ring::flagsAt);
        fetch(w, ring, 1, 2); // entries 0, 1
        int b = fetch(w, ring, 2, 1); // entry 2
        fetch(w, ring, 3, 2); // entries 3, 4
        w.completed(new int[] {b}, 1, q -> ring.publishUsed(1)); // free list: 2, 5, 6, 7
        corrupt.accept(r, ring);
        JournalException e = assertThrows(
                JournalException.class, () -> writer(r, 8, StoreObserver.NONE).start(0, true, ring::flagsAt));
        assertTrue(e.getMessage().contains(messagePart), "'" + e.getMessage() + "' lacks '" + messagePart + "'");
    }

    @Test
    void shouldRefuseWhenRegionIsHostile() {
        assertRefused(r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_VERSION_OFFSET, (short) 3), "version 3");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_DESC_NUM_OFFSET, (short) 4),
                "desc_num 4 differs");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_FREE_HEAD_OFFSET, (short) 9), "free_head 9");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_BYTE, QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET, (byte) 2),
                "used_wrap_counter 2");
        // the free list 2 -> 5 -> 6 -> 7 -> 8 made into a cycle 7 -> 5
        assertRefused(r -> r.set(ValueLayout.JAVA_SHORT, desc(7) + DESC_STATE_PACKED_NEXT_OFFSET, (short) 5), "loops");
        assertRefused(r -> r.set(ValueLayout.JAVA_SHORT, desc(6) + DESC_STATE_PACKED_NEXT_OFFSET, (short) 12), "12");
        // chain 3 -> 4 claims entry 0 of chain 0 -> 1
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, desc(3) + DESC_STATE_PACKED_NEXT_OFFSET, (short) 0),
                "already in a chain");
        assertRefused(r -> r.set(ValueLayout.JAVA_SHORT, desc(0) + DESC_STATE_PACKED_NUM_OFFSET, (short) 0), "num 0");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, desc(0) + DESC_STATE_PACKED_LAST_OFFSET, (short) 0), "last is 0");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_LONG, desc(3) + DESC_STATE_PACKED_COUNTER_OFFSET, 0L), "share counter 0");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_BYTE, desc(3) + DESC_STATE_PACKED_INFLIGHT_OFFSET, (byte) 0),
                "neither free nor in an in-flight chain");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_BYTE, desc(5) + DESC_STATE_PACKED_INFLIGHT_OFFSET, (byte) 7),
                "desc[5].inflight is 7");
        // an update in progress, and the ring shows neither an available nor a used descriptor there
        assertRefused(
                (r, ring) -> {
                    r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_USED_IDX_OFFSET, (short) 3);
                    r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET, (short) 6);
                    ring.flags[6] = VIRTQ_DESC_F_USED_MASK; // available for the next lap
                },
                "neither available (0x80) nor used for wrap counter 1");
        assertRefused(
                (r, ring) -> {
                    r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_USED_IDX_OFFSET, (short) 7);
                    r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET, (short) 6);
                    ring.flags[6] = 0; // used in the other lap, but the batch did not wrap
                },
                "neither available");
    }

    @Test
    void shouldRefuseCallerMisuseWhenNothingIsStored() {
        MemorySegment r = region(4);
        PackedRing ring = new PackedRing(4);
        InflightRegionPacked w = writer(r, 4, StoreObserver.NONE);
        assertThrows(IllegalStateException.class, () -> w.descriptorFetched(0, 1, 0, 0, true, true));
        w.start(0, true, ring::flagsAt);
        assertThrows(IllegalStateException.class, () -> w.descriptorFetched(0, 1, 0, 0, false, true), "no head");
        int a = fetch(w, ring, 1, 4);
        assertThrows(IllegalStateException.class, () -> w.descriptorFetched(0, 1, 0, 0, true, true), "no free entry");
        assertThrows(IllegalStateException.class, () -> w.batchBegin(new int[] {1}, 1), "not a head in flight");
        assertThrows(IllegalArgumentException.class, () -> w.batchBegin(new int[] {a, a}, 2), "twice");
        assertThrows(IllegalStateException.class, () -> w.batchEnd(new int[] {a}, 1), "no batch open");
        assertThrows(
                IllegalArgumentException.class,
                () -> writer(region(4), 4, StoreObserver.NONE).start(4, true, ring::flagsAt),
                "used index beyond the queue");
        assertEquals(1, w.inflightCount());
    }
}
