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
    /**
     * One registered region: its bytes (starting at the region's first guest byte), the arena that owns the mapping
     * and our fd copy; {@code arena} is null and {@code fd} is -1 for a region registered with {@link
     * #registerSegment} (the table owns neither).
     */
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
     * Registers memory this process already maps, e.g. in tests and in-process benches: no fd, no mapping of its own.
     * The table neither unmaps {@code bytes} nor closes anything when the region is unregistered; the caller keeps
     * {@code bytes} alive until then.
     *
     * @param bytes native memory; byte 0 is the region's first byte
     * @throws IllegalArgumentException if the id is in use, or {@code bytes} is not native or empty
     */
    public synchronized void registerSegment(int regionId, MemorySegment bytes) {
        if (regions.containsKey(regionId)) {
            throw new IllegalArgumentException("region id " + regionId + " already registered");
        }
        if (!bytes.isNative() || bytes.byteSize() == 0) {
            throw new IllegalArgumentException("region " + regionId + ": memory must be native and not empty");
        }
        Int2ObjectHashMap<Region> next = new Int2ObjectHashMap<>(regions);
        next.put(regionId, new Region(regionId, bytes, null, -1));
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
        release(region);
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
        Int2ObjectHashMap<Region> old = regions;
        regions = new Int2ObjectHashMap<>();
        for (Region region : old.values()) {
            release(region);
        }
    }

    /** Unmaps and closes what the table owns of {@code region}: nothing for a {@link #registerSegment} region. */
    private static void release(Region region) {
        if (region.arena() != null) {
            region.arena().close();
        }
        if (region.fd() >= 0) {
            Unistd.close(region.fd());
        }
    }
}
