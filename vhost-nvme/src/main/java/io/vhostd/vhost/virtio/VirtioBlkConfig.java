package io.vhostd.vhost.virtio;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code struct virtio_blk_config} (virtio 1.2 §5.2.4) up to and including {@code write_zeroes_may_unmap} and its
 * padding, encoded little endian for {@code VHOST_USER_GET_CONFIG}. {@code geometry}, {@code alignment_offset} and
 * the padding bytes are 0; secure-erase and zoned fields (offset 60 on) are not encoded.
 *
 * <pre>
 *  offset  width  field
 *       0      8  capacity                  (512-byte sectors)
 *       8      4  size_max                  (VIRTIO_BLK_F_SIZE_MAX)
 *      12      4  seg_max                   (VIRTIO_BLK_F_SEG_MAX)
 *      16      2  geometry.cylinders        (0)
 *      18      1  geometry.heads            (0)
 *      19      1  geometry.sectors          (0)
 *      20      4  blk_size                  (VIRTIO_BLK_F_BLK_SIZE)
 *      24      1  topology.physical_block_exp
 *      25      1  topology.alignment_offset (0)
 *      26      2  topology.min_io_size      (blocks)
 *      28      4  topology.opt_io_size      (blocks)
 *      32      1  writeback                 (VIRTIO_BLK_F_CONFIG_WCE)
 *      33      1  unused0                   (0)
 *      34      2  num_queues                (VIRTIO_BLK_F_MQ)
 *      36      4  max_discard_sectors       (VIRTIO_BLK_F_DISCARD)
 *      40      4  max_discard_seg
 *      44      4  discard_sector_alignment
 *      48      4  max_write_zeroes_sectors  (VIRTIO_BLK_F_WRITE_ZEROES)
 *      52      4  max_write_zeroes_seg
 *      56      1  write_zeroes_may_unmap
 *      57      3  unused1                   (0)
 *      60         end
 * </pre>
 *
 * @param capacitySectors device size in 512-byte sectors, &gt;= 0
 * @param sizeMax largest segment in bytes (u32)
 * @param segMax most segments per request (u32)
 * @param blkSize logical block size in bytes (u32)
 * @param physicalBlockExp log2(logical blocks per physical block), u8
 * @param minIoSize suggested minimum I/O size in logical blocks, u16
 * @param optIoSize optimal I/O size in logical blocks (u32)
 * @param writeback 1 writeback cache, 0 writethrough, u8
 * @param numQueues number of request queues, u16
 * @param maxDiscardSectors (u32)
 * @param maxDiscardSeg (u32)
 * @param discardSectorAlignment in sectors (u32)
 * @param maxWriteZeroesSectors (u32)
 * @param maxWriteZeroesSeg (u32)
 * @param writeZeroesMayUnmap 1 if write zeroes may deallocate, u8
 */
