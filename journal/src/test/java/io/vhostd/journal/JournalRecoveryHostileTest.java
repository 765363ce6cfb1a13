package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A journal comes from a dead peer: recovery validates every field and refuses a region that a correct writer cannot
 * have left, with a {@link JournalException} that says what and where, never another exception and never a loop.
 */
@Timeout(30)
class JournalRecoveryHostileTest {
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int MAX_QUEUES = 2;
    private static final int MAX_SLOTS = 8;
    private static final int ENTRY = 64;

    private final Arena arena = Arena.ofConfined();
    private final int[] guestUsed = new int[MAX_QUEUES];
    private final GuestUsedIndex guest = (q, v, committed, pending) -> guestUsed[q];

    @AfterEach
    void closeArena() {
        arena.close();
    }

    /** A valid journal: queue 0 started at 0 with slots 1, 4, 6 in flight (fetch sequences 1, 2, 3). */
    private MemorySegment valid() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(MAX_QUEUES, MAX_SLOTS, ENTRY), 64);
        JournalDescriptor.format(s, MAX_QUEUES, MAX_SLOTS, ENTRY);
        SessionJournal j = SessionJournal.open(s, JournalRecovery.recover(s, guest));
        j.recordMemoryTable(List.of(new JournalMemoryRegion(0, 0x100000, 0x7f0000000000L, 0, 1)));
        j.recordVring(0, new VringConfig(8, false, 0x1000, 0x2000, 0x3000, 0, 0, 8, false));
        j.recordQueueStarted(0, 0, 0);
        j.requestFetched(0, 1, 1);
        j.requestFetched(0, 4, 2);
        j.requestFetched(0, 6, 3);
        return s;
    }

    private static long activeConfig(MemorySegment s) {
        return JournalDescriptor.configCopyOffset(MAX_QUEUES, (int) (JournalDescriptor.configGenerationAcquire(s) & 1));
    }

    private static long vring0(MemorySegment s) {
        return activeConfig(s) + JournalDescriptor.vringConfigOffset(0);
    }

    private static long queue0() {
        return JournalDescriptor.queueOffset(MAX_QUEUES, MAX_SLOTS, ENTRY, 0);
    }

    private static long slotSeq(int slot) {
        return queue0() + JournalDescriptor.slotOffset(ENTRY, slot) + JournalDescriptor.SLOT_SEQ_OFFSET;
    }

    private void assertRefused(Consumer<MemorySegment> corrupt, String messagePart) {
        MemorySegment s = valid();
        JournalRecovery.recover(s, guest); // valid before
        corrupt.accept(s);
        JournalException e = assertThrows(JournalException.class, () -> JournalRecovery.recover(s, guest));
        assertTrue(
                e.getMessage().contains(messagePart), "message '" + e.getMessage() + "' lacks '" + messagePart + "'");
    }

    /** Makes queue 0 look mid-batch: slots {@code slots}, count, new used index, batch sequence applied + 1. */
    private static void pendingBatch(MemorySegment s, int count, int newUsed, int... slots) {
        long list = queue0() + JournalDescriptor.batchListOffset(MAX_SLOTS, ENTRY);
        for (int i = 0; i < slots.length; i++) {
            s.set(I16, list + 2L * i, (short) slots[i]);
        }
        s.set(I32, queue0() + JournalDescriptor.QUEUE_BATCH_COUNT_OFFSET, count);
        s.set(I64, queue0() + JournalDescriptor.QUEUE_BATCH_WORD_OFFSET, JournalDescriptor.batchWord(1, newUsed));
    }

    @Test
    void shouldRefuseWhenHeaderIsWrong() {
        assertRefused(s -> s.set(I64, JournalDescriptor.MAGIC_OFFSET, 0L), "magic mismatch");
        assertRefused(s -> JournalDescriptor.versionRelease(s, 0x00020000), "expected major 1");
        assertRefused(s -> JournalDescriptor.versionRelease(s, 0), "not ready");
        assertRefused(s -> s.set(I32, JournalDescriptor.MAX_SLOTS_OFFSET, 0), "maxSlots");
        assertRefused(s -> s.set(I64, JournalDescriptor.LENGTH_OFFSET, 1L), "length mismatch");
    }

    @Test
    void shouldRefuseWhenSessionConfigIsMalformed() {
        assertRefused(
                s -> s.set(I32, activeConfig(s) + JournalDescriptor.SESSION_FLAGS_OFFSET, 0x104), "session flags");
        assertRefused(
                s -> s.set(I64, activeConfig(s) + JournalDescriptor.SESSION_FEATURES_OFFSET, 5L), "without their");
        assertRefused(
                s -> s.set(I32, activeConfig(s) + JournalDescriptor.SESSION_MEM_REGION_COUNT_OFFSET, 33),
                "memory region count 33");
        assertRefused(
                s -> s.set(I32, activeConfig(s) + JournalDescriptor.SESSION_MEM_REGION_COUNT_OFFSET, -1),
                "memory region count 4294967295");
        assertRefused(
                s -> {
                    long r = activeConfig(s) + JournalDescriptor.memRegionOffset(0);
                    s.set(I64, r + JournalDescriptor.MEM_REGION_MEMORY_SIZE_OFFSET, 0L);
                },
                "size 0");
        assertRefused(
                s -> {
                    long r = activeConfig(s) + JournalDescriptor.memRegionOffset(0);
                    s.set(I64, r + JournalDescriptor.MEM_REGION_GUEST_PHYS_ADDR_OFFSET, -0x1000L);
                },
                "wraps past 2^64");
        assertRefused(
                s -> {
                    long c = activeConfig(s);
                    s.set(I32, c + JournalDescriptor.SESSION_MEM_REGION_COUNT_OFFSET, 2);
                    long r = c + JournalDescriptor.memRegionOffset(1);
                    s.set(I64, r + JournalDescriptor.MEM_REGION_GUEST_PHYS_ADDR_OFFSET, 0x80000L);
                    s.set(I64, r + JournalDescriptor.MEM_REGION_MEMORY_SIZE_OFFSET, 0x1000L);
                    s.set(I32, r + JournalDescriptor.MEM_REGION_ID_OFFSET, 2);
                },
                "overlap");
    }

    @Test
    void shouldRefuseWhenVringConfigIsMalformed() {
        assertRefused(s -> s.set(I32, vring0(s) + JournalDescriptor.VRING_FLAGS_OFFSET, 0x40 | 3), "undefined bits");
        assertRefused(
                s -> s.set(I32, activeConfig(s) + JournalDescriptor.vringConfigOffset(1), 2), "without the configured");
        assertRefused(s -> s.set(I32, vring0(s) + JournalDescriptor.VRING_SIZE_OFFSET, 6), "queue size 6");
        assertRefused(s -> s.set(I32, vring0(s) + JournalDescriptor.VRING_SIZE_OFFSET, 65536), "queue size 65536");
        assertRefused(s -> s.set(I32, vring0(s) + JournalDescriptor.VRING_SLOT_COUNT_OFFSET, 9), "exceeds max slots");
        assertRefused(s -> s.set(I64, vring0(s) + JournalDescriptor.VRING_DESC_GPA_OFFSET, 0x1008L), "16-byte aligned");
        assertRefused(
                s -> s.set(I64, vring0(s) + JournalDescriptor.VRING_USED_GPA_OFFSET, 0xFFFF0L),
                "not inside one memory region");
        assertRefused(
                s -> s.set(I32, vring0(s) + JournalDescriptor.VRING_START_AVAIL_IDX_OFFSET, 0x10000),
                "start last avail index");
        assertRefused(
                s -> s.set(I64, vring0(s) + JournalDescriptor.VRING_START_FETCH_SEQ_OFFSET, 1L << 50),
                "wider than 48 bits");
    }

    @Test
    void shouldRefuseWhenSlotsAreInconsistent() {
        // a head in flight twice: two slots with one fetch sequence
        assertRefused(s -> s.set(I64, slotSeq(2), 2L), "share fetch sequence 2");
        // a sequence from the future (not the one torn fetch the writer can leave)
        assertRefused(s -> s.set(I64, slotSeq(2), 9L), "slot 2 has fetch sequence 9");
        // two torn fetches
        assertRefused(
                s -> {
                    s.set(I64, slotSeq(2), 4L);
                    s.set(I64, slotSeq(3), 4L);
                },
                "slot 3 has fetch sequence 4");
        // a sequence from before the queue started
        assertRefused(
                s -> s.set(I64, vring0(s) + JournalDescriptor.VRING_START_FETCH_SEQ_OFFSET, 2L), "slot 1 has fetch");
        // the fetch word behind the start
        assertRefused(
                s -> s.set(I64, vring0(s) + JournalDescriptor.VRING_START_FETCH_SEQ_OFFSET, 5L),
                "before the queue's start sequence");
        assertRefused(s -> s.set(I64, slotSeq(5), -1L), "slot 5 has fetch sequence -1");
    }

    @Test
    void shouldRefuseWhenBatchIsInconsistent() {
        assertRefused(s -> pendingBatch(s, 0, 1), "batch count 0");
        assertRefused(s -> pendingBatch(s, 9, 1), "batch count 9");
        assertRefused(s -> pendingBatch(s, 1, 1, 8), "names slot 8, out of [0, 8)");
        assertRefused(s -> pendingBatch(s, 2, 2, 4, 4), "names slot 4, twice");
        assertRefused(
                s -> {
                    s.set(I64, slotSeq(2), 4L); // a torn fetch
                    pendingBatch(s, 1, 1, 2);
                },
                "never committed");
        assertRefused(s -> pendingBatch(s, 1, 0, 4), "leaves the used index at 0");
        assertRefused(
                s -> s.set(
                        I64, queue0() + JournalDescriptor.QUEUE_BATCH_WORD_OFFSET, JournalDescriptor.batchWord(7, 1)),
                "batch sequence 7");
        // the guest shows a used index that is neither
        guestUsed[0] = 5;
        assertRefused(s -> pendingBatch(s, 1, 1, 4), "neither the committed 0 nor the interrupted batch's 1");
        guestUsed[0] = 0;
        // not published, yet a slot of the batch is free: its request would be lost
        assertRefused(
                s -> {
                    pendingBatch(s, 2, 2, 4, 1);
                    s.set(I64, slotSeq(1), 0L);
                },
                "already free");
    }

    @Test
    void shouldAcceptTornStatesWhenTheWriterCanLeaveThem() {
        MemorySegment s = valid();
        s.set(I64, slotSeq(2), 4L); // the one torn fetch
        pendingBatch(s, 2, 2, 6, 1);
        guestUsed[0] = 2;
        s.set(I64, slotSeq(6), 0L); // phase 2 had freed one slot of the published batch
        RecoveredQueue q = JournalRecovery.recover(s, guest).queue(0);
        assertEquals(2, q.tornFetchSlot());
        assertEquals(BatchOutcome.ROLLED_FORWARD, q.interruptedBatch());
        assertEquals(
                List.of(4), q.inflight().stream().map(InflightRequest::slot).toList());
    }

    @Test
    void shouldRefuseOrRecoverWhenRegionIsRandomGarbage() {
        // fuzz: keep the header valid, fill the rest (or one area) with random bytes; recovery either recovers or
        // refuses with a JournalException: no other exception, no loop (the class timeout catches a loop)
        Random random = new Random(4);
        int refused = 0;
        for (int round = 0; round < 2000; round++) {
            MemorySegment s = valid();
            long from =
                    switch (round % 4) {
                        case 0 -> JournalDescriptor.CONFIG_GENERATION_OFFSET;
                        case 1 -> activeConfig(s);
                        case 2 -> queue0();
                        default -> queue0() + JournalDescriptor.QUEUE_HEADER_LENGTH;
                    };
            int flips = 1 + random.nextInt(8);
            for (int k = 0; k < flips; k++) {
                long at = from + random.nextInt((int) (s.byteSize() - from));
                s.set(ValueLayout.JAVA_BYTE, at, (byte) random.nextInt());
            }
            guestUsed[0] = random.nextInt(3);
            try {
                RecoveredSession r = JournalRecovery.recover(s, guest);
                SessionJournal.open(s, r);
            } catch (JournalException expected) {
                refused++;
            } catch (RuntimeException e) {
                fail("round " + round + ": " + e, e);
            }
        }
        assertTrue(refused > 100, "refused " + refused + " of 2000 corrupted regions");
    }
}
