package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "Memory region description" ({@code VhostUserMemoryRegion}): one region of guest memory and where
 * it lies in the fd that comes with it. Mapping {@code mmapOffset + memorySize} bytes of the fd from offset 0 and
 * skipping {@code mmapOffset} gives the region (libvhost-user does the same: mmap offsets must be page aligned,
 * {@code mmap_offset} need not be).
 *
 * @param guestPhysAddr guest physical address of the first byte ({@code guest_phys_addr}), unsigned
 * @param memorySize length in bytes ({@code memory_size}), unsigned, &gt; 0
 * @param userAddr front-end virtual address of the first byte ({@code userspace_addr}), unsigned
 * @param mmapOffset offset of the first byte in the fd ({@code mmap_offset}), unsigned
 */
public record VhostUserMemoryRegion(long guestPhysAddr, long memorySize, long userAddr, long mmapOffset)
        implements VhostUserPayload {
    public static final int SIZE_BYTES = 32;
    public static final int GUEST_PHYS_ADDR_OFFSET = 0;
    public static final int MEMORY_SIZE_OFFSET = 8;
    public static final int USER_ADDR_OFFSET = 16;
    public static final int MMAP_OFFSET_OFFSET = 24;

    /**
     * Reads a region at {@code offset} of {@code src} and checks it: size &gt; 0, and neither the guest range, the
     * user range nor {@code mmapOffset + memorySize} passes 2^63 (the last so that the mapping length is a positive
     * {@code long}).
     *
     * @param requestId for the error
     * @throws VhostUserProtocolException if the region is not valid
     */
    public static VhostUserMemoryRegion decodeAt(int requestId, MemorySegment src, long offset) {
        VhostUserMemoryRegion region = new VhostUserMemoryRegion(
                Wire.u64(src, offset + GUEST_PHYS_ADDR_OFFSET),
                Wire.u64(src, offset + MEMORY_SIZE_OFFSET),
                Wire.u64(src, offset + USER_ADDR_OFFSET),
                Wire.u64(src, offset + MMAP_OFFSET_OFFSET));
        region.check(requestId);
        return region;
    }

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless 32 bytes of a valid region
     */
    public static VhostUserMemoryRegion decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "memory region");
        return decodeAt(requestId, payload, 0);
    }

    private void check(int requestId) {
        if (memorySize == 0) {
            throw new VhostUserProtocolException(requestId, "memory region of size 0: " + this);
        }
        if (Wire.overflows(guestPhysAddr, memorySize - 1) || Wire.overflows(userAddr, memorySize - 1)) {
            throw new VhostUserProtocolException(requestId, "memory region passes 2^64: " + this);
        }
        // the mapping covers [0, mmap_offset + memory_size) of the fd and must be a positive long
        if (memorySize < 0 || mmapOffset < 0 || mmapOffset + memorySize < 0) {
            throw new VhostUserProtocolException(requestId, "memory region too large to map: " + this);
        }
    }

    /** {@code mmapOffset + memorySize}: the length to map from offset 0 of the fd. */
    public long mappingLengthBytes() {
        return mmapOffset + memorySize;
    }

    /** Same guest address, user address and size: how {@code VHOST_USER_REM_MEM_REG} names a region. */
    public boolean sameRange(VhostUserMemoryRegion other) {
        return guestPhysAddr == other.guestPhysAddr && userAddr == other.userAddr && memorySize == other.memorySize;
    }

    /** Encodes at {@code offset} of {@code dst}. */
    public void encodeAt(MemorySegment dst, long offset) {
        Wire.putU64(dst, offset + GUEST_PHYS_ADDR_OFFSET, guestPhysAddr);
        Wire.putU64(dst, offset + MEMORY_SIZE_OFFSET, memorySize);
        Wire.putU64(dst, offset + USER_ADDR_OFFSET, userAddr);
        Wire.putU64(dst, offset + MMAP_OFFSET_OFFSET, mmapOffset);
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        encodeAt(dst, 0);
    }

    @Override
    public String toString() {
        return "VhostUserMemoryRegion[gpa=" + Wire.hex(guestPhysAddr) + ", size=" + Wire.hex(memorySize) + ", uva="
                + Wire.hex(userAddr) + ", mmap_offset=" + Wire.hex(mmapOffset) + "]";
    }
}
