package io.vhostd.shm.virtnvme;

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

/** Pins every offset and size of the layout with literal numbers: the spec's tables are the contract. */
@Timeout(10)
class VirtNvmeDescriptorTest {
    private final Arena arena = Arena.ofShared();

    @AfterEach
    void closeArena() {
        arena.close();
    }

    @Test
    void shouldPinHeaderAndDoorbellOffsetsWhenVersion1() {
        assertEquals(0, VirtNvmeDescriptor.MAGIC_OFFSET);
        assertEquals(8, VirtNvmeDescriptor.VERSION_OFFSET);
        assertEquals(12, VirtNvmeDescriptor.QPAIR_ID_OFFSET);
        assertEquals(16, VirtNvmeDescriptor.DEPTH_OFFSET);
        assertEquals(20, VirtNvmeDescriptor.MAX_SEGMENTS_OFFSET);
        assertEquals(24, VirtNvmeDescriptor.LENGTH_OFFSET);
        assertEquals(64, VirtNvmeDescriptor.HEADER_LENGTH);
        assertEquals(64, VirtNvmeDescriptor.SQ_TAIL_OFFSET);
        assertEquals(128, VirtNvmeDescriptor.SQ_HEAD_OFFSET);
        assertEquals(192, VirtNvmeDescriptor.SQ_EVENT_INDEX_OFFSET);
        assertEquals(256, VirtNvmeDescriptor.CQ_HEAD_OFFSET);
        assertEquals(320, VirtNvmeDescriptor.CQ_EVENT_INDEX_OFFSET);
        assertEquals(384, VirtNvmeDescriptor.SQ_OFFSET);
        assertEquals(64, VirtNvmeDescriptor.CACHE_LINE_LENGTH);
    }

    @Test
    void shouldPinEntryOffsetsWhenVersion1() {
        assertEquals(64, VirtNvmeDescriptor.SQE_LENGTH);
        assertEquals(16, VirtNvmeDescriptor.CQE_LENGTH);
        assertEquals(16, VirtNvmeDescriptor.SEGMENT_LENGTH);
        assertEquals(2, VirtNvmeDescriptor.INLINE_SEGMENTS);

        assertEquals(0, VirtNvmeDescriptor.SQE_OPCODE_OFFSET);
        assertEquals(1, VirtNvmeDescriptor.SQE_FLAGS_OFFSET);
        assertEquals(2, VirtNvmeDescriptor.SQE_CID_OFFSET);
        assertEquals(4, VirtNvmeDescriptor.SQE_NSID_OFFSET);
        assertEquals(8, VirtNvmeDescriptor.SQE_OFFSET_BYTES_OFFSET);
        assertEquals(16, VirtNvmeDescriptor.SQE_LENGTH_BYTES_OFFSET);
        assertEquals(20, VirtNvmeDescriptor.SQE_SEGMENT_COUNT_OFFSET);
        assertEquals(22, VirtNvmeDescriptor.SQE_RESERVED_OFFSET);
        assertEquals(32, VirtNvmeDescriptor.SQE_SEGMENTS_OFFSET);

        assertEquals(0, VirtNvmeDescriptor.SEGMENT_REGION_ID_OFFSET);
        assertEquals(4, VirtNvmeDescriptor.SEGMENT_LENGTH_BYTES_OFFSET);
        assertEquals(8, VirtNvmeDescriptor.SEGMENT_REGION_OFFSET_OFFSET);

        assertEquals(0, VirtNvmeDescriptor.CQE_RESULT_OFFSET);
        assertEquals(4, VirtNvmeDescriptor.CQE_RESERVED_OFFSET);
        assertEquals(8, VirtNvmeDescriptor.CQE_SQ_HEAD_OFFSET);
        assertEquals(10, VirtNvmeDescriptor.CQE_SQ_ID_OFFSET);
        assertEquals(12, VirtNvmeDescriptor.CQE_CID_OFFSET);
        assertEquals(14, VirtNvmeDescriptor.CQE_STATUS_OFFSET);
        assertEquals(0, VirtNvmeDescriptor.CQE_STATUS_PHASE_BIT);
        assertEquals(1, VirtNvmeDescriptor.CQE_STATUS_PHASE_MASK);
        assertEquals(1, VirtNvmeDescriptor.CQE_STATUS_FIELD_SHIFT);
        assertEquals(0x7FFF, VirtNvmeDescriptor.CQE_STATUS_FIELD_MASK);
    }

