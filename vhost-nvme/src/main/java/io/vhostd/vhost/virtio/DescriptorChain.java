package io.vhostd.vhost.virtio;

/**
 * A popped descriptor chain, translated to (region, offset, length) segments in chain order.
 *
 * <p>Reusable: preallocated for {@code maxSegments} and refilled by each {@link Virtqueue#pop}; no allocation per
 * pop. Not thread-safe (one owner, the queue's agent). A descriptor that crosses a region boundary becomes
 * several segments, as does one longer than {@link #MAX_SEGMENT_BYTES}; zero-length descriptors are rejected, so
 * every segment has {@code lengthBytes(i) > 0}. Device-readable segments always precede device-writable ones.
 *
 * <p>If {@link #error()} is not {@link ChainError#OK} the chain is malformed: {@link #head()} is the id to complete it
 * with (or -1 if there is none: a split avail ring entry out of range, a packed buffer id out of range) and the
 * segments parsed before the error are kept. The walker then looks for the chain's last descriptor without translating
 * the rest (following only {@code next} links in range of the same table, or a valid indirect table, and never more
 * descriptors than the table holds): if it is a device-writable buffer of length &gt;= 1 whose last byte lies inside a
 * guest memory region, {@link #lastByteLocated()} is true and {@link #lastByteRegionIndex()} / {@link
 * #lastByteRegionOffset()} / {@link #lastByteGpa()} name that byte (virtio-blk's status, virtio 1.2 §5.2.6), so that
 * the request can still be answered with an error status.
 */
public final class DescriptorChain {

    /** Longest single segment: longer descriptors are split so that lengths fit an {@code int}. */
    public static final int MAX_SEGMENT_BYTES = 1 << 30;

    private final int capacity;
    private final int[] regionIndex;
    private final int[] regionId;
    private final long[] regionOffset;
    private final long[] gpa;
    private final int[] lengthBytes;
    private final boolean[] deviceWritable;

    private int head = -1;
    private int segmentCount;
    private long readableBytes;
    private long writableBytes;
    private int descriptorCount;
    private int ringDescriptorCount;
    private boolean indirect;
    private int error;
    private boolean lastByteLocated;
    private int lastByteRegionIndex = -1;
    private long lastByteRegionOffset;
    private long lastByteGpa;

    /**
     * @param maxSegments how many segments this chain can hold (&gt;= 1)
     */
    public DescriptorChain(int maxSegments) {
        if (maxSegments < 1) {
            throw new IllegalArgumentException("maxSegments must be >= 1, got " + maxSegments);
        }
        capacity = maxSegments;
        regionIndex = new int[maxSegments];
        regionId = new int[maxSegments];
        regionOffset = new long[maxSegments];
        gpa = new long[maxSegments];
        lengthBytes = new int[maxSegments];
        deviceWritable = new boolean[maxSegments];
    }

    /** How many segments this chain can hold. */
    public int capacity() {
        return capacity;
    }

    /**
     * The id to return in the used ring: split, the head descriptor index; packed, the buffer id (of the chain's last
     * descriptor). -1 if there is none (a split avail ring entry or a packed buffer id &gt;= queue size).
     */
    public int head() {
        return head;
    }

    /** Number of segments. */
    public int segmentCount() {
        return segmentCount;
    }

    /** Index of segment {@code i}'s region in the {@link GuestMemory} it was translated with. */
    public int regionIndex(int i) {
        checkIndex(i);
        return regionIndex[i];
    }

    /** {@link GuestMemoryRegion#regionId()} of segment {@code i}'s region. */
    public int regionId(int i) {
        checkIndex(i);
        return regionId[i];
    }

    /** Byte offset of segment {@code i} in its region. */
    public long regionOffset(int i) {
        checkIndex(i);
        return regionOffset[i];
    }

    /** Guest physical address of segment {@code i}. */
    public long gpa(int i) {
        checkIndex(i);
        return gpa[i];
    }

    /** Length of segment {@code i}, in (0, {@link #MAX_SEGMENT_BYTES}]. */
    public int lengthBytes(int i) {
        checkIndex(i);
        return lengthBytes[i];
    }

    /** Is segment {@code i} device-writable (VIRTQ_DESC_F_WRITE)? */
    public boolean deviceWritable(int i) {
        checkIndex(i);
        return deviceWritable[i];
    }

    /** Total bytes of the device-readable segments. */
    public long readableBytes() {
        return readableBytes;
    }

    /** Total bytes of the device-writable segments. */
    public long writableBytes() {
        return writableBytes;
    }

    /** Number of descriptors walked, direct and indirect (the indirect table's own descriptor included). */
    public int descriptorCount() {
        return descriptorCount;
    }

    /**
     * Number of descriptors the chain occupies in the ring itself (not in an indirect table; the descriptor referring
     * to a table counts): the count a packed ring's used descriptor skips ({@link Virtqueue#pushUsed}).
     */
    public int ringDescriptorCount() {
        return ringDescriptorCount;
    }

    /** Did the chain use an indirect table? */
    public boolean indirect() {
        return indirect;
    }

    /** {@link ChainError} code, {@link ChainError#OK} if well-formed. */
    public int error() {
        return error;
    }

    /**
     * Malformed chains only: was the chain's last byte located, in a device-writable descriptor and inside guest memory
     * (see the class comment)? Always false for a well-formed chain (its last byte is the last segment's).
     */
    public boolean lastByteLocated() {
        return lastByteLocated;
    }

    /** Index, in the {@link GuestMemory} the chain was translated with, of the located last byte's region, or -1. */
    public int lastByteRegionIndex() {
        return lastByteRegionIndex;
    }

