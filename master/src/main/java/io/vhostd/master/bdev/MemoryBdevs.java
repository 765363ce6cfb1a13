package io.vhostd.master.bdev;

import io.vhostd.master.config.BdevConfig;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Creates the bdevs without a device: {@code null} (zeroes in, nothing out) and {@code malloc} (RAM). */
public final class MemoryBdevs {
    private MemoryBdevs() {}

    /**
     * A {@code null} bdev: reads return zeroes, writes are dropped. Holds no resources.
     *
     * @throws IllegalArgumentException if the size is not a positive multiple of the block size
     */
    public static Bdev createNull(String name, long sizeBytes, int blockSizeBytes, boolean readOnly) {
        checkSize(name, sizeBytes, blockSizeBytes);
        return new Bdev(
                name, BdevConfig.TYPE_NULL, null, -1, -1, sizeBytes, blockSizeBytes, readOnly, false, null, null, null);
    }

    /**
     * A {@code malloc} bdev: {@code sizeBytes} of RAM in a memfd ({@code /proc/<pid>/maps} shows it as {@code
     * memfd:vhostd-malloc-<name>}), mapped shared and not populated: pages are allocated (zero-filled) as they are
     * first written, so a fresh bdev reads zeroes. The memfd is closed once mapped; the mapping lives until {@link
     * Bdev#close()}.
     *
     * @throws IllegalArgumentException if the size is not a positive multiple of the block size
     * @throws io.vhostd.shm.linux.ErrnoException if the memfd cannot be created, sized or mapped
     */
    public static Bdev createMalloc(String name, long sizeBytes, int blockSizeBytes, boolean readOnly) {
        checkSize(name, sizeBytes, blockSizeBytes);
        String memfdName = "vhostd-malloc-" + name;
        if (memfdName.length() > Memfd.MFD_NAME_MAX_BYTES) {
            memfdName = memfdName.substring(0, Memfd.MFD_NAME_MAX_BYTES);
        }
        int memfd = Memfd.memfd_create(memfdName, Memfd.MFD_CLOEXEC);
        Arena arena = Arena.ofShared();
        try {
            Unistd.ftruncate(memfd, sizeBytes);
            MemorySegment memory =
                    Mman.mmap(sizeBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
            return new Bdev(
                    name,
                    BdevConfig.TYPE_MALLOC,
                    null,
                    -1,
                    -1,
                    sizeBytes,
                    blockSizeBytes,
                    readOnly,
                    false,
                    memory,
                    arena,
                    null);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        } finally {
            Unistd.close(memfd);
        }
    }

    private static void checkSize(String name, long sizeBytes, int blockSizeBytes) {
        if (blockSizeBytes <= 0 || sizeBytes <= 0 || sizeBytes % blockSizeBytes != 0) {
            throw new IllegalArgumentException("bdev " + name + ": size " + sizeBytes
                    + " is not a positive multiple of the block size " + blockSizeBytes);
        }
    }
}
