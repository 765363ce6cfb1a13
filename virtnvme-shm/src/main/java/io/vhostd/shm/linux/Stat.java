package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * {@code <sys/stat.h>}: {@code fstat(2)} and {@code stat(2)}. {@code struct stat} on x86_64 is 144 bytes with
 * {@code st_mode} (u32) at 24, {@code st_rdev} at 40, {@code st_size} at 48, {@code st_blksize} at 56.
 */
public final class Stat {
    public static final int S_IFMT = 0170000;
    public static final int S_IFSOCK = 0140000;
    public static final int S_IFLNK = 0120000;
    public static final int S_IFREG = 0100000;
    public static final int S_IFBLK = 0060000;
    public static final int S_IFDIR = 0040000;
    public static final int S_IFCHR = 0020000;
    public static final int S_IFIFO = 0010000;

    static final long STAT_SIZE = 144;
    static final long ST_MODE_OFFSET = 24;
    static final long ST_RDEV_OFFSET = 40;
    static final long ST_SIZE_OFFSET = 48;
    static final long ST_BLKSIZE_OFFSET = 56;

    private static final MethodHandle FSTAT =
            NativeSupport.downcall("fstat", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle STAT =
            NativeSupport.downcall("stat", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));

    private Stat() {}

    /**
     * The fields of {@code struct stat} vhostd uses.
     *
     * @param mode {@code st_mode}: file type and permission bits
     * @param sizeBytes {@code st_size}; 0 for block devices (use {@link Ioctl#blkGetSize64})
     * @param blockSizeBytes {@code st_blksize}: preferred I/O size (the huge page size on hugetlbfs)
     */
    public record FileStat(int mode, long sizeBytes, long blockSizeBytes) {
        public boolean isBlockDevice() {
            return (mode & S_IFMT) == S_IFBLK;
        }

        public boolean isRegularFile() {
            return (mode & S_IFMT) == S_IFREG;
        }
    }

    /** {@code fstat(2)}. */
    public static FileStat fstat(int fd) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment stat = arena.allocate(STAT_SIZE, 8);
            int rc = (int) FSTAT.invokeExact(capture, fd, stat);
            if (rc < 0) {
                throw new ErrnoException("fstat", NativeSupport.errno(capture));
            }
            return fromStruct(stat);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    /** {@code stat(2)} (follows symbolic links). */
    public static FileStat stat(String path) {
        MemorySegment capture = NativeSupport.captureState();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment stat = arena.allocate(STAT_SIZE, 8);
            int rc = (int) STAT.invokeExact(capture, NativeSupport.cString(arena, path), stat);
            if (rc < 0) {
                throw new ErrnoException("stat " + path, NativeSupport.errno(capture));
            }
            return fromStruct(stat);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
    }

    static FileStat fromStruct(MemorySegment stat) {
        return new FileStat(
                stat.get(JAVA_INT, ST_MODE_OFFSET),
                stat.get(JAVA_LONG, ST_SIZE_OFFSET),
                stat.get(JAVA_LONG, ST_BLKSIZE_OFFSET));
    }
}
