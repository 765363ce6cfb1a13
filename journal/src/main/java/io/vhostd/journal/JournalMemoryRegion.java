package io.vhostd.journal;

/**
 * One guest memory region of a session's memory table, as {@code VHOST_USER_SET_MEM_TABLE} or {@code
 * VHOST_USER_ADD_MEM_REG} described it (vhost-user.rst "Memory regions description"), plus the region id that
 * VirtNvme commands name it by (virtnvme.md §5.2). The region's fd is not here: the master keeps it (fd custody).
 *
 * @param guestPhysAddr guest physical address of the region's first byte ("guest address")
 * @param memorySize length in bytes ("size"), &gt; 0
 * @param userAddr the front-end's virtual address of the first byte ("user address"), for ring address translation
 * @param mmapOffset where the region starts in its fd ("mmap offset")
 * @param regionId the id the slave and the master agree on for VirtNvme segments
 * @throws IllegalArgumentException if the size is 0 or one of the three ranges wraps past 2<sup>64</sup>
 */
public record JournalMemoryRegion(long guestPhysAddr, long memorySize, long userAddr, long mmapOffset, int regionId) {

    public JournalMemoryRegion {
        if (memorySize == 0) {
            throw new IllegalArgumentException("memory region " + regionId + ": size 0");
        }
        checkRange("guest address", guestPhysAddr, memorySize, regionId);
        checkRange("user address", userAddr, memorySize, regionId);
        checkRange("mmap offset", mmapOffset, memorySize, regionId);
    }

    private static void checkRange(String what, long start, long size, int regionId) {
        // unsigned: [start, start + size) must not wrap past 2^64
        if (Long.compareUnsigned(start + size - 1, start) < 0) {
            throw new IllegalArgumentException("memory region " + regionId + ": " + what + " 0x"
                    + Long.toHexString(start) + " + size 0x" + Long.toHexString(size) + " wraps past 2^64");
        }
    }

    /** Last guest physical address of the region (inclusive). */
    public long lastGuestPhysAddr() {
        return guestPhysAddr + memorySize - 1;
    }

    /**
     * @param gpa first guest physical address
     * @param lengthBytes length, &gt; 0
     * @return whether [gpa, gpa + lengthBytes) lies inside this region
     */
    public boolean contains(long gpa, long lengthBytes) {
        long last = gpa + lengthBytes - 1;
        return Long.compareUnsigned(last, gpa) >= 0
                && Long.compareUnsigned(gpa, guestPhysAddr) >= 0
                && Long.compareUnsigned(last, lastGuestPhysAddr()) <= 0;
    }
}
