package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "Inflight description" ({@code VhostUserInflight}), the payload of {@code
 * VHOST_USER_GET_INFLIGHT_FD} (request and reply) and {@code VHOST_USER_SET_INFLIGHT_FD}. QEMU's struct is not packed:
 * 8 + 8 + 2 + 2 bytes plus 4 bytes of tail padding, 24 bytes on the wire.
 *
 * @param mmapSize size of the inflight area ({@code mmap_size}); 0 in the request
 * @param mmapOffset offset of the area in the fd ({@code mmap_offset})
 * @param numQueues number of virtqueues (u16), &gt; 0
 * @param queueSize size of each virtqueue (u16), &gt; 0
 */
public record VhostUserInflight(long mmapSize, long mmapOffset, int numQueues, int queueSize)
        implements VhostUserPayload {
    public static final int SIZE_BYTES = 24;
    public static final int MMAP_SIZE_OFFSET = 0;
    public static final int MMAP_OFFSET_OFFSET = 8;
    public static final int NUM_QUEUES_OFFSET = 16;
    public static final int QUEUE_SIZE_OFFSET = 18;

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless 24 bytes with non-zero queue count and size
     */
    public static VhostUserInflight decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "inflight description");
        VhostUserInflight inflight = new VhostUserInflight(
                Wire.u64(payload, MMAP_SIZE_OFFSET),
                Wire.u64(payload, MMAP_OFFSET_OFFSET),
                Wire.u16(payload, NUM_QUEUES_OFFSET),
                Wire.u16(payload, QUEUE_SIZE_OFFSET));
        if (inflight.numQueues == 0 || inflight.queueSize == 0) {
            throw new VhostUserProtocolException(requestId, "inflight description without queues: " + inflight);
        }
        return inflight;
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU64(dst, MMAP_SIZE_OFFSET, mmapSize);
        Wire.putU64(dst, MMAP_OFFSET_OFFSET, mmapOffset);
        Wire.putU16(dst, NUM_QUEUES_OFFSET, numQueues);
        Wire.putU16(dst, QUEUE_SIZE_OFFSET, queueSize);
        Wire.putU32(dst, QUEUE_SIZE_OFFSET + 2, 0);
    }
}
