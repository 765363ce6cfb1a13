package io.vhostd.vhost.virtio;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.HexFormat;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class VirtioBlkConfigTest {

    @Test
    void shouldPinFieldOffsetsToVirtio12Layout() {
        assertEquals(60, VirtioBlkConfig.LENGTH_BYTES);
        assertEquals(0, VirtioBlkConfig.CAPACITY_OFFSET);
        assertEquals(8, VirtioBlkConfig.SIZE_MAX_OFFSET);
        assertEquals(12, VirtioBlkConfig.SEG_MAX_OFFSET);
        assertEquals(16, VirtioBlkConfig.GEOMETRY_CYLINDERS_OFFSET);
        assertEquals(18, VirtioBlkConfig.GEOMETRY_HEADS_OFFSET);
        assertEquals(19, VirtioBlkConfig.GEOMETRY_SECTORS_OFFSET);
        assertEquals(20, VirtioBlkConfig.BLK_SIZE_OFFSET);
        assertEquals(24, VirtioBlkConfig.PHYSICAL_BLOCK_EXP_OFFSET);
        assertEquals(25, VirtioBlkConfig.ALIGNMENT_OFFSET_OFFSET);
        assertEquals(26, VirtioBlkConfig.MIN_IO_SIZE_OFFSET);
        assertEquals(28, VirtioBlkConfig.OPT_IO_SIZE_OFFSET);
        assertEquals(32, VirtioBlkConfig.WRITEBACK_OFFSET);
        assertEquals(33, VirtioBlkConfig.UNUSED0_OFFSET);
        assertEquals(34, VirtioBlkConfig.NUM_QUEUES_OFFSET);
        assertEquals(36, VirtioBlkConfig.MAX_DISCARD_SECTORS_OFFSET);
        assertEquals(40, VirtioBlkConfig.MAX_DISCARD_SEG_OFFSET);
        assertEquals(44, VirtioBlkConfig.DISCARD_SECTOR_ALIGNMENT_OFFSET);
        assertEquals(48, VirtioBlkConfig.MAX_WRITE_ZEROES_SECTORS_OFFSET);
        assertEquals(52, VirtioBlkConfig.MAX_WRITE_ZEROES_SEG_OFFSET);
        assertEquals(56, VirtioBlkConfig.WRITE_ZEROES_MAY_UNMAP_OFFSET);
        assertEquals(57, VirtioBlkConfig.UNUSED1_OFFSET);
    }

    @Test
    void shouldEncodeEveryFieldLittleEndianWhenConfigGiven() {
        VirtioBlkConfig c = new VirtioBlkConfig(
                0x0102030405060708L,
                0x11121314,
                0x21222324,
                0x31323334,
                0x41,
                0x5152,
                0x61626364,
                1,
                0x7172,
                0x81828384,
                0x91929394,
                0xA1A2A3A4,
                0xB1B2B3B4,
                0xC1C2C3C4,
                1);

        String expected = "0807060504030201" // capacity
                + "14131211" // size_max
                + "24232221" // seg_max
                + "00000000" // geometry
                + "34333231" // blk_size
                + "41" + "00" + "5251" // physical_block_exp, alignment_offset, min_io_size
                + "64636261" // opt_io_size
                + "01" + "00" + "7271" // writeback, unused0, num_queues
                + "84838281" // max_discard_sectors
                + "94939291" // max_discard_seg
                + "a4a3a2a1" // discard_sector_alignment
                + "b4b3b2b1" // max_write_zeroes_sectors
                + "c4c3c2c1" // max_write_zeroes_seg
                + "01" + "000000"; // write_zeroes_may_unmap, unused1
        assertEquals(expected, HexFormat.of().formatHex(c.toBytes()));
        assertEquals(60, c.toBytes().length);
    }

    @Test
    void shouldEncodeZerosWhenConfigEmpty() {
        assertArrayEquals(new byte[60], new VirtioBlkConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).toBytes());
    }

    @Test
    void shouldRejectConfigWhenFieldDoesNotFitItsWidth() {
        assertThrows(IllegalArgumentException.class, () -> config(-1, 0, 0, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> config(0, 256, 0, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> config(0, 0, 0x10000, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> config(0, 0, 0, 2 * 128, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> config(0, 0, 0, 0, 0x10000, 0));
        assertThrows(IllegalArgumentException.class, () -> config(0, 0, 0, 0, 0, -1));
    }

    private static VirtioBlkConfig config(
            long capacity, int physicalBlockExp, int minIoSize, int writeback, int numQueues, int mayUnmap) {
        return new VirtioBlkConfig(
                capacity, 0, 0, 512, physicalBlockExp, minIoSize, 0, writeback, numQueues, 0, 0, 0, 0, 0, mayUnmap);
    }

    @Test
    void shouldPinVirtioBlkConstantsToSpecValues() {
        assertEquals(0, VirtioBlk.VIRTIO_BLK_T_IN);
        assertEquals(1, VirtioBlk.VIRTIO_BLK_T_OUT);
        assertEquals(4, VirtioBlk.VIRTIO_BLK_T_FLUSH);
        assertEquals(8, VirtioBlk.VIRTIO_BLK_T_GET_ID);
        assertEquals(10, VirtioBlk.VIRTIO_BLK_T_GET_LIFETIME);
        assertEquals(11, VirtioBlk.VIRTIO_BLK_T_DISCARD);
        assertEquals(13, VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES);
        assertEquals(14, VirtioBlk.VIRTIO_BLK_T_SECURE_ERASE);
        assertEquals(0, VirtioBlk.VIRTIO_BLK_S_OK);
        assertEquals(1, VirtioBlk.VIRTIO_BLK_S_IOERR);
        assertEquals(2, VirtioBlk.VIRTIO_BLK_S_UNSUPP);
        assertEquals(1, VirtioBlk.VIRTIO_BLK_F_SIZE_MAX_BIT);
        assertEquals(2, VirtioBlk.VIRTIO_BLK_F_SEG_MAX_BIT);
        assertEquals(4, VirtioBlk.VIRTIO_BLK_F_GEOMETRY_BIT);
        assertEquals(5, VirtioBlk.VIRTIO_BLK_F_RO_BIT);
        assertEquals(6, VirtioBlk.VIRTIO_BLK_F_BLK_SIZE_BIT);
        assertEquals(9, VirtioBlk.VIRTIO_BLK_F_FLUSH_BIT);
        assertEquals(10, VirtioBlk.VIRTIO_BLK_F_TOPOLOGY_BIT);
        assertEquals(11, VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_BIT);
        assertEquals(12, VirtioBlk.VIRTIO_BLK_F_MQ_BIT);
        assertEquals(13, VirtioBlk.VIRTIO_BLK_F_DISCARD_BIT);
        assertEquals(14, VirtioBlk.VIRTIO_BLK_F_WRITE_ZEROES_BIT);
        assertEquals(28, VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_BIT);
        assertEquals(29, VirtioBlk.VIRTIO_RING_F_EVENT_IDX_BIT);
        assertEquals(32, VirtioBlk.VIRTIO_F_VERSION_1_BIT);
        assertEquals(34, VirtioBlk.VIRTIO_F_RING_PACKED_BIT);
        assertEquals(0x1_0000_0000L, VirtioBlk.VIRTIO_F_VERSION_1_MASK);
        assertEquals(0x1000_0000L, VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK);
        assertEquals(0x2000_0000L, VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK);
        assertEquals(0x4_0000_0000L, VirtioBlk.VIRTIO_F_RING_PACKED_MASK);
        assertEquals(0x200L, VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK);
        assertEquals(0x6000L, VirtioBlk.VIRTIO_BLK_F_DISCARD_MASK | VirtioBlk.VIRTIO_BLK_F_WRITE_ZEROES_MASK);
        assertEquals(20, VirtioBlk.VIRTIO_BLK_ID_BYTES);
        assertEquals(512, VirtioBlk.SECTOR_SIZE);
        assertEquals("VIRTIO_BLK_T_GET_ID", VirtioBlk.typeName(8));
        assertEquals("UNKNOWN(4294967295)", VirtioBlk.typeName(-1));
    }

    @Test
    void shouldPinSplitRingLayoutToVirtio12() {
        assertEquals(16, SplitRingDescriptor.VIRTQ_DESC_LENGTH_BYTES);
        assertEquals(0, SplitRingDescriptor.VIRTQ_DESC_ADDR_OFFSET);
        assertEquals(8, SplitRingDescriptor.VIRTQ_DESC_LEN_OFFSET);
        assertEquals(12, SplitRingDescriptor.VIRTQ_DESC_FLAGS_OFFSET);
        assertEquals(14, SplitRingDescriptor.VIRTQ_DESC_NEXT_OFFSET);
        assertEquals(1, SplitRingDescriptor.VIRTQ_DESC_F_NEXT);
        assertEquals(2, SplitRingDescriptor.VIRTQ_DESC_F_WRITE);
        assertEquals(4, SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT);
        assertEquals(2, SplitRingDescriptor.VIRTQ_AVAIL_IDX_OFFSET);
        assertEquals(4, SplitRingDescriptor.VIRTQ_AVAIL_RING_OFFSET);
        assertEquals(4, SplitRingDescriptor.VIRTQ_USED_RING_OFFSET);
        assertEquals(8, SplitRingDescriptor.VIRTQ_USED_ELEM_LENGTH_BYTES);
        assertEquals(4096, SplitRingDescriptor.descTableLengthBytes(256));
        assertEquals(6 + 2 * 256, SplitRingDescriptor.availRingLengthBytes(256, true));
        assertEquals(4 + 2 * 256, SplitRingDescriptor.availRingLengthBytes(256, false));
        assertEquals(6 + 8 * 256, SplitRingDescriptor.usedRingLengthBytes(256, true));
        assertEquals(4 + 2 * 256, SplitRingDescriptor.usedEventOffset(256));
        assertEquals(4 + 8 * 256, SplitRingDescriptor.availEventOffset(256));
    }
}
