package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(30)
class SessionJournalTest {
    private static final JournalMemoryRegion R1 = new JournalMemoryRegion(0, 0x100000, 0x7f0000000000L, 0, 10);
    private static final VringConfig SPLIT8 = new VringConfig(8, false, 0x1000, 0x2000, 0x3000, 0, 0, 8, false);
    private static final VringConfig NVME4 = new VringConfig(4, false, 0x4000, 0x5000, 0x6000, 0, 0, 4, true);
    private static final VringConfig PACKED6 = new VringConfig(6, true, 0x7000, 0x8000, 0x9000, 0, 0, 6, false);

    private final Arena arena = Arena.ofConfined();
    private final int[] guestUsed = new int[4];
    private final GuestUsedIndex guest = (q, v, committed, pending) -> guestUsed[q];

    @AfterEach
    void closeArena() {
        arena.close();
    }

    private MemorySegment journal(int maxQueues, int maxSlots, int entryLength) {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(maxQueues, maxSlots, entryLength), 64);
        JournalDescriptor.format(s, maxQueues, maxSlots, entryLength);
        return s;
    }

    private SessionJournal open(MemorySegment s) {
        return SessionJournal.open(s, JournalRecovery.recover(s, guest));
    }

    private SessionJournal configured(MemorySegment s) {
        SessionJournal j = open(s);
        j.recordMemoryTable(List.of(R1));
        j.recordVring(0, SPLIT8);
        j.recordVring(1, NVME4);
        j.recordVring(2, PACKED6);
        return j;
    }

    private UsedPublisher publish(int newUsed) {
        return q -> guestUsed[q] = newUsed;
    }

    private static byte[] entry(int seed) {
        byte[] e = new byte[64];
        for (int i = 0; i < 64; i++) {
            e[i] = (byte) (seed + i);
        }
        return e;
    }

    @Test
    void shouldRecoverEmptySessionWhenFreshlyFormatted() {
        MemorySegment s = journal(2, 8, 0);
        RecoveredSession r = JournalRecovery.recover(s, guest);
        assertFalse(r.config().featuresSet());
        assertFalse(r.config().memoryTableSet());
        assertEquals(List.of(), r.config().queues());
        assertEquals(List.of(), r.queues());
        assertEquals(0, r.configGeneration());
        assertEquals(r.config(), JournalRecovery.readConfig(s));
    }

    @Test
    void shouldRecoverConfigurationWhenRecorded() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordFeatures(1L << 32);
        j.recordProtocolFeatures(1L << 12);
        j.recordVringEnabled(0, true);
        JournalConfig c = JournalRecovery.readConfig(s);
        assertTrue(c.featuresSet());
        assertEquals(1L << 32, c.features());
        assertEquals(1L << 12, c.protocolFeatures());
        assertEquals(List.of(R1), c.memoryTable());
        assertEquals(SPLIT8, c.queue(0).vring());
        assertTrue(c.queue(0).enabled());
        assertEquals(NVME4, c.queue(1).vring());
        assertEquals(PACKED6, c.queue(2).vring());
        assertFalse(c.queue(2).started());
        assertEquals(7, j.configGeneration());
    }

    @Test
    void shouldKeepCacheModeAcrossSessionResetAndIgnoreUnknownValue() {
        MemorySegment s = journal(2, 8, 0);
        SessionJournal j = open(s);
        assertNull(JournalRecovery.readConfig(s).writeback(), "nothing recorded yet");
        j.recordFeatures(1L << 11);
        j.recordCacheMode(false);
        assertEquals(Boolean.FALSE, JournalRecovery.readConfig(s).writeback());
        j.recordCacheMode(true);
        assertEquals(Boolean.TRUE, JournalRecovery.readConfig(s).writeback());

        j.recordSessionReset();
        JournalConfig afterReset = JournalRecovery.readConfig(s);
        assertFalse(afterReset.featuresSet(), "the session is forgotten");
        assertEquals(Boolean.TRUE, afterReset.writeback(), "the device's cache mode stays");
        assertEquals(Boolean.TRUE, JournalRecovery.recover(s, guest).config().writeback());

        // a later minor version's value: ignored, as if nothing were recorded (spec §11)
        long active = JournalDescriptor.configCopyOffset(2, (int) (j.configGeneration() & 1));
        s.set(
                java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN),
                active + JournalDescriptor.SESSION_CACHE_MODE_OFFSET,
                7);
        assertNull(JournalRecovery.readConfig(s).writeback());
    }

    @Test
    void shouldKeepInflightInFetchOrderWhenCompletedOutOfOrder() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        guestUsed[0] = 100;
        j.recordQueueStarted(0, 100, 100);
        int[] heads = {6, 1, 4, 0, 7};
        for (int i = 0; i < heads.length; i++) {
            j.requestFetched(0, heads[i], 101 + i);
        }
        j.requestsCompleted(0, new int[] {4, 6}, 2, 102, publish(102));
        RecoveredQueue q = JournalRecovery.recover(s, guest).queue(0);
        assertEquals(105, q.lastAvailIdx());
        assertEquals(102, q.usedIdx());
        assertEquals(
                List.of(1, 0, 7),
                q.inflight().stream().map(InflightRequest::slot).toList());
        assertEquals(
                List.of(2L, 4L, 5L),
                q.inflight().stream().map(InflightRequest::fetchSeq).toList());
        assertEquals(BatchOutcome.NONE, q.interruptedBatch());
        assertEquals(-1, q.tornFetchSlot());
        assertEquals(3, j.inflightCount(0));
    }

    @Test
    void shouldRecoverEntryCopiesWhenQueueKeepsThem() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(1, 0, 0);
        MemorySegment sq = arena.allocate(4 * 64);
        for (int slot = 0; slot < 4; slot++) {
            MemorySegment.copy(MemorySegment.ofArray(entry(slot * 10)), 0, sq, slot * 64L, 64);
        }
        j.requestFetched(1, 2, 1, sq, 0);
        j.requestFetched(1, 3, 2, sq, 64);
        // the guest reuses the SQ slots as soon as the head moved: the journal's copies are what counts
        sq.fill((byte) 0xEE);
        List<InflightRequest> inflight =
                JournalRecovery.recover(s, guest).queue(1).inflight();
        assertArrayEquals(entry(0), inflight.get(0).entry());
        assertArrayEquals(entry(10), inflight.get(1).entry());
    }

    @Test
    void shouldRollBackBatchWhenGuestDidNotSeeIt() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(0, 0, 0);
        j.requestFetched(0, 3, 1);
        j.requestFetched(0, 5, 2);
        j.completionsBegin(0, new int[] {5, 3}, 2, 2);
        // the writer dies before the used index reaches the guest: guestUsed[0] is still 0
        RecoveredSession r = JournalRecovery.recover(s, guest);
        RecoveredQueue q = r.queue(0);
        assertEquals(BatchOutcome.ROLLED_BACK, q.interruptedBatch());
        assertEquals(0, q.usedIdx());
        assertEquals(
                List.of(3, 5), q.inflight().stream().map(InflightRequest::slot).toList());
        SessionJournal resumed = SessionJournal.open(s, r);
        assertEquals(
                BatchOutcome.NONE, JournalRecovery.recover(s, guest).queue(0).interruptedBatch());
        resumed.requestsCompleted(0, new int[] {3, 5}, 2, 2, publish(2));
        assertEquals(List.of(), JournalRecovery.recover(s, guest).queue(0).inflight());
    }

    @Test
    void shouldRollForwardBatchWhenGuestSawIt() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(0, 0, 0);
        j.requestFetched(0, 3, 1);
        j.requestFetched(0, 5, 2);
        j.requestFetched(0, 1, 3);
        j.completionsBegin(0, new int[] {5, 3}, 2, 2);
        guestUsed[0] = 2; // published; the writer dies before completionsEnd
        RecoveredSession r = JournalRecovery.recover(s, guest);
        RecoveredQueue q = r.queue(0);
        assertEquals(BatchOutcome.ROLLED_FORWARD, q.interruptedBatch());
        assertEquals(2, q.usedIdx());
        assertEquals(
                List.of(1), q.inflight().stream().map(InflightRequest::slot).toList());
        SessionJournal resumed = SessionJournal.open(s, r);
        assertTrue(resumed.isInflight(0, 1));
        assertFalse(resumed.isInflight(0, 3));
        RecoveredQueue after = JournalRecovery.recover(s, guest).queue(0);
        assertEquals(BatchOutcome.NONE, after.interruptedBatch());
        assertEquals(2, after.usedIdx());
    }

    @Test
    void shouldNotResurrectTornFetchWhenNextFetchUsesAnotherSlot() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(1, 0, 0);
        MemorySegment e = MemorySegment.ofArray(entry(1));
        // dies after the slot's sequence, before the fetch word: slot 2 holds a sequence never committed
        SessionJournal dying = SessionJournal.open(s, JournalRecovery.recover(s, guest), new CrashAfter(2));
        assertThrows(SimulatedCrash.class, () -> dying.requestFetched(1, 2, 1, e, 0));
        RecoveredSession r = JournalRecovery.recover(s, guest);
        assertEquals(2, r.queue(1).tornFetchSlot());
        assertEquals(List.of(), r.queue(1).inflight());
        // the replacement fetches the same SQ entry into another slot: the torn slot must stay free
        SessionJournal resumed = SessionJournal.open(s, r);
        resumed.requestFetched(1, 0, 1, e, 0);
        assertEquals(
                List.of(0),
                JournalRecovery.recover(s, guest).queue(1).inflight().stream()
                        .map(InflightRequest::slot)
                        .toList());
    }

    @Test
    void shouldStartAtTheRingsUsedIndexWhenQueueStarts() {
        // SPDK #3766: after a migration the ring's used->idx is not 0; the journal starts from it, not from a default
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        guestUsed[0] = 4242;
        j.recordQueueStarted(0, 4242, 4242);
        j.requestFetched(0, 0, 4243);
        RecoveredQueue q = JournalRecovery.recover(s, guest).queue(0);
        assertEquals(4242, q.usedIdx());
        assertEquals(
                List.of(0), q.inflight().stream().map(InflightRequest::slot).toList());
    }

    @Test
    void shouldStopAndRestartWhenDrained() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(0, 0, 0);
        j.requestFetched(0, 2, 1);
        assertThrows(IllegalStateException.class, () -> j.recordQueueStopped(0));
        j.requestsCompleted(0, new int[] {2}, 1, 1, publish(1));
        j.recordQueueStopped(0);
        assertNull(JournalRecovery.recover(s, guest).queue(0));
        assertThrows(IllegalStateException.class, () -> j.requestFetched(0, 2, 2));
        j.recordQueueStarted(0, 50, 50);
        j.requestFetched(0, 2, 51);
        RecoveredQueue q = JournalRecovery.recover(s, guest).queue(0);
        assertEquals(51, q.lastAvailIdx());
        assertEquals(50, q.usedIdx());
        assertEquals(2L, q.inflight().getFirst().fetchSeq());
    }

    @Test
    void shouldCarryPackedWrapCountersWhenPackedQueue() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        int w = 1 << 15;
        j.recordQueueStarted(2, 5 | w, 5 | w);
        j.requestFetched(2, 0, 1); // wrapped: the wrap counter flipped to 0
        guestUsed[2] = 1;
        j.requestsCompleted(2, new int[] {0}, 1, 1, publish(1));
        RecoveredQueue q = JournalRecovery.recover(s, guest).queue(2);
        assertEquals(1, q.lastAvailIdx());
        assertEquals(1, q.usedIdx());
        assertThrows(IllegalArgumentException.class, () -> j.requestFetched(2, 1, 6 | w), "index beyond the size");
        assertThrows(IllegalArgumentException.class, () -> {
            j.recordQueueStopped(2);
            j.recordQueueStarted(2, 6 | w, 0);
        });
    }

    @Test
    void shouldResetSessionWhenAllQueuesStopped() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordFeatures(7);
        j.recordQueueStarted(0, 0, 0);
        assertThrows(IllegalStateException.class, j::recordSessionReset);
        j.recordQueueStopped(0);
        j.recordSessionReset();
        JournalConfig c = JournalRecovery.readConfig(s);
        assertFalse(c.featuresSet());
        assertEquals(List.of(), c.queues());
        assertEquals(List.of(), c.memoryTable());
    }

    @Test
    void shouldRefuseCallerMisuseWhenNothingIsStored() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        assertThrows(IllegalStateException.class, () -> j.requestFetched(0, 1, 1));
        j.recordQueueStarted(0, 0, 0);
        j.recordQueueStarted(1, 0, 0);
        long generation = j.configGeneration();
        j.requestFetched(0, 1, 1);
        assertThrows(IllegalStateException.class, () -> j.requestFetched(0, 1, 2), "slot in flight");
        assertThrows(IllegalArgumentException.class, () -> j.requestFetched(0, 8, 2), "slot out of range");
        assertThrows(IllegalArgumentException.class, () -> j.requestFetched(1, 0, 1), "entry copy missing");
        assertThrows(
                IllegalArgumentException.class,
                () -> j.requestFetched(0, 2, 2, MemorySegment.ofArray(new byte[64]), 0),
                "entry copy on a queue without copies");
        assertThrows(IllegalStateException.class, () -> j.completionsBegin(0, new int[] {2}, 1, 1), "not in flight");
        assertThrows(IllegalArgumentException.class, () -> j.completionsBegin(0, new int[] {1, 1}, 2, 2), "twice");
        assertThrows(IllegalArgumentException.class, () -> j.completionsBegin(0, new int[] {1}, 0, 1), "count 0");
        assertThrows(IllegalStateException.class, () -> j.completionsEnd(0), "no batch");
        assertThrows(IllegalArgumentException.class, () -> j.requestFetched(0, 2, 0x10000), "avail beyond u16");
        assertThrows(IllegalArgumentException.class, () -> j.completionsBegin(0, new int[] {1}, 1, -1), "used");
        j.completionsBegin(0, new int[] {1}, 1, 1);
        assertThrows(IllegalStateException.class, () -> j.completionsBegin(0, new int[] {1}, 1, 1), "batch open");
        assertThrows(IllegalStateException.class, () -> j.requestFetched(0, 2, 2), "fetch between the phases");
        assertThrows(IllegalStateException.class, () -> j.availSkipped(0, 2), "skip between the phases");
        j.completionsEnd(0);
        assertThrows(
                IllegalStateException.class,
                () -> j.recordVring(0, new VringConfig(16, false, 0x1000, 0x2000, 0x3000, 0, 0, 8, false)),
                "size change while started");
        j.recordVring(0, new VringConfig(8, false, 0x1000, 0x2000, 0x3000, 0x3000, 1, 8, false)); // log on
        assertThrows(IllegalArgumentException.class, () -> j.recordVring(5, SPLIT8), "queue index");
        assertThrows(
                IllegalArgumentException.class,
                () -> j.recordVring(2, new VringConfig(16, false, 0x1000, 0x2000, 0x3000, 0, 0, 16, false)),
                "more slots than the journal has");
        assertThrows(
                IllegalArgumentException.class,
                () -> j.recordMemoryTable(List.of(R1, new JournalMemoryRegion(0x80000, 0x1000, 0, 0, 11))),
                "overlap");
        assertThrows(
                IllegalArgumentException.class,
                () -> j.recordMemoryTable(List.of(R1, new JournalMemoryRegion(0x200000, 0x1000, 0, 0, 10))),
                "duplicate id");
        List<JournalMemoryRegion> many = new ArrayList<>();
        for (int i = 0; i < 33; i++) {
            many.add(new JournalMemoryRegion(i * 0x1000L, 0x1000, 0, 0, i));
        }
        assertThrows(IllegalArgumentException.class, () -> j.recordMemoryTable(many), "33 regions");
        assertEquals(generation + 1, j.configGeneration(), "only the vring address change was committed");
        MemorySegment noCopies = journal(1, 8, 0);
        SessionJournal k = open(noCopies);
        assertThrows(IllegalArgumentException.class, () -> k.recordVring(0, NVME4), "copies without entry space");
    }

    @Test
    void shouldRefuseOpenWhenConfigChangedSinceRecovery() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        RecoveredSession r = JournalRecovery.recover(s, guest);
        j.recordFeatures(1);
        JournalException e = assertThrows(JournalException.class, () -> SessionJournal.open(s, r));
        assertTrue(e.getMessage().contains("changed since recovery"), e.getMessage());
    }

    @Test
    void shouldAllocateNothingWhenFetchingAndCompleting() {
        MemorySegment s = journal(3, 8, 64);
        SessionJournal j = configured(s);
        j.recordQueueStarted(0, 0, 0);
        int[] batch = new int[8];
        UsedPublisher publisher = q -> {};
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().threadId();
        long allocated = 0;
        for (int round = 0; round < 3; round++) { // the last round runs compiled code
            long before = threads.getThreadAllocatedBytes(tid);
            int avail = 0;
            for (int i = 0; i < 20_000; i++) {
                for (int slot = 0; slot < 8; slot++) {
                    j.requestFetched(0, slot, ++avail & 0xFFFF);
                    batch[slot] = 7 - slot;
                }
                j.requestsCompleted(0, batch, 8, avail & 0xFFFF, publisher);
            }
            allocated = threads.getThreadAllocatedBytes(tid) - before;
            j.recordQueueStopped(0);
            j.recordQueueStarted(0, 0, 0);
        }
        assertTrue(allocated < 4096, "160000 fetches and 20000 batches allocated " + allocated + " bytes");
    }
}
