package io.vhostd.master.bdev;

import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * An open bdev: what a device engine needs to execute I/O against it. The master owns its fds and memory and releases
 * them in {@link #close()}.
 *
 * <p>Backings by {@link #type}: {@code file}, {@code block} and {@code nvme} have an {@link #fd} (page cache) and,
 * when opened with {@code direct}, a {@link #directFd} ({@code O_DIRECT}) that the engine uses for commands whose
 * offset, length, and every segment's address and length are multiples of {@link #blockSizeBytes}; {@code malloc} has
 * {@link #memory}; {@code null} has nothing.
 *
 * @param name unique name (config / RPC)
 * @param type {@code file}, {@code block}, {@code nvme}, {@code null} or {@code malloc} ({@code BdevConfig.TYPE_*})
 * @param path the file or device path; null for {@code null} and {@code malloc}
 * @param fd the buffered fd the engine does I/O on; -1 for {@code null} and {@code malloc}
 * @param directFd an {@code O_DIRECT} fd of the same file, or -1
 * @param sizeBytes capacity in bytes, a multiple of {@code blockSizeBytes}
 * @param blockSizeBytes logical block size (512..4096)
 * @param readOnly writes fail with a write fault
 * @param blockDevice the fds are a block device: discard and write-zeroes are {@code BLKDISCARD} / {@code BLKZEROOUT}
 *     rather than {@code fallocate}
 * @param memory {@code malloc}: the RAM, {@code sizeBytes} long; null otherwise
 * @param memoryArena owns {@code memory}; null when there is none
 * @param nvmeController {@code nvme}: the name given to {@code bdev_nvme_attach_controller} (or the config entry); null
 *     otherwise
 */
public record Bdev(
        String name,
        String type,
        String path,
        int fd,
        int directFd,
        long sizeBytes,
        int blockSizeBytes,
        boolean readOnly,
        boolean blockDevice,
        MemorySegment memory,
        Arena memoryArena,
        String nvmeController)
        implements AutoCloseable {

    /**
     * A bdev on one fd, used for every command (no separate {@code O_DIRECT} fd).
     *
     * @param direct ignored: it said whether {@code fd} was opened with {@code O_DIRECT}; a bdev with a separate
     *     {@code O_DIRECT} fd comes from {@link FileBdevs#open}
     */
    public Bdev(
            String name,
            String type,
            String path,
            int fd,
            long sizeBytes,
            int blockSizeBytes,
            boolean readOnly,
            boolean direct) {
        this(name, type, path, fd, -1, sizeBytes, blockSizeBytes, readOnly, false, null, null, null);
    }

    public long numBlocks() {
        return sizeBytes / blockSizeBytes;
    }

    /** True when aligned I/O goes through an {@code O_DIRECT} fd. */
    public boolean direct() {
        return directFd >= 0;
    }

    /** The same bdev under another name and type (an NVMe namespace opened as a block bdev). */
    Bdev renamed(String newName, String newType, String controller) {
        return new Bdev(
                newName,
                newType,
                path,
                fd,
                directFd,
                sizeBytes,
                blockSizeBytes,
                readOnly,
                blockDevice,
                memory,
                memoryArena,
                controller);
    }

    @Override
    public void close() {
        if (fd >= 0) {
            Unistd.close(fd);
        }
        if (directFd >= 0) {
            Unistd.close(directFd);
        }
        if (memoryArena != null) {
            memoryArena.close();
        }
    }
}