    @Test
    void shouldPinFlagsVersionAndMagicWhenVersion1() {
        assertEquals(0, VirtNvmeDescriptor.SQE_FLAG_SEGMENTS_INDIRECT_BIT);
        assertEquals(0x1, VirtNvmeDescriptor.SQE_FLAG_SEGMENTS_INDIRECT_MASK);
        assertEquals(1, VirtNvmeDescriptor.SQE_FLAG_FUA_BIT);
        assertEquals(0x2, VirtNvmeDescriptor.SQE_FLAG_FUA_MASK);
        assertEquals(2, VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_BIT);
        assertEquals(0x4, VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK);
        assertEquals(0x7, VirtNvmeDescriptor.SQE_FLAGS_DEFINED_MASK);
        assertEquals(0x0001_0100, VirtNvmeDescriptor.VERSION);
        assertEquals(0x5051564E54524956L, VirtNvmeDescriptor.MAGIC);
        final MemorySegment bytes = arena.allocate(8);
        bytes.set(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, VirtNvmeDescriptor.MAGIC);
        assertEquals("VIRTNVQP", new String(bytes.toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII));
        assertEquals(2, VirtNvmeDescriptor.MIN_DEPTH);
        assertEquals(4096, VirtNvmeDescriptor.MAX_DEPTH);
        assertEquals(1, VirtNvmeDescriptor.MIN_MAX_SEGMENTS);
        assertEquals(1024, VirtNvmeDescriptor.MAX_MAX_SEGMENTS);
        assertEquals(65535, VirtNvmeDescriptor.MAX_QPAIR_ID);
    }

    @ParameterizedTest
    @CsvSource({
        // depth, maxSegments, cqOffset, segmentTablesOffset, lengthBytes
        "2,    1,    512,    576,    704",
        "2,    2,    512,    576,    704",
        "4,    3,    640,    704,    960",
        "64,   16,   4480,   5504,   22912",
        "128,  32,   8576,   10624,  78208",
        "4096, 1024, 262528, 328064, 67502464",
    })
    void shouldPinSectionOffsetsWhenGeometryGiven(
            final int depth,
            final int maxSegments,
            final long cqOffset,
            final long segmentTablesOffset,
            final long lengthBytes) {
        assertEquals(cqOffset, VirtNvmeDescriptor.cqOffset(depth));
        assertEquals(segmentTablesOffset, VirtNvmeDescriptor.segmentTablesOffset(depth));
        assertEquals(lengthBytes, VirtNvmeDescriptor.lengthBytes(depth, maxSegments));
    }

    @Test
    void shouldPinEntryAddressesWhenSlotsGiven() {
        assertEquals(384, VirtNvmeDescriptor.sqeOffset(0));
        assertEquals(384 + 5 * 64, VirtNvmeDescriptor.sqeOffset(5));
        assertEquals(4480 + 7 * 16, VirtNvmeDescriptor.cqeOffset(64, 7));
        assertEquals(5504, VirtNvmeDescriptor.indirectSegmentOffset(64, 16, 0, 0));
        assertEquals(5504 + (3 * 16 + 5) * 16, VirtNvmeDescriptor.indirectSegmentOffset(64, 16, 3, 5));
        assertEquals(21888, VirtNvmeDescriptor.cidTimestampsOffset(64, 16));
        assertEquals(16, VirtNvmeDescriptor.CID_TIMESTAMPS_LENGTH);
        assertEquals(0, VirtNvmeDescriptor.CID_DEVICE_SUBMIT_NS_OFFSET);
        assertEquals(8, VirtNvmeDescriptor.CID_DEVICE_COMPLETE_NS_OFFSET);
    }

