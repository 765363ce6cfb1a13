package io.vhostd.vhost.virtio;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * One guest memory region as the vhost-user front-end described it ({@code VhostUserMemoryRegion}) and as this
 * process mapped it.
 *
 * @param regionId unique id (per process) the slave uses to name the region to the master in VirtNvme commands
 * @param guestPhysAddr guest physical address of the first byte ({@code guest_phys_addr}), unsigned
 * @param sizeBytes length of the region ({@code memory_size}), &gt; 0
 * @param userAddr front-end virtual address of the first byte ({@code userspace_addr}), unsigned
 * @param mmapOffset offset into {@code fd} where the region starts ({@code mmap_offset}); already applied to
 *     {@code mapping}
 * @param fd the region's file descriptor, or -1 (tests)
 * @param mapping exactly {@code sizeBytes} long; byte 0 is {@code guestPhysAddr}
 */
public record GuestMemoryRegion(
        int regionId,
        long guestPhysAddr,
        long sizeBytes,
        long userAddr,
        long mmapOffset,
        int fd,
        MemorySegment mapping) {

    /**
     * @throws IllegalArgumentException if {@code sizeBytes <= 0}, the mapping's length differs from {@code
     *     sizeBytes}, or {@code guestPhysAddr + sizeBytes} or {@code userAddr + sizeBytes} passes 2^64
     */
    public GuestMemoryRegion {
        Objects.requireNonNull(mapping, "mapping");
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("region " + regionId + ": sizeBytes must be > 0, got " + sizeBytes);
        }
        if (mapping.byteSize() != sizeBytes) {
            throw new IllegalArgumentException(
                    "region " + regionId + ": mapping is " + mapping.byteSize() + " bytes, sizeBytes is " + sizeBytes);
        }
        // the last byte is at start + size - 1; it must not wrap past 2^64 - 1
        if (Long.compareUnsigned(guestPhysAddr - 1 + sizeBytes, guestPhysAddr) < 0) {
            throw new IllegalArgumentException("region " + regionId + ": guest_phys_addr 0x"
                    + Long.toHexString(guestPhysAddr) + " + size 0x" + Long.toHexString(sizeBytes) + " overflows");
        }
        if (Long.compareUnsigned(userAddr - 1 + sizeBytes, userAddr) < 0) {
            throw new IllegalArgumentException("region " + regionId + ": userspace_addr 0x" + Long.toHexString(userAddr)
                    + " + size 0x" + Long.toHexString(sizeBytes) + " overflows");
        }
    }

    /** Unsigned: is {@code gpa} inside this region? */
    public boolean containsGpa(long gpa) {
        return Long.compareUnsigned(gpa - guestPhysAddr, sizeBytes) < 0;
    }

    /** Guest physical address of the last byte (inclusive), unsigned. */
    public long lastGpa() {
        return guestPhysAddr + sizeBytes - 1;
    }

    /** Front-end virtual address of the last byte (inclusive), unsigned. */
    public long lastUserAddr() {
        return userAddr + sizeBytes - 1;
    }
}