public record VirtioBlkConfig(
        long capacitySectors,
        int sizeMax,
        int segMax,
        int blkSize,
        int physicalBlockExp,
        int minIoSize,
        int optIoSize,
        int writeback,
        int numQueues,
        int maxDiscardSectors,
        int maxDiscardSeg,
        int discardSectorAlignment,
        int maxWriteZeroesSectors,
        int maxWriteZeroesSeg,
        int writeZeroesMayUnmap) {

    /** Encoded length. */
    public static final int LENGTH_BYTES = 60;

    /** Offset of {@code capacity}. */
    public static final int CAPACITY_OFFSET = 0;
    /** Offset of {@code size_max}. */
    public static final int SIZE_MAX_OFFSET = 8;
    /** Offset of {@code seg_max}. */
    public static final int SEG_MAX_OFFSET = 12;
    /** Offset of {@code geometry.cylinders}. */
    public static final int GEOMETRY_CYLINDERS_OFFSET = 16;
    /** Offset of {@code geometry.heads}. */
    public static final int GEOMETRY_HEADS_OFFSET = 18;
    /** Offset of {@code geometry.sectors}. */
    public static final int GEOMETRY_SECTORS_OFFSET = 19;
    /** Offset of {@code blk_size}. */
    public static final int BLK_SIZE_OFFSET = 20;
    /** Offset of {@code topology.physical_block_exp}. */
    public static final int PHYSICAL_BLOCK_EXP_OFFSET = 24;
    /** Offset of {@code topology.alignment_offset}. */
    public static final int ALIGNMENT_OFFSET_OFFSET = 25;
    /** Offset of {@code topology.min_io_size}. */
    public static final int MIN_IO_SIZE_OFFSET = 26;
    /** Offset of {@code topology.opt_io_size}. */
    public static final int OPT_IO_SIZE_OFFSET = 28;
    /** Offset of {@code writeback}. */
    public static final int WRITEBACK_OFFSET = 32;
    /** Offset of {@code unused0}. */
    public static final int UNUSED0_OFFSET = 33;
    /** Offset of {@code num_queues}. */
    public static final int NUM_QUEUES_OFFSET = 34;
    /** Offset of {@code max_discard_sectors}. */
    public static final int MAX_DISCARD_SECTORS_OFFSET = 36;
    /** Offset of {@code max_discard_seg}. */
    public static final int MAX_DISCARD_SEG_OFFSET = 40;
    /** Offset of {@code discard_sector_alignment}. */
    public static final int DISCARD_SECTOR_ALIGNMENT_OFFSET = 44;
    /** Offset of {@code max_write_zeroes_sectors}. */
    public static final int MAX_WRITE_ZEROES_SECTORS_OFFSET = 48;
    /** Offset of {@code max_write_zeroes_seg}. */
    public static final int MAX_WRITE_ZEROES_SEG_OFFSET = 52;
    /** Offset of {@code write_zeroes_may_unmap}. */
    public static final int WRITE_ZEROES_MAY_UNMAP_OFFSET = 56;
    /** Offset of {@code unused1}. */
    public static final int UNUSED1_OFFSET = 57;

    private static final ValueLayout.OfShort LE_U16 =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** @throws IllegalArgumentException if a field does not fit its width (u8 / u16) or capacity is negative */
    public VirtioBlkConfig {
        if (capacitySectors < 0) {
            throw new IllegalArgumentException("capacitySectors must be >= 0, got " + capacitySectors);
        }
        checkU8("physicalBlockExp", physicalBlockExp);
        checkU16("minIoSize", minIoSize);
        checkU8("writeback", writeback);
        checkU16("numQueues", numQueues);
        checkU8("writeZeroesMayUnmap", writeZeroesMayUnmap);
    }

    private static void checkU8(String name, int value) {
        if (value < 0 || value > 0xFF) {
            throw new IllegalArgumentException(name + " must fit a u8, got " + value);
        }
    }

    private static void checkU16(String name, int value) {
        if (value < 0 || value > 0xFFFF) {
            throw new IllegalArgumentException(name + " must fit a u16, got " + value);
        }
    }

    /** The {@link #LENGTH_BYTES}-byte little-endian encoding (a new array). */
    public byte[] toBytes() {
        byte[] out = new byte[LENGTH_BYTES];
        MemorySegment m = MemorySegment.ofArray(out);
        m.set(LE_U64, CAPACITY_OFFSET, capacitySectors);
        m.set(LE_U32, SIZE_MAX_OFFSET, sizeMax);
        m.set(LE_U32, SEG_MAX_OFFSET, segMax);
        m.set(LE_U32, BLK_SIZE_OFFSET, blkSize);
        m.set(ValueLayout.JAVA_BYTE, PHYSICAL_BLOCK_EXP_OFFSET, (byte) physicalBlockExp);
        m.set(LE_U16, MIN_IO_SIZE_OFFSET, (short) minIoSize);
        m.set(LE_U32, OPT_IO_SIZE_OFFSET, optIoSize);
        m.set(ValueLayout.JAVA_BYTE, WRITEBACK_OFFSET, (byte) writeback);
        m.set(LE_U16, NUM_QUEUES_OFFSET, (short) numQueues);
        m.set(LE_U32, MAX_DISCARD_SECTORS_OFFSET, maxDiscardSectors);
        m.set(LE_U32, MAX_DISCARD_SEG_OFFSET, maxDiscardSeg);
        m.set(LE_U32, DISCARD_SECTOR_ALIGNMENT_OFFSET, discardSectorAlignment);
        m.set(LE_U32, MAX_WRITE_ZEROES_SECTORS_OFFSET, maxWriteZeroesSectors);
        m.set(LE_U32, MAX_WRITE_ZEROES_SEG_OFFSET, maxWriteZeroesSeg);
        m.set(ValueLayout.JAVA_BYTE, WRITE_ZEROES_MAY_UNMAP_OFFSET, (byte) writeZeroesMayUnmap);
        return out;
    }
}