    @ParameterizedTest
    @CsvSource({
        "0, 1", "1, 1", "3, 1", "6, 1", "8192, 1", "-4, 1", "4, 0", "4, 1025", "4, -1",
    })
    void shouldRejectGeometryWhenOutOfRange(final int depth, final int maxSegments) {
        assertThrows(IllegalArgumentException.class, () -> VirtNvmeDescriptor.lengthBytes(depth, maxSegments));
    }

    @ParameterizedTest
    @CsvSource({
        // eventIndex, newIndex, oldIndex, wake
        "5, 6, 5, true",
        "5, 9, 3, true",
        "5, 5, 4, false",
        "5, 9, 6, false",
        "4, 9, 5, false",
        "0, 0, 0, false",
        // 32-bit wrap: indexes count up forever
        "4294967295, 1, 4294967294, true",
        "0, 1, 4294967295, true",
        "4294967294, 3, 4294967295, false",
        "2, 3, 4294967295, true",
    })
    void shouldMatchVringNeedEventWhenIndexesGiven(
            final long eventIndex, final long newIndex, final long oldIndex, final boolean wake) {
        assertEquals(wake, VirtNvmeDescriptor.needEvent((int) eventIndex, (int) newIndex, (int) oldIndex));
    }

    @Test
    void shouldRejectVersionWhenNotReady() {
        final MemorySegment qp = arena.allocate(VirtNvmeDescriptor.lengthBytes(2, 1), 64);
        final IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> VirtNvmeDescriptor.checkVersion(qp));
        assertTrue(e.getMessage().contains("found version=0"), e.getMessage());
        assertTrue(e.getMessage().contains("expected 1.1.0"), e.getMessage());
    }

    @Test
    void shouldRejectVersionWhenMajorDiffers() {
        final MemorySegment qp = formatted();
        VirtNvmeDescriptor.versionRelease(qp, 0x0002_0000);
        final IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> VirtNvmeDescriptor.checkVersion(qp));
        assertTrue(e.getMessage().contains("found 2.0.0"), e.getMessage());
        assertTrue(e.getMessage().contains("expected major 1"), e.getMessage());
    }

    @Test
    void shouldAcceptVersionWhenOnlyMinorDiffers() {
        final MemorySegment qp = formatted();
        VirtNvmeDescriptor.versionRelease(qp, 0x0001_0300);
        VirtNvmeDescriptor.checkVersion(qp);
        VirtNvmeDescriptor.checkLength(qp);
    }

    @Test
    void shouldRejectLengthWhenStoredLengthDisagrees() {
        final MemorySegment qp = formatted();
        qp.set(VirtNvmeDescriptor.LONG_LE, VirtNvmeDescriptor.LENGTH_OFFSET, 4096L);
        final IllegalStateException e =
                assertThrows(IllegalStateException.class, () -> VirtNvmeDescriptor.checkLength(qp));
        assertTrue(e.getMessage().contains("found length=4096"), e.getMessage());
    }

    @Test
    void shouldRejectLengthWhenMappingShorter() {
        final MemorySegment qp = formatted();
        final MemorySegment shorter = qp.asSlice(0, VirtNvmeDescriptor.lengthBytes(4, 3) - 64);
        assertThrows(IllegalStateException.class, () -> VirtNvmeDescriptor.checkLength(shorter));
    }

    @Test
    void shouldRejectVersionWhenShorterThanHeader() {
        final MemorySegment qp = formatted().asSlice(0, 32);
        assertThrows(IllegalStateException.class, () -> VirtNvmeDescriptor.checkVersion(qp));
    }

    private MemorySegment formatted() {
        final MemorySegment qp = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 3), 64);
        VirtNvmeQueuePair.format(qp, 7, 4, 3);
        return qp;
    }
}