    /** Byte offset of the located last byte in its region (0 if not {@link #lastByteLocated()}). */
    public long lastByteRegionOffset() {
        return lastByteRegionOffset;
    }

    /** Guest physical address of the located last byte (0 if not {@link #lastByteLocated()}). */
    public long lastByteGpa() {
        return lastByteGpa;
    }

    /** {@link ChainError#name(int)} of {@link #error()}. */
    public String errorName() {
        return ChainError.name(error);
    }

    /** Index of the first device-writable segment, or {@link #segmentCount()} if there is none. */
    public int firstWritableSegment() {
        for (int i = 0; i < segmentCount; i++) {
            if (deviceWritable[i]) {
                return i;
            }
        }
        return segmentCount;
    }

    // ---- filled by the virtqueue (same package) ----

    void reset(int headIndex) {
        head = headIndex;
        segmentCount = 0;
        readableBytes = 0;
        writableBytes = 0;
        descriptorCount = 0;
        ringDescriptorCount = 0;
        indirect = false;
        error = ChainError.OK;
        lastByteLocated = false;
        lastByteRegionIndex = -1;
        lastByteRegionOffset = 0;
        lastByteGpa = 0;
    }

    void fail(int errorCode) {
        error = errorCode;
    }

    /**
     * Records the last descriptor of a malformed chain, found by the walker after the error (error path only). Its
     * last byte is located only if the descriptor is device-writable, {@code len >= 1}, {@code addr + len - 1} does not
     * pass 2^64 - 1 and that byte lies inside a guest memory region; otherwise nothing is located.
     *
     * @param len the descriptor's length, u32 as a non-negative long
     */
    void lastDescriptor(GuestMemory memory, long addr, long len, boolean writable) {
        // untrusted addr/len: only a writable buffer's own last byte, and only if it is guest memory
        if (!writable || len == 0) {
            return;
        }
        long last = addr + len - 1;
        if (Long.compareUnsigned(last, addr) < 0) {
            return;
        }
        int index = memory.regionIndexContaining(last);
        if (index < 0) {
            return;
        }
        lastByteLocated = true;
        lastByteRegionIndex = index;
        lastByteRegionOffset = last - memory.region(index).guestPhysAddr();
        lastByteGpa = last;
    }

    void head(int id) {
        head = id;
    }

    /** One more descriptor walked; {@code inRing}: it is in the ring, not in an indirect table. */
    void countDescriptor(boolean inRing) {
        descriptorCount++;
        if (inRing) {
            ringDescriptorCount++;
        }
    }

    void markIndirect() {
        indirect = true;
    }

    boolean hasWritable() {
        return writableBytes != 0;
    }

    /**
     * Translates one buffer and appends it as one or more segments.
     *
     * @param len buffer length, in [1, 2^32)
     * @param limit segment cap for this pop (&lt;= capacity)
     * @return {@link ChainError#OK}, or the error with nothing of this buffer appended (the chain is not marked
     *     failed here)
     */
    int addBuffer(GuestMemory memory, long addr, long len, boolean writable, int limit) {
        // untrusted addr/len: the last byte addr + len - 1 must not pass 2^64 - 1 (len >= 1 and a u32)
        if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
            return ChainError.LENGTH_OVERFLOW;
        }
        // virtio 1.2 §2.7.5.2: drivers MUST NOT add a chain longer than 2^32 bytes in total
        if (readableBytes + writableBytes + len > 1L << 32) {
            return ChainError.LENGTH_OVERFLOW;
        }
        int firstSegment = segmentCount;
        long cursor = addr;
        long remaining = len;
        while (remaining > 0) {
            int index = memory.regionIndexContaining(cursor);
            if (index < 0) {
                return rollBack(firstSegment, ChainError.ADDRESS_NOT_MAPPED);
            }
            GuestMemoryRegion r = memory.region(index);
            long offset = cursor - r.guestPhysAddr();
            long piece = Math.min(Math.min(remaining, r.sizeBytes() - offset), MAX_SEGMENT_BYTES);
            if (segmentCount >= limit) {
                return rollBack(firstSegment, ChainError.TOO_MANY_SEGMENTS);
            }
            int s = segmentCount++;
            regionIndex[s] = index;
            regionId[s] = r.regionId();
            regionOffset[s] = offset;
            gpa[s] = cursor;
            lengthBytes[s] = (int) piece;
            deviceWritable[s] = writable;
            if (writable) {
                writableBytes += piece;
            } else {
                readableBytes += piece;
            }
            cursor += piece;
            remaining -= piece;
        }
        return ChainError.OK;
    }

    /** Drops the segments appended since {@code firstSegment} (a buffer that failed half-way). */
    private int rollBack(int firstSegment, int errorCode) {
        for (int s = segmentCount - 1; s >= firstSegment; s--) {
            if (deviceWritable[s]) {
                writableBytes -= lengthBytes[s];
            } else {
                readableBytes -= lengthBytes[s];
            }
        }
        segmentCount = firstSegment;
        return errorCode;
    }

    private void checkIndex(int i) {
        if (i < 0 || i >= segmentCount) {
            throw new IndexOutOfBoundsException("segment " + i + " of " + segmentCount);
        }
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("DescriptorChain[head=")
                .append(head)
                .append(", error=")
                .append(errorName())
                .append(", segments=");
        for (int i = 0; i < segmentCount; i++) {
            sb.append(i == 0 ? "" : " ")
                    .append(deviceWritable[i] ? 'W' : 'R')
                    .append("#")
                    .append(regionId[i])
                    .append("+0x")
                    .append(Long.toHexString(regionOffset[i]))
                    .append(':')
                    .append(lengthBytes[i]);
        }
        return sb.append(']').toString();
    }
}
