package io.vhostd.journal.inflight;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Pins the vhost-user inflight region layout (vhost-user.rst "Inflight I/O tracking") with literal numbers. */
@Timeout(10)
class InflightRegionDescriptorTest {

    @Test
    void shouldPinQueueRegionSplitWhenVhostUserLayout() {
        assertEquals(0, InflightRegionDescriptor.QUEUE_REGION_SPLIT_FEATURES_OFFSET);
        assertEquals(8, InflightRegionDescriptor.QUEUE_REGION_SPLIT_VERSION_OFFSET);
        assertEquals(10, InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_NUM_OFFSET);
        assertEquals(12, InflightRegionDescriptor.QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET);
        assertEquals(14, InflightRegionDescriptor.QUEUE_REGION_SPLIT_USED_IDX_OFFSET);
        assertEquals(16, InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_OFFSET);
        assertEquals(16, InflightRegionDescriptor.DESC_STATE_SPLIT_LENGTH);
        assertEquals(0, InflightRegionDescriptor.DESC_STATE_SPLIT_INFLIGHT_OFFSET);
        assertEquals(1, InflightRegionDescriptor.DESC_STATE_SPLIT_PADDING_OFFSET);
        assertEquals(6, InflightRegionDescriptor.DESC_STATE_SPLIT_NEXT_OFFSET);
        assertEquals(8, InflightRegionDescriptor.DESC_STATE_SPLIT_COUNTER_OFFSET);
    }

    @Test
    void shouldPinQueueRegionPackedWhenVhostUserLayout() {
        assertEquals(0, InflightRegionDescriptor.QUEUE_REGION_PACKED_FEATURES_OFFSET);
        assertEquals(8, InflightRegionDescriptor.QUEUE_REGION_PACKED_VERSION_OFFSET);
        assertEquals(10, InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_NUM_OFFSET);
        assertEquals(12, InflightRegionDescriptor.QUEUE_REGION_PACKED_FREE_HEAD_OFFSET);
        assertEquals(14, InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET);
        assertEquals(16, InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_IDX_OFFSET);
        assertEquals(18, InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET);
        assertEquals(20, InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET);
        assertEquals(21, InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET);
        assertEquals(22, InflightRegionDescriptor.QUEUE_REGION_PACKED_PADDING_OFFSET);
        assertEquals(32, InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_OFFSET);
        assertEquals(32, InflightRegionDescriptor.DESC_STATE_PACKED_LENGTH);
        assertEquals(0, InflightRegionDescriptor.DESC_STATE_PACKED_INFLIGHT_OFFSET);
        assertEquals(1, InflightRegionDescriptor.DESC_STATE_PACKED_PADDING_OFFSET);
        assertEquals(2, InflightRegionDescriptor.DESC_STATE_PACKED_NEXT_OFFSET);
        assertEquals(4, InflightRegionDescriptor.DESC_STATE_PACKED_LAST_OFFSET);
        assertEquals(6, InflightRegionDescriptor.DESC_STATE_PACKED_NUM_OFFSET);
        assertEquals(8, InflightRegionDescriptor.DESC_STATE_PACKED_COUNTER_OFFSET);
        assertEquals(16, InflightRegionDescriptor.DESC_STATE_PACKED_ID_OFFSET);
        assertEquals(18, InflightRegionDescriptor.DESC_STATE_PACKED_FLAGS_OFFSET);
        assertEquals(20, InflightRegionDescriptor.DESC_STATE_PACKED_LEN_OFFSET);
        assertEquals(24, InflightRegionDescriptor.DESC_STATE_PACKED_ADDR_OFFSET);
        assertEquals(7, InflightRegionDescriptor.VIRTQ_DESC_F_AVAIL_BIT);
        assertEquals(0x80, InflightRegionDescriptor.VIRTQ_DESC_F_AVAIL_MASK);
        assertEquals(15, InflightRegionDescriptor.VIRTQ_DESC_F_USED_BIT);
        assertEquals(0x8000, InflightRegionDescriptor.VIRTQ_DESC_F_USED_MASK);
        assertEquals(64, InflightRegionDescriptor.INFLIGHT_ALIGNMENT);
        assertEquals(1, InflightRegionDescriptor.INFLIGHT_VERSION);
    }

