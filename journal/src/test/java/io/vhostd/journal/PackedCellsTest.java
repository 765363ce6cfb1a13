package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Packed rings with descriptor copies (spec §6.5): the writer's cells, what recovery returns, and the regions recovery
 * refuses (§10.3).
 */
@Timeout(10)
class PackedCellsTest {
    private static final int SIZE = 8;
    private static final int W = 1 << 15;
    private static final VringConfig PACKED = new VringConfig(SIZE, true, 0x1000, 0x2000, 0x3000, 0, 0, SIZE, true);

    private final Arena arena = Arena.ofConfined();
    /** The guest's used position as the fake ring shows it. */
    private int guestUsed = W;

    @AfterEach
    void closeArena() {
        arena.close();
    }

    private MemorySegment region() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(1, SIZE, 64), 64);
        JournalDescriptor.format(s, 1, SIZE, 64);
        return s;
    }

    private SessionJournal started(MemorySegment s) {
        SessionJournal j = SessionJournal.open(s, recover(s));
        j.recordVring(0, PACKED);
        j.recordQueueStarted(0, W, W);
        return j;
    }

    private RecoveredSession recover(MemorySegment s) {
        return JournalRecovery.recover(s, (q, v, committed, pending) -> guestUsed);
    }

    private static void fetch(SessionJournal j, int id, int n, int avail) {
        for (long[] d : JournalCrashTest.chain(id, n)) {
            j.packedDescriptorFetched(0, id, d[0], (int) d[1], (int) d[2], (int) d[3]);
        }
        j.packedChainFetched(0, id, avail);
    }

    private static long cellEntry(MemorySegment s, int cell) {
        return JournalDescriptor.queueOffset(1, SIZE, 64, 0)
                + JournalDescriptor.slotOffset(64, cell)
                + JournalDescriptor.SLOT_ENTRY_OFFSET;
    }

    @Test
    void shouldReturnEachChainsCopiesInFetchOrderWhenCompletionsWereOutOfOrder() {
        MemorySegment s = region();
        SessionJournal j = started(s);
        fetch(j, 5, 3, 3 | W);
        fetch(j, 1, 2, 5 | W);
        fetch(j, 2, 1, 6 | W);
        j.requestsCompleted(0, new int[] {1}, 1, 2 | W, q -> guestUsed = 2 | W);
        fetch(j, 1, 2, 0); // cells freed by id 1 are reused; the avail wrap counter flipped
        RecoveredQueue q = recover(s).queue(0);
        assertEquals(
                List.of(5, 2, 1),
                q.inflight().stream().map(InflightRequest::slot).toList());
        assertArrayEquals(
                JournalCrashTest.copies(JournalCrashTest.chain(5, 3)),
                q.inflight().get(0).entry());
        assertArrayEquals(
                JournalCrashTest.copies(JournalCrashTest.chain(1, 2)),
                q.inflight().get(2).entry());
        assertEquals(0, q.lastAvailIdx());
        assertEquals(2 | W, q.usedIdx());
        SessionJournal continued = SessionJournal.open(s, recover(s));
        assertEquals(3, continued.inflightCount(0));
        assertEquals(3, continued.packedChain(0, 5).size());
        assertEquals(5, continued.packedChain(0, 5).getLast().id());
    }

    @Test
    void shouldRefuseFetchWhenMoreRingDescriptorsThanTheRingHasAreInFlight() {
        SessionJournal j = started(region());
        fetch(j, 0, 4, 4 | W);
        fetch(j, 1, 4, 0);
        IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> j.packedDescriptorFetched(0, 2, 0x1000, 512, 2, 0));
        assertTrue(e.getMessage().contains("ring descriptors in flight"), e.getMessage());
    }

    @Test
    void shouldRefuseRecordVringWhenPackedCopiesDoNotHaveOneSlotPerDescriptor() {
        SessionJournal j = SessionJournal.open(region(), JournalRecovery.recover(region(), (q, v, c, p) -> c));
        assertThrows(
                IllegalArgumentException.class,
                () -> j.recordVring(0, new VringConfig(SIZE, true, 0x1000, 0x2000, 0x3000, 0, 0, SIZE / 2, true)));
    }

    @Test
    void shouldRefuseRecoveryWhenTwoCellsOfAChainHoldOnePosition() {
        MemorySegment s = region();
        fetch(started(s), 3, 2, 2 | W);
        // the cells are 0 and 1 (popped in ascending order): give the second the first's position
        s.set(JournalDescriptor.SHORT_LE, cellEntry(s, 1) + JournalDescriptor.CELL_POSITION_OFFSET, (short) 0);
        JournalException e = assertThrows(JournalException.class, () -> recover(s));
        assertTrue(e.getMessage().contains("position 0, twice"), e.getMessage());
    }

    @Test
    void shouldRefuseRecoveryWhenCellsOfAChainNameTwoBufferIds() {
        MemorySegment s = region();
        fetch(started(s), 3, 2, 2 | W);
        s.set(JournalDescriptor.SHORT_LE, cellEntry(s, 1) + JournalDescriptor.CELL_ID_OFFSET, (short) 4);
        JournalException e = assertThrows(JournalException.class, () -> recover(s));
        assertTrue(e.getMessage().contains("buffer id 4"), e.getMessage());
    }

    @Test
    void shouldRefuseRecoveryWhenABufferIdIsInFlightTwice() {
        MemorySegment s = region();
        SessionJournal j = started(s);
        fetch(j, 3, 1, 1 | W);
        fetch(j, 4, 1, 2 | W);
        s.set(JournalDescriptor.SHORT_LE, cellEntry(s, 1) + JournalDescriptor.CELL_ID_OFFSET, (short) 3);
        JournalException e = assertThrows(JournalException.class, () -> recover(s));
        assertTrue(e.getMessage().contains("in flight twice"), e.getMessage());
    }

    @Test
    void shouldRefuseRecoveryWhenRolledForwardBatchListsPartOfAChain() {
        MemorySegment s = region();
        SessionJournal j = started(s);
        fetch(j, 3, 2, 2 | W);
        j.completionsBegin(0, new int[] {3}, 1, 2 | W);
        guestUsed = 2 | W; // the guest saw the batch
        // the batch list holds cells 0 and 1: make it name cell 0 only
        s.set(JournalDescriptor.INT_LE, JournalDescriptor.queueOffset(1, SIZE, 64, 0) + 24, 1);
        JournalException e = assertThrows(JournalException.class, () -> recover(s));
        assertTrue(e.getMessage().contains("part of the chain"), e.getMessage());
    }

    @Test
    void shouldAllocateNothingWhenFetchingAndCompletingPackedChains() {
        SessionJournal j = started(region());
        int[] batch = new int[4];
        UsedPublisher publisher = q -> {};
        var threads = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().threadId();
        long allocated = 0;
        int position = 0;
        boolean wrap = true;
        for (int round = 0; round < 3; round++) { // the last round runs compiled code
            long before = threads.getThreadAllocatedBytes(tid);
            for (int i = 0; i < 20_000; i++) {
                for (int id = 0; id < 4; id++) {
                    // chains of 2 ring descriptors: 8 cells in flight, the whole ring
                    j.packedDescriptorFetched(0, id, 0x1000, 16, 0, 1);
                    j.packedDescriptorFetched(0, id, 0x2000, 4096, id, 0);
                    position += 2;
                    if (position == SIZE) {
                        position = 0;
                        wrap = !wrap;
                    }
                    j.packedChainFetched(0, id, position | (wrap ? W : 0));
                    batch[id] = 3 - id;
                }
                j.requestsCompleted(0, batch, 4, position | (wrap ? W : 0), publisher);
            }
            allocated = threads.getThreadAllocatedBytes(tid) - before;
        }
        assertTrue(allocated < 4096, "80000 packed fetches and 20000 batches allocated " + allocated + " bytes");
    }
}
