package io.vhostd.master.engine;

import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.agrona.collections.Int2ObjectHashMap;

/**
 * Guest memory regions a slave registered, by region id, as mapped in the master. Written by the control thread
 * (copy-on-write), read by engine threads without locks or allocation.
 */
public final class RegionTable implements AutoCloseable {
    /** One registered region: its bytes (starting at the region's first guest byte), the mapping, and our fd copy. */
    public record Region(int regionId, MemorySegment bytes, Arena arena, int fd) {}

    // copy-on-write: readers take the current map with one volatile load; writers replace it under the lock
    private volatile Int2ObjectHashMap<Region> regions = new Int2ObjectHashMap<>();

    /**
     * Maps {@code fd} (MAP_SHARED, {@code mmapOffsetBytes + sizeBytes} long) and registers the region under
     * {@code regionId}. The table owns {@code fd} from now on.
     *
     * @throws IllegalArgumentException if the id is in use or the sizes are out of range (peer input)
     */
    public synchronized void register(int regionId, int fd, long sizeBytes, long mmapOffsetBytes) {
        if (regions.containsKey(regionId)) {
            throw new IllegalArgumentException("region id " + regionId + " already registered");
        }
        if (sizeBytes <= 0 || mmapOffsetBytes < 0 || sizeBytes > (1L << 46) || mmapOffsetBytes > (1L << 46)) {
            throw new IllegalArgumentException(
                    "region " + regionId + ": bad size " + sizeBytes + " / mmap offset " + mmapOffsetBytes);
        }
        Arena arena = Arena.ofShared();
        MemorySegment mapping;
        try {
            mapping = Mman.mmap(
                    mmapOffsetBytes + sizeBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0, arena);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        Int2ObjectHashMap<Region> next = new Int2ObjectHashMap<>(regions);
        next.put(regionId, new Region(regionId, mapping.asSlice(mmapOffsetBytes, sizeBytes), arena, fd));
        regions = next;
    }

    /**
     * Unmaps and forgets a region. The caller guarantees no command in flight names it (the slave drains its queues
     * before it unregisters).
     *
     * @return false if no such region
     */
    public synchronized boolean unregister(int regionId) {
        Region region = regions.get(regionId);
        if (region == null) {
            return false;
        }
        Int2ObjectHashMap<Region> next = new Int2ObjectHashMap<>(regions);
        next.remove(regionId);
        regions = next;
        region.arena().close();
        Unistd.close(region.fd());
        return true;
    }

    /** The region's bytes, or null if the id is unknown. No allocation. */
    public MemorySegment lookup(int regionId) {
        Region region = regions.get(regionId);
        return region == null ? null : region.bytes();
    }

    public int size() {
        return regions.size();
    }

    @Override
    public synchronized void close() {
        for (Region region : regions.values()) {
            region.arena().close();
            Unistd.close(region.fd());
        }
        regions = new Int2ObjectHashMap<>();
    }
}
