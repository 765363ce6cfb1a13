package io.vhostd.journal.inflight;

import java.lang.foreign.MemorySegment;

/**
 * Layout of the vhost-user inflight region ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}), exactly as
 * {@code docs/interop/vhost-user.rst} "Inflight I/O tracking" lays it out; {@code journal/spec/journal.md} §9 is the
 * normative summary with the writer's and reader's steps.
 *
 * <p>The back-end allocates the buffer ({@code VHOST_USER_GET_INFLIGHT_FD}), the front-end keeps the fd and hands it
 * back after the back-end restarts ({@code VHOST_USER_SET_INFLIGHT_FD}). The buffer is {@code queue0 region | queue1
 * region | ... | queueN region}, every region the same length, each starting on a 64-byte boundary
 * ({@code INFLIGHT_ALIGNMENT}). Numbers are in the machine's native byte order (vhost-user.rst "Message
 * Specification": "All numbers are in the machine native byte order").
 *
 * <p>Split virtqueue region ({@code QueueRegionSplit}, 16-byte header, then {@code desc_num} x {@code DescStateSplit}):
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                        features (u64, 0)                      |
 *    |                                                               |
 *    +-------------------------------+-------------------------------+
 *  8 |   version (u16, 1; 0 = new)   |    desc_num (u16, queue size) |
 *    +-------------------------------+-------------------------------+
 * 12 |     last_batch_head (u16)     |          used_idx (u16)       |
 *    +-------------------------------+-------------------------------+
 * 16 |                      desc[0] (DescStateSplit)                 |
 *    ...                                                           ...
 *
 * DescStateSplit, 16 bytes, indexed by head descriptor index:
 *    +---------------+-----------------------------------------------+
 *  0 | inflight (u8) |                padding[5]                     |
 *    +---------------+-------------------------------+---------------+
 *  4 |          padding (cont.)      |           next (u16)          |
 *    +-------------------------------+-------------------------------+
 *  8 |                        counter (u64)                          |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>Packed virtqueue region ({@code QueueRegionPacked}, 32-byte header, then {@code desc_num} x {@code
 * DescStatePacked}):
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                        features (u64, 0)                      |
 *    |                                                               |
 *    +-------------------------------+-------------------------------+
 *  8 |   version (u16, 1; 0 = new)   |     desc_num (u16, queue size)|
 *    +-------------------------------+-------------------------------+
 * 12 |         free_head (u16)       |      old_free_head (u16)      |
 *    +-------------------------------+-------------------------------+
 * 16 |          used_idx (u16)       |       old_used_idx (u16)      |
 *    +---------------+---------------+-------------------------------+
 * 20 | used_wrap_cnt | old_used_wrap |       padding[7] ...          |
 *    +---------------+---------------+-------------------------------+
 * 24 |                  ... padding (cont., to byte 28)              |
 *    +---------------------------------------------------------------+
 * 28 |        (alignment of desc[] to 8: bytes 29..31 unused)        |
 *    +---------------------------------------------------------------+
 * 32 |                      desc[0] (DescStatePacked)                |
 *    ...                                                           ...
 *
 * DescStatePacked, 32 bytes, indexed by the region's own entry number (a free list, not ring positions):
 *    +---------------+---------------+-------------------------------+
 *  0 | inflight (u8) | padding (u8)  |           next (u16)          |
 *    +---------------+---------------+-------------------------------+
 *  4 |           last (u16)          |            num (u16)          |
 *    +-------------------------------+-------------------------------+
 *  8 |                        counter (u64)                          |
 *    |                                                               |
 *    +-------------------------------+-------------------------------+
 * 16 |             id (u16)          |           flags (u16)         |
 *    +-------------------------------+-------------------------------+
 * 20 |                          len (u32)                            |
 *    +---------------------------------------------------------------+
 * 24 |                          addr (u64)                           |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * </pre>
 */
