package io.vhostd.journal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Pins every offset and size of the journal layout with literal numbers: the spec's tables are the contract. */
@Timeout(10)
class JournalDescriptorTest {
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void closeArena() {
        arena.close();
    }

    @Test
    void shouldPinHeaderOffsetsWhenVersion1() {
        assertEquals(0, JournalDescriptor.MAGIC_OFFSET);
        assertEquals(8, JournalDescriptor.VERSION_OFFSET);
        assertEquals(12, JournalDescriptor.MAX_QUEUES_OFFSET);
        assertEquals(16, JournalDescriptor.MAX_SLOTS_OFFSET);
        assertEquals(20, JournalDescriptor.ENTRY_LENGTH_OFFSET);
        assertEquals(24, JournalDescriptor.LENGTH_OFFSET);
        assertEquals(64, JournalDescriptor.HEADER_LENGTH);
        assertEquals(64, JournalDescriptor.CONFIG_GENERATION_OFFSET);
        assertEquals(128, JournalDescriptor.CONFIG_COPIES_OFFSET);
        assertEquals(64, JournalDescriptor.CACHE_LINE_LENGTH);
    }

    @Test
    void shouldPinSessionAndMemoryRegionOffsetsWhenVersion1() {
        assertEquals(0, JournalDescriptor.SESSION_FEATURES_OFFSET);
        assertEquals(8, JournalDescriptor.SESSION_PROTOCOL_FEATURES_OFFSET);
        assertEquals(16, JournalDescriptor.SESSION_FLAGS_OFFSET);
        assertEquals(20, JournalDescriptor.SESSION_MEM_REGION_COUNT_OFFSET);
        assertEquals(32, JournalDescriptor.SESSION_MEM_REGIONS_OFFSET);
        assertEquals(1344, JournalDescriptor.SESSION_CONFIG_LENGTH);
        assertEquals(32, JournalDescriptor.MAX_MEM_REGIONS);
        assertEquals(40, JournalDescriptor.MEM_REGION_LENGTH);
        assertEquals(0, JournalDescriptor.MEM_REGION_GUEST_PHYS_ADDR_OFFSET);
        assertEquals(8, JournalDescriptor.MEM_REGION_MEMORY_SIZE_OFFSET);
        assertEquals(16, JournalDescriptor.MEM_REGION_USER_ADDR_OFFSET);
        assertEquals(24, JournalDescriptor.MEM_REGION_MMAP_OFFSET_OFFSET);
        assertEquals(32, JournalDescriptor.MEM_REGION_ID_OFFSET);
        assertEquals(1312, JournalDescriptor.memRegionOffset(32));
        assertEquals(0, JournalDescriptor.SESSION_FEATURES_SET_BIT);
        assertEquals(1, JournalDescriptor.SESSION_FEATURES_SET_MASK);
        assertEquals(1, JournalDescriptor.SESSION_PROTOCOL_FEATURES_SET_BIT);
        assertEquals(2, JournalDescriptor.SESSION_PROTOCOL_FEATURES_SET_MASK);
        assertEquals(2, JournalDescriptor.SESSION_MEM_TABLE_SET_BIT);
        assertEquals(4, JournalDescriptor.SESSION_MEM_TABLE_SET_MASK);
        assertEquals(7, JournalDescriptor.SESSION_FLAGS_DEFINED_MASK);
    }

    @Test
    void shouldPinVringRecordOffsetsWhenVersion1() {
        assertEquals(128, JournalDescriptor.VRING_CONFIG_LENGTH);
        assertEquals(0, JournalDescriptor.VRING_FLAGS_OFFSET);
        assertEquals(4, JournalDescriptor.VRING_SIZE_OFFSET);
        assertEquals(8, JournalDescriptor.VRING_SLOT_COUNT_OFFSET);
        assertEquals(12, JournalDescriptor.VRING_ADDR_FLAGS_OFFSET);
        assertEquals(16, JournalDescriptor.VRING_DESC_GPA_OFFSET);
        assertEquals(24, JournalDescriptor.VRING_AVAIL_GPA_OFFSET);
        assertEquals(32, JournalDescriptor.VRING_USED_GPA_OFFSET);
        assertEquals(40, JournalDescriptor.VRING_LOG_GUEST_ADDR_OFFSET);
        assertEquals(48, JournalDescriptor.VRING_START_FETCH_SEQ_OFFSET);
        assertEquals(56, JournalDescriptor.VRING_START_AVAIL_IDX_OFFSET);
        assertEquals(60, JournalDescriptor.VRING_START_USED_IDX_OFFSET);
        assertEquals(64, JournalDescriptor.VRING_START_BATCH_SEQ_OFFSET);
        assertEquals(1, JournalDescriptor.VRING_CONFIGURED_MASK);
        assertEquals(2, JournalDescriptor.VRING_STARTED_MASK);
        assertEquals(4, JournalDescriptor.VRING_ENABLED_MASK);
        assertEquals(8, JournalDescriptor.VRING_PACKED_MASK);
        assertEquals(16, JournalDescriptor.VRING_ENTRY_COPIES_MASK);
        assertEquals(31, JournalDescriptor.VRING_FLAGS_DEFINED_MASK);
        assertEquals(1344, JournalDescriptor.vringConfigOffset(0));
        assertEquals(1472, JournalDescriptor.vringConfigOffset(1));
    }

