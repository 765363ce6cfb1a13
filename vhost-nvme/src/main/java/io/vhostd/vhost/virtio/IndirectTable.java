package io.vhostd.vhost.virtio;

/**
 * Where an indirect descriptor table may be read (virtio 1.2 §2.7.5.3.1 split, §2.8.7 packed): the one check that both
 * ring formats make before they read a table, on the walk and on the error path that looks for a malformed chain's
 * last descriptor.
 */
final class IndirectTable {
    private IndirectTable() {}

    /**
     * The table at ({@code addr}, {@code lenBytes}), as the driver wrote them (untrusted): whole descriptors of {@code
     * descLengthBytes}, at least one and at most {@code queueSize} of them (no chain longer than the queue), all inside
     * one guest memory region.
     *
     * @param lenBytes the referring descriptor's {@code len}, u32 as a non-negative long
     * @return the index in {@code memory} of the region holding the whole table, or -1 if it must not be read
     */
    static int region(GuestMemory memory, long addr, long lenBytes, int descLengthBytes, int queueSize) {
        if (lenBytes == 0 || lenBytes % descLengthBytes != 0 || lenBytes / descLengthBytes > queueSize) {
            return -1;
        }
        return memory.findRegion(addr, lenBytes);
    }
}