public final class InflightRegionDescriptor {
    /** libvhost-user / DPDK {@code INFLIGHT_ALIGNMENT}: each queue region starts on a 64-byte boundary. */
    public static final int INFLIGHT_ALIGNMENT = 64;

    /** libvhost-user / DPDK {@code INFLIGHT_VERSION}: the region version this code writes and reads. */
    public static final int INFLIGHT_VERSION = 1;

    /** Largest queue size (virtio 1.2: 32768). */
    public static final int MAX_QUEUE_SIZE = 32768;

    /** {@code QueueRegionSplit.features} (u64), 0 for now. */
    public static final int QUEUE_REGION_SPLIT_FEATURES_OFFSET = 0;

    /** {@code QueueRegionSplit.version} (u16): 1; 0 = an uninitialised buffer. */
    public static final int QUEUE_REGION_SPLIT_VERSION_OFFSET = 8;

    /** {@code QueueRegionSplit.desc_num} (u16): the virtqueue size. */
    public static final int QUEUE_REGION_SPLIT_DESC_NUM_OFFSET = 10;

    /** {@code QueueRegionSplit.last_batch_head} (u16): head of the list of the last batch of used descriptors. */
    public static final int QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET = 12;

    /** {@code QueueRegionSplit.used_idx} (u16): the used ring's idx after the last committed batch. */
    public static final int QUEUE_REGION_SPLIT_USED_IDX_OFFSET = 14;

    /** {@code QueueRegionSplit.desc[]}: {@code desc_num} x {@code DescStateSplit}. */
    public static final int QUEUE_REGION_SPLIT_DESC_OFFSET = 16;

    /** Length of a {@code DescStateSplit}. */
    public static final int DESC_STATE_SPLIT_LENGTH = 16;

    /** {@code DescStateSplit.inflight} (u8): 1 = the head descriptor is in flight. */
    public static final int DESC_STATE_SPLIT_INFLIGHT_OFFSET = 0;

    /** {@code DescStateSplit.padding[5]}. */
    public static final int DESC_STATE_SPLIT_PADDING_OFFSET = 1;

    /** {@code DescStateSplit.next} (u16): links the last batch of used descriptors. */
    public static final int DESC_STATE_SPLIT_NEXT_OFFSET = 6;

    /** {@code DescStateSplit.counter} (u64): fetch order. */
    public static final int DESC_STATE_SPLIT_COUNTER_OFFSET = 8;

    /** {@code QueueRegionPacked.features} (u64), 0 for now. */
    public static final int QUEUE_REGION_PACKED_FEATURES_OFFSET = 0;

    /** {@code QueueRegionPacked.version} (u16). */
    public static final int QUEUE_REGION_PACKED_VERSION_OFFSET = 8;

    /** {@code QueueRegionPacked.desc_num} (u16). */
    public static final int QUEUE_REGION_PACKED_DESC_NUM_OFFSET = 10;

    /** {@code QueueRegionPacked.free_head} (u16): head of the free entry list. */
    public static final int QUEUE_REGION_PACKED_FREE_HEAD_OFFSET = 12;

    /** {@code QueueRegionPacked.old_free_head} (u16). */
    public static final int QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET = 14;

    /** {@code QueueRegionPacked.used_idx} (u16): the used index of the descriptor ring. */
    public static final int QUEUE_REGION_PACKED_USED_IDX_OFFSET = 16;

    /** {@code QueueRegionPacked.old_used_idx} (u16). */
    public static final int QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET = 18;

    /** {@code QueueRegionPacked.used_wrap_counter} (u8). */
    public static final int QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET = 20;

    /** {@code QueueRegionPacked.old_used_wrap_counter} (u8). */
    public static final int QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET = 21;

    /** {@code QueueRegionPacked.padding[7]} (bytes 22..28; 29..31 align {@code desc[]} to 8). */
    public static final int QUEUE_REGION_PACKED_PADDING_OFFSET = 22;

    /** {@code QueueRegionPacked.desc[]}: {@code desc_num} x {@code DescStatePacked}. */
    public static final int QUEUE_REGION_PACKED_DESC_OFFSET = 32;

