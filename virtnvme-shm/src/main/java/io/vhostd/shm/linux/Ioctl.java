package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/** {@code <sys/ioctl.h>} and the block-device requests of {@code <linux/fs.h>}. */
public final class Ioctl {
    /** {@code _IOR(0x12, 114, size_t)}: device size in bytes (u64). */
    public static final long BLKGETSIZE64 = 0x80081272L;
    /** Logical sector size (int). */
    public static final int BLKSSZGET = 0x1268;
    /** Physical sector size (unsigned int). */
    public static final int BLKPBSZGET = 0x127B;
    /** Discard {@code u64 range[2] = {offset, length}}. */
    public static final int BLKDISCARD = 0x1277;
    /** Zero {@code u64 range[2] = {offset, length}}. */
    public static final int BLKZEROOUT = 0x127f;
    /** Flush the buffer cache. */
    public static final int BLKFLSBUF = 0x1261;
    /** Read-only flag (int). */
    public static final int BLKROGET = 0x125e;

    /** {@code int ioctl(int, unsigned long, ...)} with one pointer argument. */
    private static final MethodHandle IOCTL =
            NativeSupport.downcallVariadic("ioctl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), 2);

    private Ioctl() {}

    /** {@code ioctl(fd, request, arg)} with a pointer argument; retries on {@code EINTR}; returns the result. */
    public static int ioctl(int fd, long request, MemorySegment arg) {
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) IOCTL.invokeExact(capture, fd, request, arg);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc >= 0) {
                return rc;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException("ioctl 0x" + Long.toHexString(request), errno);
            }
        }
    }

    /** {@code BLKGETSIZE64}: the block device's size in bytes. */
    public static long blkGetSize64(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment size = arena.allocate(JAVA_LONG);
            ioctl(fd, BLKGETSIZE64, size);
            return size.get(JAVA_LONG, 0);
        }
    }

    /** {@code BLKSSZGET}: the logical sector size in bytes. */
    public static int blkSszGet(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment size = arena.allocate(JAVA_INT);
            ioctl(fd, BLKSSZGET, size);
            return size.get(JAVA_INT, 0);
        }
    }

    /** {@code BLKPBSZGET}: the physical sector size in bytes. */
    public static int blkPbszGet(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment size = arena.allocate(JAVA_INT);
            ioctl(fd, BLKPBSZGET, size);
            return size.get(JAVA_INT, 0);
        }
    }

    /** {@code BLKDISCARD} of {@code [off, off + len)} bytes (both multiples of the logical sector size). */
    public static void blkDiscard(int fd, long off, long len) {
        rangeIoctl(fd, BLKDISCARD, off, len);
    }

    /** {@code BLKZEROOUT} of {@code [off, off + len)} bytes (both multiples of the logical sector size). */
    public static void blkZeroout(int fd, long off, long len) {
        rangeIoctl(fd, BLKZEROOUT, off, len);
    }

    private static void rangeIoctl(int fd, long request, long off, long len) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment range = arena.allocate(JAVA_LONG, 2);
            range.setAtIndex(JAVA_LONG, 0, off);
            range.setAtIndex(JAVA_LONG, 1, len);
            ioctl(fd, request, range);
        }
    }
}