    @Test
    void shouldPinQueueAndSlotOffsetsWhenVersion1() {
        assertEquals(0, JournalDescriptor.QUEUE_FETCH_WORD_OFFSET);
        assertEquals(8, JournalDescriptor.QUEUE_USED_WORD_OFFSET);
        assertEquals(16, JournalDescriptor.QUEUE_BATCH_WORD_OFFSET);
        assertEquals(24, JournalDescriptor.QUEUE_BATCH_COUNT_OFFSET);
        assertEquals(64, JournalDescriptor.QUEUE_HEADER_LENGTH);
        assertEquals(0, JournalDescriptor.SLOT_SEQ_OFFSET);
        assertEquals(16, JournalDescriptor.SLOT_ENTRY_OFFSET);
        assertEquals(16, JournalDescriptor.SLOT_HEADER_LENGTH);
        assertEquals(64, JournalDescriptor.ENTRY_COPY_LENGTH);
        assertEquals(2, JournalDescriptor.BATCH_ENTRY_LENGTH);
        assertEquals(16, JournalDescriptor.slotLengthBytes(0));
        assertEquals(80, JournalDescriptor.slotLengthBytes(64));
        assertEquals(64 + 3 * 80, JournalDescriptor.slotOffset(64, 3));
        assertEquals(48, JournalDescriptor.SEQ_BITS);
        assertEquals(0xFFFF_FFFF_FFFFL, JournalDescriptor.SEQ_MASK);
        assertEquals(1L << 47, JournalDescriptor.SEQ_WINDOW);
        assertEquals(1024, JournalDescriptor.MAX_QUEUES);
        assertEquals(32768, JournalDescriptor.MAX_SLOTS);
    }

    @ParameterizedTest
    @CsvSource({
        // maxQueues, maxSlots, entryLength, configLength, queuesOffset, batchListOffset, queueLength, length
        "1, 1, 0, 1472, 3072, 128, 192, 3264",
        "1, 128, 0, 1472, 3072, 2112, 2368, 5440",
        "2, 128, 64, 1600, 3328, 10304, 10560, 24448",
        "3, 8, 64, 1728, 3584, 704, 768, 5888",
        "16, 1024, 0, 3392, 6912, 16448, 18496, 302848",
        "1024, 32768, 64, 132416, 264960, 2621504, 2687040, 2751793920"
    })
    void shouldComputeLengthsWhenGeometryGiven(
            int maxQueues,
            int maxSlots,
            int entryLength,
            long configLength,
            long queuesOffset,
            long batchListOffset,
            long queueLength,
            long length) {
        assertEquals(configLength, JournalDescriptor.configLengthBytes(maxQueues));
        assertEquals(queuesOffset, JournalDescriptor.queuesOffset(maxQueues));
        assertEquals(batchListOffset, JournalDescriptor.batchListOffset(maxSlots, entryLength));
        assertEquals(queueLength, JournalDescriptor.queueLengthBytes(maxSlots, entryLength));
        assertEquals(length, JournalDescriptor.lengthBytes(maxQueues, maxSlots, entryLength));
        assertEquals(0, length % 64);
    }

