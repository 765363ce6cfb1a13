package io.vhostd.master.bdev;

import io.vhostd.shm.linux.Unistd;

/**
 * An open bdev. The master owns {@code fd}.
 *
 * @param name unique name (config / RPC)
 * @param type "file" (more types: issue #3)
 * @param path the file or device path
 * @param fd the open fd the device engine does I/O on
 * @param sizeBytes capacity in bytes, a multiple of {@code blockSizeBytes}
 * @param blockSizeBytes logical block size (512 or 4096)
 * @param readOnly writes fail with a write fault
 * @param direct opened with O_DIRECT
 */
public record Bdev(
        String name,
        String type,
        String path,
        int fd,
        long sizeBytes,
        int blockSizeBytes,
        boolean readOnly,
        boolean direct)
        implements AutoCloseable {

    public long numBlocks() {
        return sizeBytes / blockSizeBytes;
    }

    @Override
    public void close() {
        Unistd.close(fd);
    }
}
