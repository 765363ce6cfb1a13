package io.vhostd.master.bdev;

import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Ioctl;
import io.vhostd.shm.linux.Stat;
import io.vhostd.shm.linux.Unistd;
import java.nio.file.Files;
import java.nio.file.Path;

/** Opens {@code file} bdevs: a raw image (created at the configured size if missing) or a block device. */
public final class FileBdevs {
    private FileBdevs() {}

    /**
     * Opens (creating if missing) a raw image or block device.
     *
     * @param sizeBytes the wanted size; 0 = use the existing file's size. A new file is created at this size.
     * @throws IllegalArgumentException if the existing file's size differs from {@code sizeBytes}, or the size is not
     *     a multiple of the block size
     * @throws ErrnoException if open/fstat/ftruncate fail
     */
    public static Bdev open(
            String name, String path, long sizeBytes, int blockSizeBytes, boolean readOnly, boolean direct)
            throws java.io.IOException {
        Path p = Path.of(path);
        boolean exists = Files.exists(p);
        if (!exists) {
            if (sizeBytes <= 0) {
                throw new IllegalArgumentException("bdev " + name + ": " + path + " does not exist and no size_bytes");
            }
            if (p.getParent() != null) {
                Files.createDirectories(p.getParent());
            }
        }
        int flags = (readOnly ? Fcntl.O_RDONLY : Fcntl.O_RDWR) | Fcntl.O_CLOEXEC | (exists ? 0 : Fcntl.O_CREAT);
        int fd;
        boolean isDirect = direct;
        try {
            fd = Fcntl.open(path, flags | (direct ? Fcntl.O_DIRECT : 0), 0644);
        } catch (ErrnoException e) {
            if (direct && e.errno() == Errno.EINVAL) {
                // the file system has no O_DIRECT (tmpfs before 6.6): use the page cache; FLUSH still fdatasyncs
                isDirect = false;
                fd = Fcntl.open(path, flags, 0644);
            } else {
                throw e;
            }
        }
        try {
            Stat.FileStat st = Stat.fstat(fd);
            long actual;
            int bs = blockSizeBytes;
            if (st.isBlockDevice()) {
                actual = Ioctl.blkGetSize64(fd);
                bs = Math.max(bs, Ioctl.blkSszGet(fd));
            } else if (st.isRegularFile()) {
                actual = st.sizeBytes();
                if (!exists || (actual == 0 && sizeBytes > 0)) {
                    Unistd.ftruncate(fd, sizeBytes);
                    actual = sizeBytes;
                }
            } else {
                throw new IllegalArgumentException(
                        "bdev " + name + ": " + path + " is not a regular file or block device");
            }
            if (sizeBytes > 0 && actual != sizeBytes) {
                throw new IllegalArgumentException(
                        "bdev " + name + ": " + path + " is " + actual + " bytes, config says size_bytes " + sizeBytes);
            }
            if (actual <= 0 || actual % bs != 0) {
                throw new IllegalArgumentException(
                        "bdev " + name + ": size " + actual + " is not a positive multiple of the block size " + bs);
            }
            return new Bdev(name, "file", path, fd, actual, bs, readOnly, isDirect);
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
    }
}