    @ParameterizedTest
    @CsvSource({
        // queueSize, split region, packed region
        "1, 64, 64",
        "2, 64, 128",
        "3, 64, 128",
        "5, 128, 192",
        "128, 2112, 4160",
        "256, 4160, 8256",
        "1024, 16448, 32832",
        "32768, 524352, 1048640"
    })
    void shouldSizeQueueRegionsWhenLibvhostUserAndDpdkFormulas(int queueSize, long split, long packed) {
        assertEquals(split, InflightRegionDescriptor.queueRegionSplitLengthBytes(queueSize));
        assertEquals(packed, InflightRegionDescriptor.queueRegionPackedLengthBytes(queueSize));
    }

    @Test
    void shouldEqualLibvhostUserAndDpdkFormulasWhenEveryQueueSize() {
        for (int q = 1; q <= 32768; q++) {
            // libvhost-user vu_inflight_queue_size: ALIGN_UP(sizeof(VuDescStateSplit) * queue_size + sizeof(u16), 64)
            long libvhostUser = alignUp(16L * q + 2);
            // DPDK get_pervq_shm_size_split: ALIGN(sizeof(desc) * queue_size + sizeof(u64) + sizeof(u16) * 4, 64)
            long dpdkSplit = alignUp(16L * q + 8 + 2 * 4);
            // DPDK get_pervq_shm_size_packed: ALIGN(32 * queue_size + sizeof(u64) + sizeof(u16) * 6 + 9, 64)
            long dpdkPacked = alignUp(32L * q + 8 + 2 * 6 + 9);
            assertEquals(libvhostUser, InflightRegionDescriptor.queueRegionSplitLengthBytes(q), "split " + q);
            assertEquals(dpdkSplit, InflightRegionDescriptor.queueRegionSplitLengthBytes(q), "split " + q);
            assertEquals(dpdkPacked, InflightRegionDescriptor.queueRegionPackedLengthBytes(q), "packed " + q);
        }
    }

    @Test
    void shouldSliceQueueRegionsWhenBufferCoversThem() {
        assertEquals(2 * 2112, InflightRegionDescriptor.mmapSizeBytes(2, 128, false));
        assertEquals(4 * 4160, InflightRegionDescriptor.mmapSizeBytes(4, 128, true));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(InflightRegionDescriptor.mmapSizeBytes(2, 128, false), 64);
            MemorySegment q1 = InflightRegionDescriptor.queueRegion(buffer, 1, 128, false);
            assertEquals(buffer.address() + 2112, q1.address());
            assertEquals(2112, q1.byteSize());
            assertThrows(
                    IllegalArgumentException.class, () -> InflightRegionDescriptor.queueRegion(buffer, 2, 128, false));
            assertThrows(
                    IllegalArgumentException.class, () -> InflightRegionDescriptor.queueRegion(buffer, 1, 128, true));
            assertThrows(
                    IllegalArgumentException.class,
                    () -> InflightRegionDescriptor.queueRegion(buffer.asSlice(8), 0, 64, false));
        }
        assertThrows(IllegalArgumentException.class, () -> InflightRegionDescriptor.mmapSizeBytes(0, 128, false));
        assertThrows(IllegalArgumentException.class, () -> InflightRegionDescriptor.mmapSizeBytes(1, 0, false));
        assertThrows(IllegalArgumentException.class, () -> InflightRegionDescriptor.mmapSizeBytes(1, 32769, true));
    }

    private static long alignUp(long n) {
        return (n + 63) / 64 * 64;
    }
}