    /** Length of a {@code DescStatePacked}. */
    public static final int DESC_STATE_PACKED_LENGTH = 32;

    /** {@code DescStatePacked.inflight} (u8). */
    public static final int DESC_STATE_PACKED_INFLIGHT_OFFSET = 0;

    /** {@code DescStatePacked.padding} (u8). */
    public static final int DESC_STATE_PACKED_PADDING_OFFSET = 1;

    /** {@code DescStatePacked.next} (u16): link to the next free entry (or the next entry of a chain). */
    public static final int DESC_STATE_PACKED_NEXT_OFFSET = 2;

    /** {@code DescStatePacked.last} (u16): the chain's last entry (head entries only). */
    public static final int DESC_STATE_PACKED_LAST_OFFSET = 4;

    /** {@code DescStatePacked.num} (u16): the chain's length (head entries only). */
    public static final int DESC_STATE_PACKED_NUM_OFFSET = 6;

    /** {@code DescStatePacked.counter} (u64): fetch order (head entries only). */
    public static final int DESC_STATE_PACKED_COUNTER_OFFSET = 8;

    /** {@code DescStatePacked.id} (u16): the buffer id. */
    public static final int DESC_STATE_PACKED_ID_OFFSET = 16;

    /** {@code DescStatePacked.flags} (u16): the descriptor flags. */
    public static final int DESC_STATE_PACKED_FLAGS_OFFSET = 18;

    /** {@code DescStatePacked.len} (u32): the buffer length. */
    public static final int DESC_STATE_PACKED_LEN_OFFSET = 20;

    /** {@code DescStatePacked.addr} (u64): the buffer address. */
    public static final int DESC_STATE_PACKED_ADDR_OFFSET = 24;

    /** virtio 1.2 §2.8.1: packed descriptor flag bit {@code VIRTQ_DESC_F_AVAIL}. */
    public static final int VIRTQ_DESC_F_AVAIL_BIT = 7;

    /** Mask of {@link #VIRTQ_DESC_F_AVAIL_BIT}. */
    public static final int VIRTQ_DESC_F_AVAIL_MASK = 1 << VIRTQ_DESC_F_AVAIL_BIT;

    /** virtio 1.2 §2.8.1: packed descriptor flag bit {@code VIRTQ_DESC_F_USED}. */
    public static final int VIRTQ_DESC_F_USED_BIT = 15;

    /** Mask of {@link #VIRTQ_DESC_F_USED_BIT}. */
    public static final int VIRTQ_DESC_F_USED_MASK = 1 << VIRTQ_DESC_F_USED_BIT;

    private InflightRegionDescriptor() {}

    /**
     * Length of a split queue region: {@code ALIGN_UP(16 + 16 * queueSize, 64)}. This is DPDK's {@code
     * get_pervq_shm_size_split}; libvhost-user's {@code vu_inflight_queue_size}, {@code ALIGN_UP(16 * queueSize + 2,
     * 64)}, is equal for every queue size (no multiple of 64 lies in {@code [16q + 2, 16q + 16)}): 2112 bytes for 128.
     *
     * @param queueSize 1..32768
     * @return length in bytes, a multiple of 64
     * @throws IllegalArgumentException if the queue size is out of range
     */
    public static long queueRegionSplitLengthBytes(int queueSize) {
        checkQueueSize(queueSize);
        return alignUp(QUEUE_REGION_SPLIT_DESC_OFFSET + (long) DESC_STATE_SPLIT_LENGTH * queueSize);
    }

    /**
     * Length of a packed queue region: {@code ALIGN_UP(32 + 32 * queueSize, 64)}, equal to DPDK's {@code
     * get_pervq_shm_size_packed}, {@code ALIGN_UP(32 * queueSize + 8 + 2 * 6 + 9, 64)}.
     *
     * @param queueSize 1..32768
     * @return length in bytes, a multiple of 64
     * @throws IllegalArgumentException if the queue size is out of range
     */
    public static long queueRegionPackedLengthBytes(int queueSize) {
        checkQueueSize(queueSize);
        return alignUp(QUEUE_REGION_PACKED_DESC_OFFSET + (long) DESC_STATE_PACKED_LENGTH * queueSize);
    }