    @Test
    void shouldSpellVhostdjlWhenMagicReadAsBytes() {
        MemorySegment s = arena.allocate(8);
        s.set(ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN), 0, JournalDescriptor.MAGIC);
        assertEquals("VHOSTDJL", new String(s.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII));
        assertEquals(0x00010200, JournalDescriptor.VERSION, "1.2.0");
    }

    @Test
    void shouldPackCommitWordsWhenEncoded() {
        long fw = JournalDescriptor.fetchWord(0xABCD_1234_5678L, 0xFFFE);
        assertEquals(0xABCD_1234_5678_FFFEL, fw);
        assertEquals(0xABCD_1234_5678L, JournalDescriptor.fetchSeq(fw));
        assertEquals(0xFFFE, JournalDescriptor.fetchLastAvailIdx(fw));
        long uw = JournalDescriptor.usedWord(0x8000_0001, 0x8005);
        assertEquals(0x8000_0001_0000_8005L, uw);
        assertEquals(0x8000_0001, JournalDescriptor.wordBatchSeq(uw));
        assertEquals(0x8005, JournalDescriptor.wordUsedIdx(uw));
        assertEquals(1, JournalDescriptor.nextSeq(JournalDescriptor.SEQ_MASK));
        assertEquals(2, JournalDescriptor.seqDistance(JournalDescriptor.SEQ_MASK, 1));
    }

    @Test
    void shouldPublishHeaderWhenFormatted() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(2, 16, 64), 64);
        s.fill((byte) 0x5A);
        JournalDescriptor.format(s, 2, 16, 64);
        JournalDescriptor.checkVersion(s);
        JournalDescriptor.checkLength(s);
        assertEquals(2, JournalDescriptor.maxQueues(s));
        assertEquals(16, JournalDescriptor.maxSlots(s));
        assertEquals(64, JournalDescriptor.entryLength(s));
        assertEquals(0, JournalDescriptor.configGenerationAcquire(s));
        assertEquals(0, s.get(ValueLayout.JAVA_BYTE, s.byteSize() - 1), "the whole region is zeroed");
    }

    @Test
    void shouldRefuseWhenVersionIsZeroOrOfAnotherMajor() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(1, 8, 0), 64);
        JournalException notReady = assertThrows(JournalException.class, () -> JournalDescriptor.checkVersion(s));
        assertTrue(notReady.getMessage().contains("not ready"), notReady.getMessage());
        JournalDescriptor.format(s, 1, 8, 0);
        JournalDescriptor.versionRelease(s, 0x00020000);
        JournalException major = assertThrows(JournalException.class, () -> JournalDescriptor.checkVersion(s));
        assertTrue(major.getMessage().contains("found 2.0.0, expected major 1"), major.getMessage());
        JournalDescriptor.versionRelease(s, 0x00010203);
        JournalDescriptor.checkVersion(s); // another minor or patch of major 1 is accepted
    }

    @Test
    void shouldRefuseWhenMagicOrGeometryIsWrong() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(1, 8, 0), 64);
        JournalDescriptor.format(s, 1, 8, 0);
        s.set(ValueLayout.JAVA_LONG, JournalDescriptor.MAGIC_OFFSET, 0x1234L);
        JournalException magic = assertThrows(JournalException.class, () -> JournalDescriptor.checkVersion(s));
        assertTrue(magic.getMessage().contains("magic mismatch"), magic.getMessage());

        JournalDescriptor.format(s, 1, 8, 0);
        s.set(ValueLayout.JAVA_INT, JournalDescriptor.ENTRY_LENGTH_OFFSET, 32);
        JournalException entry = assertThrows(JournalException.class, () -> JournalDescriptor.checkLength(s));
        assertTrue(entry.getMessage().contains("entryLength"), entry.getMessage());

        JournalDescriptor.format(s, 1, 8, 0);
        s.set(ValueLayout.JAVA_LONG, JournalDescriptor.LENGTH_OFFSET, 4096L);
        JournalException length = assertThrows(JournalException.class, () -> JournalDescriptor.checkLength(s));
        assertTrue(length.getMessage().contains("length mismatch"), length.getMessage());

        JournalDescriptor.format(s, 1, 8, 0);
        JournalException shortMap =
                assertThrows(JournalException.class, () -> JournalDescriptor.checkLength(s.asSlice(0, 1024)));
        assertTrue(shortMap.getMessage().contains("too short"), shortMap.getMessage());
    }

    @Test
    void shouldRefuseFormatWhenGeometryOutOfRange() {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(1, 8, 0), 64);
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s, 0, 8, 0));
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s, 1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s, 1, 32769, 0));
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s, 1, 8, 16));
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s, 2, 8, 0));
        assertThrows(IllegalArgumentException.class, () -> JournalDescriptor.format(s.asSlice(8), 1, 1, 0));
    }
}
