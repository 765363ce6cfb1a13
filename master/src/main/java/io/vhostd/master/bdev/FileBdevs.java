package io.vhostd.master.bdev;

import io.vhostd.master.config.BdevConfig;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Ioctl;
import io.vhostd.shm.linux.Stat;
import io.vhostd.shm.linux.Unistd;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Opens bdevs backed by a path: a raw image ({@code file}, created at the configured size if missing) or a block
 * device ({@code block}; size from {@code BLKGETSIZE64}, logical block size from {@code BLKSSZGET}).
 *
 * <p>Every such bdev gets a buffered fd; with {@code direct} also an {@code O_DIRECT} fd of the same file, which the
 * engines use for commands aligned to the logical block size (DESIGN "file: O_DIRECT when aligned"). Where the file
 * system refuses {@code O_DIRECT} ({@code EINVAL}, tmpfs before 6.6) the bdev has no direct fd and says so in the
 * log. A block device's first open is {@code O_EXCL}, so the master refuses a device that is mounted or claimed by
 * another exclusive user; the second fd is opened without it (the claim is per open file).
 */
public final class FileBdevs {
    private static final System.Logger LOG = System.getLogger(FileBdevs.class.getName());

    private FileBdevs() {}

    /**
     * Opens (creating if missing) a raw image or block device.
     *
     * @param sizeBytes the wanted size; 0 = use the existing file's or device's size. A new file is created at this
     *     size.
     * @param blockSizeBytes the logical block size; a block device's own logical block size is used when larger
     * @param direct also open an {@code O_DIRECT} fd for aligned I/O
     * @return a bdev of type {@code file} (regular file) or {@code block} (block device)
     * @throws IllegalArgumentException if the file is missing and no size is given, the existing size differs from
     *     {@code sizeBytes}, or the size is not a multiple of the block size, or the path is neither a regular file nor
     *     a block device
     * @throws ErrnoException if open/fstat/ftruncate/ioctl fail (e.g. {@code EBUSY}: a mounted block device)
     */
    public static Bdev open(
            String name, String path, long sizeBytes, int blockSizeBytes, boolean readOnly, boolean direct)
            throws IOException {
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
        int access = (readOnly ? Fcntl.O_RDONLY : Fcntl.O_RDWR) | Fcntl.O_CLOEXEC;
        int fd = Fcntl.open(path, access | (exists ? 0 : Fcntl.O_CREAT), 0644);
        int directFd = -1;
        try {
            Stat.FileStat st = Stat.fstat(fd);
            long actual;
            int bs = blockSizeBytes;
            boolean blockDevice = st.isBlockDevice();
            if (blockDevice) {
                // claim the device: O_EXCL on a block device fails with EBUSY while it is mounted or claimed
                int exclusive = Fcntl.open(path, access | Fcntl.O_EXCL, 0);
                Unistd.close(fd);
                fd = exclusive;
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
            if (direct) {
                directFd = openDirect(name, path, access);
            }
            return new Bdev(
                    name,
                    blockDevice ? BdevConfig.TYPE_BLOCK : BdevConfig.TYPE_FILE,
                    path,
                    fd,
                    directFd,
                    actual,
                    bs,
                    readOnly,
                    blockDevice,
                    null,
                    null,
                    null);
        } catch (RuntimeException e) {
            Unistd.close(fd);
            if (directFd >= 0) {
                Unistd.close(directFd);
            }
            throw e;
        }
    }

    /** The {@code O_DIRECT} fd, or -1 where the file system has no {@code O_DIRECT}. */
    private static int openDirect(String name, String path, int access) {
        try {
            return Fcntl.open(path, access | Fcntl.O_DIRECT, 0);
        } catch (ErrnoException e) {
            if (e.errno() != Errno.EINVAL) {
                throw e;
            }
            // the file system has no O_DIRECT (tmpfs before 6.6): the page cache serves everything, FLUSH still
            // makes it durable (fdatasync)
            LOG.log(System.Logger.Level.WARNING, "bdev " + name + ": " + path + " refuses O_DIRECT; page cache only");
            return -1;
        }
    }
}