    /**
     * @param queueSize 1..32768
     * @param packed packed ring layout
     * @return length of one queue region
     */
    public static long queueRegionLengthBytes(int queueSize, boolean packed) {
        return packed ? queueRegionPackedLengthBytes(queueSize) : queueRegionSplitLengthBytes(queueSize);
    }

    /**
     * The {@code mmap_size} of {@code VHOST_USER_GET_INFLIGHT_FD}'s reply: {@code numQueues} queue regions.
     *
     * @param numQueues 1..65535 ({@code num_queues} of {@code VhostUserInflight})
     * @param queueSize 1..32768 ({@code queue_size})
     * @param packed packed ring layout
     * @return length in bytes
     * @throws IllegalArgumentException if a parameter is out of range
     */
    public static long mmapSizeBytes(int numQueues, int queueSize, boolean packed) {
        if (numQueues < 1 || numQueues > 0xFFFF) {
            throw new IllegalArgumentException("num_queues " + numQueues + " out of [1, 65535]");
        }
        return numQueues * queueRegionLengthBytes(queueSize, packed);
    }

    /**
     * One queue's region of the buffer.
     *
     * @param buffer the mapped buffer ({@code mmap_size} bytes from {@code mmap_offset} of the fd), 64-byte aligned
     * @param queueIndex below the buffer's queue count
     * @param queueSize the {@code queue_size} the buffer was made for
     * @param packed packed ring layout
     * @return the slice
     * @throws IllegalArgumentException if the region lies outside the buffer or the buffer is misaligned
     */
    public static MemorySegment queueRegion(MemorySegment buffer, int queueIndex, int queueSize, boolean packed) {
        long length = queueRegionLengthBytes(queueSize, packed);
        if (queueIndex < 0 || (queueIndex + 1) * length > buffer.byteSize()) {
            throw new IllegalArgumentException("inflight queue region " + queueIndex + " of " + length
                    + " bytes lies outside the buffer of " + buffer.byteSize() + " bytes");
        }
        if ((buffer.address() & (INFLIGHT_ALIGNMENT - 1)) != 0) {
            throw new IllegalArgumentException("inflight buffer not " + INFLIGHT_ALIGNMENT + "-byte aligned: 0x"
                    + Long.toHexString(buffer.address()));
        }
        return buffer.asSlice(queueIndex * length, length);
    }

    /**
     * The first {@code lengthBytes} of a queue region handed to a region writer, after checking it is that long and
     * 8-byte aligned (the writers' u64 stores).
     *
     * @throws IllegalArgumentException if it is shorter or misaligned (the message names virtqueue {@code queueIndex})
     */
    static MemorySegment checkedQueueRegion(MemorySegment queueRegion, int queueIndex, long lengthBytes) {
        if (queueRegion.byteSize() < lengthBytes || (queueRegion.address() & 7) != 0) {
            throw new IllegalArgumentException("vq " + queueIndex + ": inflight region of " + queueRegion.byteSize()
                    + " bytes at 0x" + Long.toHexString(queueRegion.address()) + ", expected " + lengthBytes
                    + " bytes, 8-byte aligned");
        }
        return queueRegion.asSlice(0, lengthBytes);
    }

    static void checkQueueSize(int queueSize) {
        if (queueSize < 1 || queueSize > MAX_QUEUE_SIZE) {
            throw new IllegalArgumentException("queue size " + queueSize + " out of [1, " + MAX_QUEUE_SIZE + "]");
        }
    }

    static long alignUp(long n) {
        return (n + INFLIGHT_ALIGNMENT - 1) & -INFLIGHT_ALIGNMENT;
    }
}
