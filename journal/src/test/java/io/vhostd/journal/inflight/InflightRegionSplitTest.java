package io.vhostd.journal.inflight;

import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_INFLIGHT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_NEXT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_FEATURES_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_VERSION_OFFSET;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.journal.CrashAfter;
import io.vhostd.journal.JournalException;
import io.vhostd.journal.SimulatedCrash;
import io.vhostd.journal.StoreObserver;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class InflightRegionSplitTest {
    private static final int QS = 8;

    private final Arena arena = Arena.ofConfined();
    /** The guest's used ring idx. */
    private int ringUsedIdx;

    @AfterEach
    void closeArena() {
        arena.close();
    }

    private MemorySegment region() {
        MemorySegment buffer = arena.allocate(InflightRegionDescriptor.mmapSizeBytes(1, QS, false), 64);
        return InflightRegionDescriptor.queueRegion(buffer, 0, QS, false);
    }

    private InflightRegionSplit writer(MemorySegment r) {
        return new InflightRegionSplit(r, 0, QS, StoreObserver.NONE);
    }

    /** A batch published to the guest: the used ring idx moves by the batch size. */
    private void complete(InflightRegionSplit w, int... heads) {
        w.completed(heads, heads.length, q -> ringUsedIdx = (ringUsedIdx + heads.length) & 0xFFFF);
    }

    private static List<Integer> heads(InflightSplitRecovery r) {
        return r.resubmit().stream().map(InflightHead::head).toList();
    }

    private static long desc(int i) {
        return QUEUE_REGION_SPLIT_DESC_OFFSET + 16L * i;
    }

    @Test
    void shouldInitialiseWithTheRingsUsedIdxWhenRegionIsNew() {
        MemorySegment r = region();
        ringUsedIdx = 7;
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertTrue(rec.fresh());
        assertEquals(7, rec.usedIdx());
        assertEquals(7, rec.lastAvailIdx());
        assertEquals(1, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_VERSION_OFFSET));
        assertEquals(QS, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_DESC_NUM_OFFSET));
        assertEquals(7, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_USED_IDX_OFFSET));
    }

    @Test
    void shouldResubmitInCounterOrderWhenBackEndRestarts() {
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        w.start(ringUsedIdx);
        w.fetched(5);
        w.fetched(2);
        w.fetched(7);
        complete(w, 2);
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertEquals(List.of(5, 7), heads(rec));
        assertEquals(
                List.of(0L, 2L),
                rec.resubmit().stream().map(InflightHead::counter).toList());
        assertEquals(1, rec.usedIdx());
        assertEquals(3, rec.lastAvailIdx(), "used_idx + in flight, as libvhost-user computes it");
        assertEquals(0, rec.clearedBatchSize());
    }

    @Test
    void shouldClearTheWholeBatchWhenLastBatchIsTorn() {
        // the torn last batch: used->idx moved, used_idx did not (the writer died before batchEnd)
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        w.start(ringUsedIdx);
        for (int h = 0; h < 6; h++) {
            w.fetched(h);
        }
        int[] batch = {4, 1, 3};
        w.batchBegin(batch, 3);
        ringUsedIdx += 3;
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertEquals(3, rec.clearedBatchSize());
        assertEquals(List.of(0, 2, 5), heads(rec));
        assertEquals(3, rec.usedIdx());
        assertEquals(6, rec.lastAvailIdx());
        assertEquals(3, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_USED_IDX_OFFSET));
        assertEquals(0, r.get(ValueLayout.JAVA_BYTE, desc(1) + DESC_STATE_SPLIT_INFLIGHT_OFFSET));
    }

    @Test
    void shouldClearOnlyTheCompletedWhenCompletedOutOfOrderAtTheCrash() {
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        w.start(ringUsedIdx);
        for (int h = 0; h < 8; h++) {
            w.fetched(h);
        }
        complete(w, 6, 2);
        // a second out-of-order batch is published, and the writer dies after clearing its first head
        int[] batch = {5, 0, 3};
        // 6 stores link the batch (next, last_batch_head per head), the 7th clears head 5
        InflightRegionSplit w3 = new InflightRegionSplit(r, 0, QS, new CrashAfter(7));
        w3.start(ringUsedIdx);
        assertThrows(SimulatedCrash.class, () -> w3.completed(batch, 3, q -> ringUsedIdx = (ringUsedIdx + 3) & 0xFFFF));
        assertEquals(0, r.get(ValueLayout.JAVA_BYTE, desc(5) + DESC_STATE_SPLIT_INFLIGHT_OFFSET), "5 was cleared");
        assertEquals(1, r.get(ValueLayout.JAVA_BYTE, desc(0) + DESC_STATE_SPLIT_INFLIGHT_OFFSET), "0 was not");
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertEquals(3, rec.clearedBatchSize());
        assertEquals(List.of(1, 4, 7), heads(rec));
        assertEquals(5, rec.usedIdx());
        assertEquals(8, rec.lastAvailIdx());
    }

    @Test
    void shouldKeepTheRequestAtDescZeroWhenLastBatchHeadIsStillZero() {
        // SPDK #3766, our writer: a region first used after a migration (ring used->idx 7, nothing completed yet);
        // last_batch_head is still its default 0 and desc 0 holds a real request. used_idx was set from the ring when
        // the queue started, so recovery sees no torn batch and keeps desc 0.
        MemorySegment r = region();
        ringUsedIdx = 7;
        InflightRegionSplit w = writer(r);
        w.start(ringUsedIdx);
        w.fetched(0);
        w.fetched(3);
        assertEquals(0, r.get(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET));
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertEquals(List.of(0, 3), heads(rec));
        assertEquals(0, rec.clearedBatchSize());
        assertEquals(9, rec.lastAvailIdx());
    }

    @Test
    void shouldRefuseRatherThanDropDescZeroWhenUsedIdxIsStale() {
        // SPDK #3766, a region as DPDK leaves it: used_idx 0 (never written), last_batch_head 0, desc 0 and 3 in
        // flight, the ring's used->idx at 7. DPDK clears desc[0] and loses the request; we refuse: the "batch" from
        // last_batch_head 0 loops on itself (desc[0].next is 0), which no written batch does.
        MemorySegment r = region();
        r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_VERSION_OFFSET, (short) 1);
        r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_DESC_NUM_OFFSET, (short) QS);
        r.set(ValueLayout.JAVA_BYTE, desc(0) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 1);
        r.set(ValueLayout.JAVA_BYTE, desc(3) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 1);
        r.set(ValueLayout.JAVA_LONG, desc(3) + DESC_STATE_SPLIT_COUNTER_OFFSET, 1L);
        JournalException e =
                assertThrows(JournalException.class, () -> writer(r).start(7));
        assertTrue(e.getMessage().contains("SPDK #3766"), e.getMessage());
        assertEquals(1, r.get(ValueLayout.JAVA_BYTE, desc(0) + DESC_STATE_SPLIT_INFLIGHT_OFFSET), "nothing written");
        JournalException far =
                assertThrows(JournalException.class, () -> writer(r).start(300));
        assertTrue(far.getMessage().contains("stale"), far.getMessage());
    }

    @Test
    void shouldClearDescZeroWhenItReallyWasTheTornBatch() {
        // last_batch_head 0 is also a legitimate value: head 0 completed in the torn batch
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        w.start(ringUsedIdx);
        w.fetched(0);
        w.fetched(1);
        w.batchBegin(new int[] {0}, 1);
        ringUsedIdx++;
        InflightSplitRecovery rec = writer(r).start(ringUsedIdx);
        assertEquals(1, rec.clearedBatchSize());
        assertEquals(List.of(1), heads(rec));
    }

    private void assertRefused(Consumer<MemorySegment> corrupt, int ringIdx, String messagePart) {
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        ringUsedIdx = 0;
        w.start(0);
        w.fetched(1);
        w.fetched(4);
        w.fetched(6);
        complete(w, 4);
        corrupt.accept(r);
        JournalException e =
                assertThrows(JournalException.class, () -> writer(r).start(ringIdx));
        assertTrue(e.getMessage().contains(messagePart), "'" + e.getMessage() + "' lacks '" + messagePart + "'");
    }

    @Test
    void shouldRefuseWhenRegionIsHostile() {
        assertRefused(r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_VERSION_OFFSET, (short) 2), 1, "version 2");
        assertRefused(r -> r.set(ValueLayout.JAVA_LONG, QUEUE_REGION_SPLIT_FEATURES_OFFSET, 1L), 1, "features 0x1");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_DESC_NUM_OFFSET, (short) 16),
                1,
                "desc_num 16 differs from the queue size 8");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_BYTE, desc(2) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 2),
                1,
                "desc[2].inflight is 2");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_LONG, desc(6) + DESC_STATE_SPLIT_COUNTER_OFFSET, 0L), 1, "share counter 0");
        // a torn batch of 2 from last_batch_head 4: 4 -> next 9, a head beyond the queue
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, desc(4) + DESC_STATE_SPLIT_NEXT_OFFSET, (short) 9),
                3,
                "head 9, out of [0, 8)");
        assertRefused(
                r -> r.set(ValueLayout.JAVA_SHORT, QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET, (short) 0xFFFF),
                2,
                "head 65535");
        // a batch list with a cycle: 4 -> 6 -> 4
        assertRefused(
                r -> {
                    r.set(ValueLayout.JAVA_SHORT, desc(4) + DESC_STATE_SPLIT_NEXT_OFFSET, (short) 6);
                    r.set(ValueLayout.JAVA_SHORT, desc(6) + DESC_STATE_SPLIT_NEXT_OFFSET, (short) 4);
                },
                4,
                "loops back to head 4");
        assertRefused(r -> {}, 1 + QS + 1, "more than the queue size");
    }

    @Test
    void shouldRefuseCallerMisuseWhenNothingIsStored() {
        MemorySegment r = region();
        InflightRegionSplit w = writer(r);
        assertThrows(IllegalStateException.class, () -> w.fetched(0), "not started");
        w.start(0);
        w.fetched(0);
        assertThrows(IllegalStateException.class, () -> w.fetched(0), "in flight");
        assertThrows(IllegalArgumentException.class, () -> w.fetched(8), "out of range");
        assertThrows(IllegalStateException.class, () -> w.batchBegin(new int[] {1}, 1), "not in flight");
        assertThrows(IllegalArgumentException.class, () -> w.batchBegin(new int[] {0, 0}, 2), "twice");
        assertThrows(IllegalArgumentException.class, () -> w.batchBegin(new int[] {0}, 0), "count 0");
        assertThrows(
                IllegalArgumentException.class,
                () -> new InflightRegionSplit(r, 0, 6, StoreObserver.NONE),
                "not a power of two");
        assertThrows(
                IllegalArgumentException.class,
                () -> new InflightRegionSplit(r.asSlice(0, 64), 0, QS, StoreObserver.NONE),
                "too short");
        assertEquals(1, w.inflightCount());
    }
}
